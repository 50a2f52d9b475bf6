// Durable writes: what survives a crash (or a power cut) once the call returns.
import { open } from "node:fs/promises";

/** Make a rename durable: fsync the directory that holds the new name. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
