/**
 * The wire between kiln and kilnd. POST /build: the body is one JSON line (a BuildHeader), then
 * a tar holding the build context under `context/`, the Dockerfile under `dockerfile/` and named
 * contexts under `named/<name>/`. The answer is NDJSON: progress events tagged with the node's
 * name, then exactly one `result` or `error` line. GET /info answers a NodeInfo.
 */
import type { BuildRequest, BuildResult } from "../request/index.js";
import type { ProgressEvent } from "../progress/index.js";

export const PROTOCOL_VERSION = 1;

/** The request minus local paths: those become tar members; secrets travel base64-encoded. */
export interface BuildHeader {
  protocol: number;
  request: Omit<BuildRequest, "contextDir" | "dockerfile" | "namedContexts" | "secrets">;
  /** the Dockerfile's file name under `dockerfile/` */
  dockerfile: string;
  /** names of the directory contexts uploaded under `named/` */
  namedContexts: string[];
  /** `--build-context name=docker-image://REF`: name → that value, resolved by the node */
  imageContexts?: Record<string, string>;
  /** `--build-context name=oci-layout://…`: uploaded layout directory's name → the digest the client resolved */
  ociLayouts?: Record<string, string>;
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
  /** with `files`, a tar of the file outputs follows the line: `<output index>/…` */
  | { type: "result"; node: string; result: BuildResult; files?: boolean }
  | { type: "error"; node: string; code: string; message: string; hint?: string }
  /** sent while a build is quiet, so a client can tell a slow node from a dead one */
  | { type: "heartbeat"; node: string };

/** A node sends a heartbeat this often; a client gives up after several missing. */
export const HEARTBEAT_MS = 5_000;

/** Members of the request tar. */
export const TAR_CONTEXT = "context";
export const TAR_DOCKERFILE = "dockerfile";
export const TAR_NAMED = "named";

/** Output types a node writes into its answer instead of its own disk. */
export const RETURNED_OUTPUTS: ReadonlySet<string> = new Set(["oci", "local"]);

/**
 * Reads a byte stream as lines, and then — after a line that announces it — as raw bytes: the
 * NDJSON answer may end with a tar of output files, and the request starts with a header line.
 */
export class LineReader {
  readonly #it: AsyncIterator<Uint8Array>;
  #buf: Buffer = Buffer.alloc(0);
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  /** The next non-empty line, or undefined at the end; a line longer than `max` throws. */
  async nextLine(max = 16 << 20): Promise<string | undefined> {
    for (;;) {
      const nl = this.#buf.indexOf(10);
      if (nl >= 0) {
        // a newline byte never occurs inside a UTF-8 sequence, so slicing at it is safe
        const line = this.#buf.subarray(0, nl).toString("utf8");
        this.#buf = this.#buf.subarray(nl + 1);
        if (line.trim() === "") continue;
        return line;
      }
      if (this.#buf.length > max) throw new RangeError(`a line is longer than ${max} bytes`);
      if (this.#done) {
        const last = this.#buf.toString("utf8");
        this.#buf = Buffer.alloc(0);
        return last.trim() === "" ? undefined : last;
      }
      const r = await this.#it.next();
      if (r.done) this.#done = true;
      else this.#buf = Buffer.concat([this.#buf, r.value]);
    }
  }

  /** Everything after the lines read so far, unbuffered. */
  async *rest(): AsyncGenerator<Buffer> {
    if (this.#buf.length > 0) yield this.#buf;
    this.#buf = Buffer.alloc(0);
    while (!this.#done) {
      const r = await this.#it.next();
      if (r.done) this.#done = true;
      else yield Buffer.from(r.value);
    }
  }
}
