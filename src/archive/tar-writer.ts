/**
 * Streaming tar writer: ustar headers with PAX extensions where ustar falls short. Output is a
 * pure function of the entries (no pids, no host names, no clock), so equal inputs give equal
 * bytes. Pulls one entry (and its body) at a time.
 */
import { Readable } from "node:stream";
import { KilnError } from "../errors.js";
import { blockPadding, encodeHeader, type TarEntry } from "./tar-format.js";

export interface TarInput {
  entry: TarEntry;
  /** Body of a "file" entry; exactly entry.size bytes. */
  body?: Readable | Buffer | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

function sizeMismatch(entry: TarEntry, got: string): KilnError {
  return new KilnError(
    "E_LAYER_SOURCE",
    `tar entry ${entry.name}: body has ${got} bytes, header says ${entry.size}`,
    { hint: "a file changed while it was being archived; retry when nothing is writing to it" },
  );
}

/** The tar byte stream for a sequence of entries, ending with the two-block end marker. */
export async function* encodeTar(
  inputs: AsyncIterable<TarInput> | Iterable<TarInput>,
): AsyncGenerator<Buffer> {
  for await (const { entry, body } of inputs) {
    yield encodeHeader(entry);
    if (entry.type !== "file") {
      if (body instanceof Readable) body.destroy();
      continue;
    }
    let written = 0;
    const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
      body === undefined ? [] : Buffer.isBuffer(body) ? [body] : body;
    for await (const c of chunks) {
      written += c.length;
      if (written > entry.size) throw sizeMismatch(entry, `more than ${entry.size}`);
      yield Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    }
    if (written !== entry.size) throw sizeMismatch(entry, String(written));
    const pad = blockPadding(entry.size);
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(1024);
}

/** encodeTar as a Node Readable. */
export function packTar(inputs: AsyncIterable<TarInput> | Iterable<TarInput>): Readable {
  return Readable.from(encodeTar(inputs), { objectMode: false });
}
