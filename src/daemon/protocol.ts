/**
 * The wire between kiln and kilnd. POST /build: the body is one JSON line (a BuildHeader), then
 * a tar holding the build context under `context/`, the Dockerfile under `dockerfile/` and named
 * contexts under `named/<name>/`. The answer is NDJSON: progress events tagged with the node's
 * name, then exactly one `result` or `error` line. GET /info answers a NodeInfo.
 */
import { StringDecoder } from "node:string_decoder";
import type { BuildRequest, BuildResult } from "../engine/request.js";
import type { ProgressEvent } from "../progress/index.js";

export const PROTOCOL_VERSION = 1;

/** The request minus local paths: those become tar members; secrets travel base64-encoded. */
export interface BuildHeader {
  protocol: number;
  request: Omit<BuildRequest, "contextDir" | "dockerfile" | "namedContexts" | "secrets">;
  /** the Dockerfile's file name under `dockerfile/` */
  dockerfile: string;
  namedContexts: string[];
  secrets: Record<string, string>;
}

export interface NodeInfo {
  name: string;
  version: string;
  protocol: number;
  /** what the node's operator configured with `kilnd --platform` (empty: not configured) */
  configured: string[];
  /** platforms the host's CPU runs */
  native: string[];
  /** platforms the node runs through binfmt_misc or a QEMU wrapper */
  emulated: string[];
  /** builds running or waiting on this node */
  load: number;
}

export type ServerLine =
  | (ProgressEvent & { node: string })
  | { type: "result"; node: string; result: BuildResult }
  | { type: "error"; node: string; code: string; message: string; hint?: string }
  /** sent while a build is quiet, so a client can tell a slow node from a dead one */
  | { type: "heartbeat"; node: string };

/** A node sends a heartbeat this often; a client gives up after several missing. */
export const HEARTBEAT_MS = 5_000;

/** Members of the request tar. */
export const TAR_CONTEXT = "context";
export const TAR_DOCKERFILE = "dockerfile";
export const TAR_NAMED = "named";

/** Splits a byte stream into its first line and the rest, without buffering the rest. */
export async function splitFirstLine(
  source: AsyncIterable<Uint8Array>,
  maxLine: number,
): Promise<{ line: string; rest: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let size = 0;
  for (;;) {
    const r = await it.next();
    if (r.done) return { line: Buffer.concat(parts).toString("utf8"), rest: empty() };
    const chunk = Buffer.from(r.value);
    const nl = chunk.indexOf(10);
    if (nl < 0) {
      size += chunk.length;
      if (size > maxLine) throw new RangeError(`first line longer than ${maxLine} bytes`);
      parts.push(chunk);
      continue;
    }
    parts.push(chunk.subarray(0, nl));
    const head = chunk.subarray(nl + 1);
    return {
      line: Buffer.concat(parts).toString("utf8"),
      rest: (async function* () {
        if (head.length > 0) yield head;
        for (;;) {
          const n = await it.next();
          if (n.done) return;
          yield Buffer.from(n.value);
        }
      })(),
    };
  }
}

async function* empty(): AsyncGenerator<Buffer> {}

/** Yields the complete lines of a byte stream (the last one even without a newline). */
export async function* readLines(
  source: AsyncIterable<Uint8Array | string>,
): AsyncGenerator<string> {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  for await (const chunk of source) {
    pending += typeof chunk === "string" ? chunk : decoder.write(Buffer.from(chunk));
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() !== "") yield line;
    }
  }
  if (pending.trim() !== "") yield pending;
}
