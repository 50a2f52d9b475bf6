/** A scripted build (one Dockerfile, two platforms, a failure) shared by the progress tests. */
import { Writable } from "node:stream";
import type { ProgressEvent } from "../../../src/progress/index.js";

export const T0 = 1_700_000_000_000;
export const A = "sha256:aaaa";
export const B = "sha256:bbbb";
export const C = "sha256:cccc";
export const D = "sha256:dddd";
export const DIGEST = `sha256:${"ab".repeat(32)}`;

export const NAME_A = "[internal] load build definition from Dockerfile";
export const NAME_B = "[linux/arm64 base 1/2] FROM docker.io/library/alpine:3.20";
export const NAME_C = "[linux/arm64 build 2/2] RUN make";
export const NAME_D = "[linux/amd64 build 2/2] RUN make";
export const MAKE_ERROR = 'process "/bin/sh -c make" did not complete successfully: exit code: 2';

/** Each step: the clock reading when it is delivered, and the event. */
export const script: [number, ProgressEvent][] = [
  [T0, { type: "vertex", id: A, name: NAME_A }],
  [T0, { type: "vertex", id: B, name: NAME_B, platform: "linux/arm64" }],
  [T0, { type: "vertex", id: C, name: NAME_C, platform: "linux/arm64", inputs: [B] }],
  [T0, { type: "vertex", id: A, name: NAME_A, started: T0 }],
  [
    T0 + 10,
    {
      type: "status",
      vertex: A,
      id: "transferring dockerfile",
      current: 96,
      started: T0,
      completed: T0 + 10,
    },
  ],
  [T0 + 20, { type: "vertex", id: A, name: NAME_A, started: T0, completed: T0 + 20 }],
  [T0 + 30, { type: "vertex", id: B, name: NAME_B, started: T0 + 30 }],
  [
    T0 + 30,
    {
      type: "status",
      vertex: B,
      id: "sha256:1111",
      current: 1_200_000,
      total: 3_400_000,
      started: T0 + 30,
    },
  ],
  // Less than 5% more, within 5 s: plain output skips it.
  [
    T0 + 40,
    {
      type: "status",
      vertex: B,
      id: "sha256:1111",
      current: 1_250_000,
      total: 3_400_000,
      started: T0 + 30,
    },
  ],
  [
    T0 + 50,
    {
      type: "warning",
      vertex: B,
      message:
        "FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value",
      location: { file: "Dockerfile", line: 1 },
    },
  ],
  [T0 + 100, { type: "vertex", id: C, name: NAME_C, started: T0 + 100, emulated: true }],
  [T0 + 612, { type: "log", vertex: C, stream: 1, data: "building\npart", timestamp: T0 + 612 }],
  [T0 + 700, { type: "log", vertex: C, stream: 1, data: "ial line\n", timestamp: T0 + 700 }],
  [
    T0 + 530,
    {
      type: "status",
      vertex: B,
      id: "sha256:1111",
      current: 3_400_000,
      total: 3_400_000,
      started: T0 + 30,
      completed: T0 + 530,
    },
  ],
  [T0 + 540, { type: "vertex", id: B, name: NAME_B, completed: T0 + 540 }],
  [
    T0 + 1500,
    { type: "log", vertex: C, stream: 2, data: "no newline at end", timestamp: T0 + 1500 },
  ],
  [T0 + 2000, { type: "vertex", id: C, name: NAME_C, completed: T0 + 2000, error: MAKE_ERROR }],
  [
    T0 + 2000,
    { type: "vertex", id: D, name: NAME_D, started: T0 + 50, completed: T0 + 50, cached: true },
  ],
  [T0 + 2000, { type: "warning", message: "Something global" }],
  [
    T0 + 2100,
    {
      type: "summary",
      durationMs: 2100,
      platforms: [
        {
          platform: "linux/amd64",
          durationMs: 1200,
          emulatedMs: 0,
          cached: 7,
          total: 7,
          digest: DIGEST,
        },
        { platform: "linux/arm64", durationMs: 2000, emulatedMs: 1500, cached: 3, total: 7 },
      ],
    },
  ],
];

/** A settable clock for renderers. */
export function fakeClock(start = T0): { now: () => number; set: (t: number) => void } {
  let t = start;
  return {
    now: () => t,
    set: (v) => {
      t = v;
    },
  };
}

/** A Writable that keeps everything written to it, with an optional terminal size. */
export class Capture extends Writable {
  text = "";
  columns: number | undefined;
  rows: number | undefined;

  constructor(size?: { columns: number; rows: number }) {
    super();
    this.columns = size?.columns;
    this.rows = size?.rows;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString("utf8");
    cb();
  }
}

// eslint-disable-next-line no-control-regex
export const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, "");
