/**
 * What `kiln build` leaves behind besides its outputs: the image ID on stdout (-q), the
 * --iidfile and the --metadata-file (buildx's keys), and the note that an output-less build
 * went to kiln's store.
 */
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import type { BuildResult, OutputSpec } from "../request/index.js";

export interface ResultFlags {
  quiet?: boolean;
  iidfile?: string;
  metadataFile?: string;
}

/** A build reference like buildx's `builder/node/ref`; `ref` names the build's history record. */
export function buildRef(ref: string): string {
  return `kiln/${hostname()}/${ref}`;
}

/** The --metadata-file document: buildx's keys, plus per-platform digests under `kiln.`. */
export function metadataOf(result: BuildResult, ref: string): Record<string, unknown> {
  return {
    "buildx.build.ref": ref,
    "containerimage.descriptor": result.descriptor,
    "containerimage.digest": result.digest,
    ...(result.configDigest ? { "containerimage.config.digest": result.configDigest } : {}),
    ...(result.imageNames.length ? { "image.name": result.imageNames.join(",") } : {}),
    "kiln.platforms": result.platforms.map((p) => ({
      platform: p.platform,
      "containerimage.digest": p.manifestDigest,
      "containerimage.config.digest": p.configDigest,
    })),
  };
}

export async function reportResult(
  result: BuildResult,
  outputs: readonly OutputSpec[],
  implicit: boolean,
  flags: ResultFlags,
  ref: string,
): Promise<void> {
  if (implicit) {
    const names = result.imageNames;
    process.stderr.write(
      `kiln: no output given; the image is kept in kiln's store${names.length ? ` as ${names.join(", ")}` : ` (untagged, ${result.digest})`}: see \`kiln images\`, send it with \`kiln push NAME\`, or use --push / --output next time\n`,
    );
  }
  // stdout may already carry a tarball: the ID would corrupt it
  const stdoutTaken = outputs.some((o) => o.type !== "image" && o.dest === "-");
  if (flags.quiet && !stdoutTaken) process.stdout.write(`${result.digest}\n`);
  if (flags.iidfile) await writeFile(flags.iidfile, result.digest);
  if (flags.metadataFile) {
    const meta = metadataOf(result, buildRef(ref));
    await writeFile(flags.metadataFile, JSON.stringify(meta, null, 2) + "\n");
  }
}
