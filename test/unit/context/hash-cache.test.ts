// The file-hash cache behind contextChecksum: one file per context, loaded only for the
// contexts a build reads, keeping the entries the last build used.
import { test } from "node:test";
import { createHash, randomBytes } from "node:crypto";
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

/** The cache files in `dir` and their entries (`<key> <hash>` lines). */
async function cacheFiles(dir: string): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  for (const f of await readdir(dir)) {
    const text = await readFile(join(dir, f), "utf8");
    assert.ok(text.endsWith("\n"), `${f} ends with a whole line`);
    const entries: Record<string, string> = {};
    for (const line of text.slice(0, -1).split("\n")) {
      const [key, hash, ...rest] = line.split(" ");
      assert.match(hash!, /^[0-9a-f]{64}$/);
      assert.equal(rest.length, 0, line);
      entries[key!] = hash!;
    }
    out.set(f, entries);
  }
  return out;
}

/** A cache file's text for `entries`, in their order. */
const cacheText = (entries: [string, string][]): string =>
  entries.map(([k, v]) => `${k} ${v}\n`).join("");

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
    await writeFile(join(cacheDir, fileOfA), cacheText([[key!, "0".repeat(64)]]));
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

test("hash cache: entries in another order than the walk, unknown ones and a torn last line", async () => {
  const work = await mkdtemp(join(tmpdir(), "kiln-hash-order-"));
  try {
    const cacheDir = join(work, "cache");
    const ctx = join(work, "ctx");
    await mkdir(cacheDir);
    await mkdir(join(ctx, "d"), { recursive: true });
    const names = ["a", "b", "c", "d/e", "d/f"];
    for (const n of names) await writeFile(join(ctx, n), `${n}\n`);
    reload(cacheDir, work);
    const sum = await contextChecksum(ctx, none, ["."]);
    await saveHashCache();
    const [[file, entries]] = [...(await cacheFiles(cacheDir))] as [
      [string, Record<string, string>],
    ];
    const walked = Object.entries(entries);
    assert.equal(walked.length, names.length);

    // wrong hashes, so that the checksum shows which entries were taken from the file
    const planted = (e: [string, string][]) =>
      e.map(([k]): [string, string] => [k, "1".repeat(64)]);
    await writeFile(join(cacheDir, file), cacheText(planted(walked)));
    reload(cacheDir, work);
    const allPlanted = await contextChecksum(ctx, none, ["."]);
    assert.notEqual(allPlanted, sum);

    // the same entries reversed, with one that no file has: the lookups that miss the cursor
    // find every entry all the same
    const reversed = [...planted(walked)].reverse();
    reversed.splice(2, 0, ["1:2:3:4:5", "2".repeat(64)]);
    await writeFile(join(cacheDir, file), cacheText(reversed));
    reload(cacheDir, work);
    assert.equal(await contextChecksum(ctx, none, ["."]), allPlanted);

    // a last line cut short (a crash mid-write) is not an entry: that file is read again
    const torn = cacheText(planted(walked)).slice(0, -10);
    await writeFile(join(cacheDir, file), torn);
    reload(cacheDir, work);
    const torn1 = await contextChecksum(ctx, none, ["."]);
    await writeFile(join(cacheDir, file), cacheText(planted(walked.slice(0, -1))));
    reload(cacheDir, work);
    assert.equal(torn1, await contextChecksum(ctx, none, ["."]), "as if the line were not there");
    assert.notEqual(torn1, allPlanted);
    await writeFile(join(cacheDir, file), cacheText(walked.slice(0, -1)));
    reload(cacheDir, work);
    assert.equal(await contextChecksum(ctx, none, ["."]), sum, "the real hashes, one re-read");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test("hash cache: a changed file keeps its place, so the next walk finds each entry at the cursor", async () => {
  const work = await mkdtemp(join(tmpdir(), "kiln-hash-changed-"));
  try {
    const cacheDir = join(work, "cache");
    const ctx = join(work, "ctx");
    await mkdir(cacheDir);
    await mkdir(join(ctx, "d"), { recursive: true });
    for (const n of ["a", "b", "c", "d/e"]) await writeFile(join(ctx, n), `${n}\n`);
    reload(cacheDir, work);
    await contextChecksum(ctx, none, ["."]);
    await saveHashCache();
    const before = Object.keys([...(await cacheFiles(cacheDir)).values()][0]!);

    // the first file in walk order changes: it is read, the others come from the cache
    await writeFile(join(ctx, "a"), "a, changed\n");
    reload(cacheDir, work);
    await contextChecksum(ctx, none, ["."]);
    await saveHashCache();
    const after = Object.keys([...(await cacheFiles(cacheDir)).values()][0]!);
    assert.equal(after.length, before.length);
    assert.notEqual(after[0], before[0], "the changed file's entry is new");
    assert.deepEqual(after.slice(1), before.slice(1), "and in its place: the rest follow it");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test("hash cache: each entry is the sha256 of the file's bytes, a file of several reads included", async () => {
  const work = await mkdtemp(join(tmpdir(), "kiln-hash-bytes-"));
  try {
    const cacheDir = join(work, "cache");
    const ctx = join(work, "ctx");
    await mkdir(cacheDir);
    await mkdir(ctx);
    // 2.5 reads of the checksum's buffer, an empty file and a small one
    const contents = [randomBytes((5 << 20) / 2), Buffer.alloc(0), Buffer.from("small\n")];
    for (const [i, c] of contents.entries()) await writeFile(join(ctx, `f${i}`), c);
    reload(cacheDir, work);
    await contextChecksum(ctx, none, ["."]);
    await saveHashCache();
    const saved = Object.values([...(await cacheFiles(cacheDir)).values()][0]!).sort();
    const expected = contents.map((c) => createHash("sha256").update(c).digest("hex")).sort();
    assert.deepEqual(saved, expected);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
