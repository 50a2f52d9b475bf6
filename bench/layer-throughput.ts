// Layer throughput: our dirToTar → compressLayer(gzip) against `tar -c | gzip -1/-6` on the
// same deterministic tree. Usage: node --import tsx bench/layer-throughput.ts [--size 1G]
// The tree is generated once under /tmp and reused; every run reads it from the page cache and
// writes to /dev/shm, so disk writeback (slow and erratic on VMs) does not dominate the figures.
import { spawn } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { once } from "node:events";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compressLayer, dirToTar } from "../src/archive/index.js";

const UNITS: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)i?B?$/i.exec(s);
  if (!m) throw new Error(`--size: cannot parse ${s} (use e.g. 64M, 1G)`);
  return Math.round(Number(m[1]) * (UNITS[m[2]!.toUpperCase()] ?? 1));
}

/** Deterministic pseudo-random bytes: AES-128-CTR over zeros with a fixed key. */
function prng(seed: number): (n: number) => Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed);
  const c = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  return (n) => c.update(Buffer.alloc(n));
}

const WORDS =
  "the quick brown fox jumps over lazy dog layer image build cache digest manifest index platform".split(
    " ",
  );

/** Text-like data that compresses roughly like source code or logs. */
function compressible(rand: (n: number) => Buffer, n: number): Buffer {
  const picks = rand(n);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = WORDS[picks[i % n]! % WORDS.length]!;
    const sep = picks[(i * 7) % n]! % 11 === 0 ? "\n" : " ";
    parts.push(w + sep);
    len += w.length + 1;
  }
  return Buffer.from(parts.join("")).subarray(0, n);
}

async function generate(dir: string, total: number): Promise<void> {
  const marker = join(dir, ".generated");
  const done = await readFile(marker, "utf8").catch(() => "");
  if (done === String(total)) return;
  await rm(dir, { recursive: true, force: true });
  const rand = prng(42);
  let written = 0;
  let i = 0;
  // ~25% of the bytes in many small files (0.5–32 KiB), the rest in large files (4–64 MiB);
  // each file is either text-like or incompressible.
  const smallBudget = total / 4;
  while (written < total) {
    const small = written < smallBudget;
    const r = rand(4).readUInt32BE();
    const size = Math.min(
      total - written,
      small ? 512 + (r % (32 * 1024)) : 4 * 1024 ** 2 + (r % (60 * 1024 ** 2)),
    );
    const sub = join(dir, small ? `small/${String(i % 97).padStart(2, "0")}` : "large");
    await mkdir(sub, { recursive: true });
    const chunkSize = 4 * 1024 ** 2;
    const parts: Buffer[] = [];
    for (let left = size; left > 0; left -= chunkSize) {
      const n = Math.min(left, chunkSize);
      parts.push(r % 2 === 0 ? compressible(rand, n) : rand(n));
    }
    await writeFile(join(sub, `f${i}.${r % 2 === 0 ? "txt" : "bin"}`), Buffer.concat(parts));
    written += size;
    i++;
  }
  await writeFile(marker, String(total));
  console.log(`generated ${i} files, ${(total / 1024 ** 2).toFixed(0)} MiB in ${dir}`);
}

async function shell(cmd: string): Promise<void> {
  const child = spawn("sh", ["-c", cmd], { stdio: "inherit" });
  const [code] = (await once(child, "close")) as [number | null];
  if (code !== 0) throw new Error(`${cmd}: exit ${code}`);
}

async function timed(label: string, dataBytes: number, out: string, fn: () => Promise<unknown>) {
  const t0 = process.hrtime.bigint();
  await fn();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const size = (await stat(out)).size;
  const mbps = dataBytes / 1e6 / secs;
  console.log(
    `${label.padEnd(34)} ${secs.toFixed(2).padStart(7)} s ${mbps.toFixed(1).padStart(8)} MB/s   ` +
      `out ${(size / 1e6).toFixed(1)} MB (${((100 * size) / dataBytes).toFixed(1)}%)`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { size: { type: "string", default: "1G" } } });
  const total = parseSize(values.size);
  const dir = `/tmp/kiln-bench-layer-${values.size}`;
  const out = "/dev/shm/kiln-bench-layer-out";
  await generate(dir, total);
  await shell(`sync && tar -cf - -C ${dir} . > /dev/null`); // flush writeback, warm the cache
  console.log(`data: ${(total / 1e6).toFixed(1)} MB, node ${process.version}`);
  for (const level of [1, 6]) {
    await timed(`kiln dirToTar → gzip -${level}`, total, out, () =>
      compressLayer(dirToTar(dir), out, { compression: "gzip", level }),
    );
  }
  for (const level of [1, 6]) {
    await timed(`tar -c | gzip -${level}`, total, out, () =>
      shell(`tar -cf - -C ${dir} . | gzip -${level} > ${out}`),
    );
  }
  await timed("kiln dirToTar → zstd -3 (CLI, -T0)", total, out, () =>
    compressLayer(dirToTar(dir), out, { compression: "zstd" }),
  );
  await timed("kiln dirToTar (uncompressed)", total, out, () =>
    compressLayer(dirToTar(dir), out, { compression: "uncompressed" }),
  );
  await rm(out, { force: true });
}

await main();
