/**
 * Streaming tar reader: ustar, PAX (x and g), GNU long names (L/K) and base-256 numbers.
 * Each entry's body is a Readable over the same input; it is skipped automatically if the
 * consumer moves on without reading it. Malformed input fails with E_LAYER_INVALID.
 */
import { Readable } from "node:stream";
import { invalidLayer } from "./errors.js";
import {
  BLOCK,
  MAX_META_SIZE,
  blockPadding,
  buildEntry,
  decodeHeader,
  isZeroBlock,
  parsePax,
  type TarEntry,
} from "./tar-format.js";
import { isKilnError } from "../errors.js";

export interface TarReadEntry {
  entry: TarEntry;
  body: Readable;
}

/** Pull-based byte source over an async iterable of chunks. */
class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private ended = false;
  private failure: unknown;

  constructor(input: AsyncIterable<Uint8Array>) {
    this.it = input[Symbol.asyncIterator]();
  }

  /** Ensure unread bytes are buffered; false at end of input. */
  private async fill(): Promise<boolean> {
    while (this.off >= this.buf.length) {
      if (this.failure !== undefined) throw this.failure as Error;
      if (this.ended) return false;
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.it.next();
      } catch (e) {
        this.failure = isKilnError(e) ? e : invalidLayer(`reading layer: ${String(e)}`, e);
        throw this.failure;
      }
      if (r.done) {
        this.ended = true;
        return false;
      }
      const c = r.value;
      this.buf = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      this.off = 0;
    }
    return true;
  }

  /** Exactly n bytes, or null when the input ended before the first byte. */
  async exact(n: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    if (this.buf.length - this.off >= n) {
      const out = this.buf.subarray(this.off, this.off + n);
      this.off += n;
      return out;
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      if (!(await this.fill())) throw invalidLayer("tar archive is truncated");
      const take = Math.min(need, this.buf.length - this.off);
      parts.push(this.buf.subarray(this.off, this.off + take));
      this.off += take;
      need -= take;
    }
    return Buffer.concat(parts, n);
  }

  /** Between 1 and max bytes. */
  async chunk(max: number): Promise<Buffer> {
    if (!(await this.fill())) throw invalidLayer("tar archive is truncated");
    const take = Math.min(max, this.buf.length - this.off);
    const out = this.buf.subarray(this.off, this.off + take);
    this.off += take;
    return out;
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) left -= (await this.chunk(left)).length;
  }

  /** Consume the rest of the input (trailing zero records), so upstream hashers see it all. */
  async drain(): Promise<void> {
    while (await this.fill()) this.off = this.buf.length;
  }

  async close(): Promise<void> {
    if (!this.ended) await this.it.return?.();
  }
}

/** One entry's body; reads straight from the shared ByteReader. */
class EntryBody extends Readable {
  private remaining: number;
  private inflight: Promise<void> = Promise.resolve();

  constructor(
    private readonly src: ByteReader,
    size: number,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.remaining = size;
    if (size === 0) this.push(null);
  }

  override _read(): void {
    this.inflight = this.src.chunk(Math.min(this.remaining, 256 * 1024)).then(
      (c) => {
        this.remaining -= c.length;
        this.push(c);
        if (this.remaining === 0) this.push(null);
      },
      (e: unknown) => {
        this.destroy(e as Error);
      },
    );
  }

  /** Skip whatever the consumer did not read, so the next header can be read. */
  async finish(): Promise<void> {
    await this.inflight;
    if (this.remaining > 0) {
      const left = this.remaining;
      this.remaining = 0;
      if (!this.destroyed) this.destroy();
      await this.src.skip(left);
    }
  }
}

async function readMeta(r: ByteReader, size: number, what: string): Promise<Buffer> {
  if (size > MAX_META_SIZE) throw invalidLayer(`${what} of ${size} bytes exceeds the 1 MiB limit`);
  const data = (await r.exact(size)) ?? Buffer.alloc(0);
  if (data.length !== size) throw invalidLayer("tar archive is truncated");
  await r.skip(blockPadding(size));
  return data;
}

function cstr(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString("utf8", 0, end === -1 ? b.length : end);
}

/**
 * Iterate the entries of a tar stream. The archive must end with an end-of-archive block;
 * bytes after it are consumed and ignored.
 */
export async function* readTar(input: AsyncIterable<Uint8Array>): AsyncGenerator<TarReadEntry> {
  const r = new ByteReader(input);
  const global = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const block = await r.exact(BLOCK);
      if (block === null) throw invalidLayer("tar archive is truncated (no end-of-archive marker)");
      if (isZeroBlock(block)) {
        if (pax !== undefined || longName !== undefined || longLink !== undefined) {
          throw invalidLayer("tar archive ends after an extended header");
        }
        await r.drain();
        return;
      }
      const h = decodeHeader(block);
      switch (h.typeflag) {
        case "x":
          pax = new Map([...(pax ?? []), ...parsePax(await readMeta(r, h.size, "PAX header"))]);
          continue;
        case "g":
          for (const [k, v] of parsePax(await readMeta(r, h.size, "PAX global header"))) {
            global.set(k, v);
          }
          continue;
        case "L":
          longName = cstr(await readMeta(r, h.size, "GNU long name"));
          continue;
        case "K":
          longLink = cstr(await readMeta(r, h.size, "GNU long link"));
          continue;
      }
      const entry = buildEntry(h, new Map([...global, ...(pax ?? [])]), longName, longLink);
      pax = longName = longLink = undefined;
      // buildEntry reports size 0 for header-only types, so entry.size is the body length.
      const body = new EntryBody(r, entry.size);
      yield { entry, body };
      await body.finish();
      await r.skip(blockPadding(entry.size));
    }
  } finally {
    await r.close();
  }
}
