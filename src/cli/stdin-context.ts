/**
 * `kiln build -`: the build context comes on standard input, as with `docker build -` — a tar
 * (optionally compressed) holding the context, or a Dockerfile alone (then the context is
 * empty). It is unpacked into a private temporary directory, with the same safe extraction as
 * ADD: nothing in it can write outside that directory.
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { KilnError } from "../errors.js";
import { unpackContextFile } from "../context/remote.js";

export interface StdinContext {
  dir: string;
  dispose(): Promise<void>;
}

export async function contextFromStdin(
  input: NodeJS.ReadableStream = process.stdin,
): Promise<StdinContext> {
  if (process.stdin.isTTY && input === process.stdin) {
    throw new KilnError("E_CONTEXT", "the build context is - but standard input is a terminal", {
      hint: "pipe a tar of the context (tar -C dir -c . | kiln build -) or a Dockerfile (kiln build - < Dockerfile)",
    });
  }
  const work = await mkdtemp(join(tmpdir(), "kiln-stdin-"));
  const dispose = (): Promise<void> => rm(work, { recursive: true, force: true });
  try {
    const received = join(work, "stdin");
    await pipeline(input, createWriteStream(received));
    const dir = join(work, "context");
    await unpackContextFile(received, dir, "the build context on standard input");
    return { dir, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}
