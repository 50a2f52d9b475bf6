// Deterministic benchmark workloads: each writes a build context (files + Dockerfile) from a seed.
// File trees are expensive (big-context is 1 GiB), so they are generated once per seed into a
// cache dir and reused; the Dockerfile is cheap and rewritten each time because it names the
// registry the run started. The "one file changed" scenario edits `changeFile`, and `prepare`
// puts that file back, so every run starts from the same bytes.
import { createCipheriv, createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/** Bump when a generator changes what it writes, so cached trees are regenerated. */
const RECIPE = "1";

export const TWO_PLATFORMS = ["linux/amd64", "linux/arm64"] as const;
export const SIX_PLATFORMS = [
  "linux/amd64",
  "linux/arm64",
  "linux/arm/v7",
  "linux/ppc64le",
  "linux/s390x",
  "linux/riscv64",
] as const;

export interface FileSpec {
  /** Path inside the context, with forward slashes. */
  path: string;
  size: number;
  /** Which PRNG stream fills it; the changed variant of a file uses another. */
  stream: number;
}

export interface Workload {
  name: string;
  description: string;
  platforms: readonly string[];
  /** The context's files, excluding the Dockerfile. */
  files(seed: number): FileSpec[];
  /** The Dockerfile, given the image every stage starts from (`<registry>/base/busybox:latest`). */
  dockerfile(base: string, seed: number): string;
  /** The context file the "one file changed" scenario rewrites. */
  changeFile: string;
}

export interface PreparedContext {
  dir: string;
  /** Rewrites `changeFile` with different bytes of the same size (variant 1, 2, … differ). */
  change(variant: number): Promise<void>;
}

const MiB = 1024 * 1024;

/** Splits `total` bytes into `n` file sizes around the mean, jittered ±25 % in pairs so the sum is exact. */
export function splitSizes(total: number, n: number, seed: number): number[] {
  const mean = Math.floor(total / n);
  const rand = mulberry32(seed);
  const sizes: number[] = [];
  for (let i = 0; i + 1 < n; i += 2) {
    const d = Math.floor(rand() * mean * 0.25);
    sizes.push(mean + d, mean - d);
  }
  if (sizes.length < n) sizes.push(mean);
  sizes[0]! += total - mean * n;
  return sizes;
}

function tree(prefix: string, total: number, n: number, perDir: number, seed: number): FileSpec[] {
  return splitSizes(total, n, seed).map((size, i) => {
    const name = `f${String(i).padStart(5, "0")}.txt`;
    const dir = n > perDir ? `d${String(Math.floor(i / perDir)).padStart(3, "0")}/` : "";
    return { path: `${prefix}/${dir}${name}`, size, stream: i + 1 };
  });
}

function simpleDockerfile(base: string, seed: number): string {
  return [
    `FROM ${base}`,
    `RUN mkdir -p /app && echo "seed ${seed}" > /app/seed.txt`,
    `RUN i=0; while [ $i -lt 200 ]; do echo "line $i" >> /app/log.txt; i=$((i+1)); done`,
    `COPY files/ /app/files/`,
    `RUN du -s /app/files > /app/size.txt`,
    `CMD ["sh", "-c", "cat /app/seed.txt /app/size.txt"]`,
    "",
  ].join("\n");
}

const simpleFiles = (seed: number) => tree("files", 20 * MiB, 200, 200, seed);

export const WORKLOADS: readonly Workload[] = [
  {
    name: "simple",
    description: "FROM busybox, RUNs writing files, COPY of 200 files / 20 MiB, CMD",
    platforms: TWO_PLATFORMS,
    files: simpleFiles,
    dockerfile: simpleDockerfile,
    changeFile: "files/f00100.txt",
  },
  {
    name: "multistage",
    description:
      "build stage on $BUILDPLATFORM producing per-TARGETARCH output from 60 files / 6 MiB; " +
      "busybox final stage with COPY --from and an emulated RUN",
    platforms: TWO_PLATFORMS,
    files: (seed) => tree("src", 6 * MiB, 60, 60, seed),
    dockerfile: (base) =>
      [
        `FROM --platform=$BUILDPLATFORM ${base} AS build`,
        `ARG TARGETARCH`,
        `COPY src/ /src/`,
        // The "cross-compiler": runs natively once per target, output depends on TARGETARCH.
        `RUN mkdir -p /out && cd /src && for f in *; do sha256sum "$f"; done > /out/SUMS-$TARGETARCH && ` +
          `tar -cf - . | gzip -6 > /out/app-$TARGETARCH.tar.gz && echo "$TARGETARCH" > /out/arch`,
        `FROM ${base}`,
        `ARG TARGETARCH`,
        `COPY --from=build /out/ /app/`,
        `RUN cd /app && mkdir unpacked && gzip -dc app-$TARGETARCH.tar.gz | tar -C unpacked -xf - && ` +
          `sha256sum unpacked/* > /app/CHECK && uname -m > /app/machine`,
        `CMD ["cat", "/app/arch"]`,
        "",
      ].join("\n"),
    changeFile: "src/f00030.txt",
  },
  {
    name: "cpu",
    description: "RUN hashing 256 MiB and a 300k-iteration shell loop (emulated on arm64)",
    platforms: TWO_PLATFORMS,
    files: () => [{ path: "seed.txt", size: 64, stream: 1 }],
    dockerfile: (base) =>
      [
        `FROM ${base}`,
        `COPY seed.txt /seed.txt`,
        `RUN { cat /seed.txt; head -c 268435456 /dev/zero; } | sha256sum > /hash.txt`,
        `RUN i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo $i > /loop.txt`,
        `CMD ["cat", "/hash.txt", "/loop.txt"]`,
        "",
      ].join("\n"),
    changeFile: "seed.txt",
  },
  {
    name: "wide",
    description: "simple, for 6 platforms (amd64, arm64, arm/v7, ppc64le, s390x, riscv64)",
    platforms: SIX_PLATFORMS,
    files: simpleFiles,
    dockerfile: simpleDockerfile,
    changeFile: "files/f00100.txt",
  },
  {
    name: "big-context",
    description: "COPY of 1 GiB in 20,000 files (100 directories)",
    platforms: TWO_PLATFORMS,
    files: (seed) => tree("data", 1024 * MiB, 20000, 200, seed),
    dockerfile: (base) =>
      [`FROM ${base}`, `COPY data/ /data/`, `CMD ["du", "-s", "/data"]`, ""].join("\n"),
    changeFile: "data/d050/f10000.txt",
  },
  {
    name: "smoke",
    description: "tiny: FROM busybox, RUN, COPY of 5 small files (for the test suite)",
    platforms: TWO_PLATFORMS,
    files: (seed) => tree("files", 20 * 1024, 5, 5, seed),
    dockerfile: (base) =>
      [
        `FROM ${base}`,
        `RUN echo hello > /hello.txt`,
        `COPY files/ /files/`,
        `CMD ["cat", "/hello.txt"]`,
        "",
      ].join("\n"),
    changeFile: "files/f00002.txt",
  },
];

export function workload(name: string): Workload {
  const w = WORKLOADS.find((x) => x.name === name);
  if (!w) {
    throw new Error(
      `unknown workload ${JSON.stringify(name)} (known: ${WORKLOADS.map((x) => x.name).join(", ")})`,
    );
  }
  return w;
}

/**
 * Makes `<cacheDir>/<name>-<seed>` hold the workload's context: the file tree (generated once,
 * recognised by a marker), the change target restored, and a fresh Dockerfile for `base`.
 */
export async function prepareContext(
  w: Workload,
  seed: number,
  base: string,
  cacheDir: string,
): Promise<PreparedContext> {
  const dir = join(cacheDir, `${w.name}-${seed}`);
  const files = w.files(seed);
  const marker = join(dir, ".kiln-bench");
  const stamp = JSON.stringify({ recipe: RECIPE, name: w.name, seed, files: files.length });
  if ((await readFile(marker, "utf8").catch(() => "")) !== stamp) {
    await rm(dir, { recursive: true, force: true });
    const dirs = new Set<string>();
    for (const f of files) {
      const d = dirname(join(dir, f.path));
      if (!dirs.has(d)) await mkdir(d, { recursive: true });
      dirs.add(d);
      await writeFile(join(dir, f.path), fileBytes(seed, f.stream, f.size));
    }
    // A .dockerignore keeps the marker out of every tool's context.
    await writeFile(join(dir, ".dockerignore"), ".kiln-bench\n");
    await writeFile(marker, stamp);
  }
  const target = files.find((f) => f.path === w.changeFile);
  if (!target) throw new Error(`workload ${w.name}: changeFile ${w.changeFile} is not generated`);
  const write = (stream: number) =>
    writeFile(join(dir, target.path), fileBytes(seed, stream, target.size));
  await write(target.stream);
  await writeFile(join(dir, "Dockerfile"), w.dockerfile(base, seed));
  return { dir, change: (variant) => write(target.stream + variant * 1_000_003) };
}

/**
 * Source-like bytes: base64 text of an AES-128-CTR keystream (key from seed and stream), in
 * 76-column lines. It compresses to about 3/4, like code or logs, and is fast to make.
 */
export function fileBytes(seed: number, stream: number, size: number): Buffer {
  const key = createHash("sha256").update(`kiln-bench:${seed}:${stream}`).digest().subarray(0, 16);
  const raw = createCipheriv("aes-128-ctr", key, Buffer.alloc(16)).update(
    Buffer.alloc(Math.ceil((size * 3) / 4) + 3),
  );
  const text = raw.toString("base64").replace(/(.{75})/g, "$1\n");
  return Buffer.from(text.slice(0, size), "latin1");
}

/** Small seeded PRNG for sizes (not for bytes): mulberry32. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
