import type { Writable } from "node:stream";

/** Where renderers write: process.stdout/stderr or any Writable (a file, a test buffer). */
export type Output = NodeJS.WritableStream | Writable;

/** Writes `text` and resolves once the stream has taken it (or failed: progress is best effort). */
export function writeAndFlush(out: Output, text: string): Promise<void> {
  return new Promise((resolve) => {
    out.write(text, () => {
      resolve();
    });
  });
}

/** Blocks of lines, each block separated from what came before by an empty line. */
export function joinBlocks(blocks: string[][]): string {
  return blocks
    .filter((b) => b.length > 0)
    .map((b) => `\n${b.join("\n")}\n`)
    .join("");
}
