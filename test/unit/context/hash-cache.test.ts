// The file-hash cache behind contextChecksum: one file per context, loaded only for the
// contexts a build reads, keeping the entries the last build used.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  contextChecksum,
  makeFilter,
  saveHashCache,
  useHashCache,
} from "../../../src/context/index.js";

const none = makeFilter([], undefined);

/** The cache files in `dir` and their entries. */
async function cacheFiles(dir: string): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  for (const f of await readdir(dir)) {
    out.set(f, JSON.parse(await readFile(join(dir, f), "utf8")) as Record<string, string>);
  }
  return out;
}

/** Starts over as a new process would: caches are loaded from their files again. */
function reload(cacheDir: string, work: string): void {
  useHashCache(join(work, "elsewhere"));
  useHashCache(cacheDir);
}

test("hash cache: a file per context, read instead of the files, keeping what was last used", async () => {
  const work = await mkdtemp(join(tmpdir(), "kiln-hash-cache-"));
  try {
    const cacheDir = join(work, "cache");
    const [a, b] = [join(work, "a"), join(work, "b")];
    for (const d of [cacheDir, a, b]) await mkdir(d);
    await writeFile(join(a, "f"), "one\n");
    await writeFile(join(b, "g"), "two\n");

    reload(cacheDir, work);
    const sumA = await contextChecksum(a, none, ["."]);
    await saveHashCache();
    const saved1 = [...(await cacheFiles(cacheDir))];
    assert.equal(saved1.length, 1);
    const [fileOfA, entriesOfA] = saved1[0]!;
    assert.equal(Object.keys(entriesOfA).length, 1);

    await contextChecksum(b, none, ["."]);
    await saveHashCache();
    assert.equal((await cacheFiles(cacheDir)).size, 2, "one cache file per context");
    assert.deepEqual((await cacheFiles(cacheDir)).get(fileOfA), entriesOfA, "a's is untouched");

    // a wrong hash planted in a's file is what a later build's checksum uses: the cache file
    // was read and the content was not
    const [key] = Object.keys(entriesOfA);
    await writeFile(join(cacheDir, fileOfA), JSON.stringify({ [key!]: "0".repeat(64) }));
    reload(cacheDir, work);
    assert.notEqual(await contextChecksum(a, none, ["."]), sumA);
    await rm(join(cacheDir, fileOfA));
    reload(cacheDir, work);
    assert.equal(await contextChecksum(a, none, ["."]), sumA, "without it, the content counts");

    // a changed file's old entry is gone once the next build saves the cache
    await saveHashCache();
    await writeFile(join(a, "f"), "one, changed\n");
    reload(cacheDir, work);
    assert.notEqual(await contextChecksum(a, none, ["."]), sumA);
    await saveHashCache();
    const saved = (await cacheFiles(cacheDir)).get(fileOfA)!;
    assert.equal(Object.keys(saved).length, 1, "only the current version's entry");
    assert.notDeepEqual(saved, entriesOfA);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
