/** `kiln imagetools create|inspect`: buildx's commands for indexes in a registry. */
import { Command } from "commander";
import { KilnError } from "../errors.js";
import {
  attestationView,
  createImage,
  formatInspect,
  imageAttestations,
  inspectImage,
  inspectJSON,
  parseAnnotation,
} from "../imagetools/index.js";
import { parsePlatformList } from "../platform/index.js";
import { parseReference } from "../reference/index.js";
import { RegistryClient, dockerCredentials } from "../registry/index.js";

const collect = (v: string, prev: string[]): string[] => [...prev, v];

interface CreateFlags {
  tag: string[];
  append?: boolean;
  dryRun?: boolean;
  annotation: string[];
  platform: string[];
  insecureRegistry: string[];
}

interface InspectFlags {
  raw?: boolean;
  format?: string;
  insecureRegistry: string[];
}

export function imagetoolsCommand(): Command {
  return new Command("imagetools")
    .description("Work on images in a registry: merge manifests into an index, inspect them")
    .addCommand(createCommand())
    .addCommand(inspectCommand());
}

function createCommand(): Command {
  return new Command("create")
    .description(
      "Create an index from source manifests and indexes, and push it to each --tag.\n" +
        "Sources are references (reg/app:arm64, reg/app@sha256:…) or bare digests in the --tag\n" +
        "repository, all on the target's registry: blobs are mounted across repositories, not\n" +
        "copied. Indexes are expanded into their manifests, duplicates merged; a single index\n" +
        "source is copied as is. The result is a Docker manifest list if every manifest is a\n" +
        "Docker one, else an OCI index.",
    )
    .argument("[source...]", "source images")
    .option("-t, --tag <ref>", "reference for the new index (repeatable)", collect, [])
    .option("--append", "add the sources to the index the first --tag points at")
    .option("--dry-run", "print the index instead of pushing it")
    .option(
      "--annotation <type:key=value>",
      "annotation: index:k=v, or manifest-descriptor[platform]:k=v (repeatable)",
      collect,
      [],
    )
    .option(
      "-p, --platform <list>",
      "keep only manifests of these platforms (repeatable; attestations follow their image)",
      collect,
      [],
    )
    .option(
      "--insecure-registry <host>",
      "allow plain HTTP to this registry (loopback always is) (repeatable)",
      collect,
      [],
    )
    .action(async (sources: string[], flags: CreateFlags) => {
      const annotations = flags.annotation.map(parseAnnotation);
      const platforms = flags.platform.length > 0 ? parsePlatformList(flags.platform) : [];
      const client = new RegistryClient({
        insecureHosts: flags.insecureRegistry,
        auth: dockerCredentials(),
      });
      try {
        const result = await createImage(client, {
          tags: flags.tag,
          sources,
          append: flags.append === true,
          dryRun: flags.dryRun === true,
          annotations,
          platforms,
          log: (line) => process.stderr.write(line + "\n"),
        });
        if (flags.dryRun) process.stdout.write(result.bytes.toString("utf8") + "\n");
        else process.stdout.write(result.descriptor.digest + "\n");
      } finally {
        client.close();
      }
    });
}

/**
 * `json` (kiln's: buildx's `{{json .}}` plus provenance and sbom), or one of buildx's
 * templates `{{json .}}`, `{{json .Provenance}}`, `{{json .SBOM}}`.
 */
function parseInspectFormat(f: string): "kiln" | "all" | "provenance" | "sbom" {
  const t = f.trim();
  if (t === "json") return "kiln";
  const m = /^\{\{\s*json\s+\.(Provenance|SBOM)?\s*\}\}$/.exec(t);
  if (m !== null) return m[1] === "Provenance" ? "provenance" : m[1] === "SBOM" ? "sbom" : "all";
  throw new KilnError("E_FLAG", `unsupported --format ${JSON.stringify(f)}`, {
    hint: "use --format json, '{{json .}}', '{{json .Provenance}}' or '{{json .SBOM}}', or --raw for the stored bytes",
  });
}

function inspectCommand(): Command {
  return new Command("inspect")
    .description(
      "Show an image's manifest or index. --raw prints the exact bytes; --format json prints\n" +
        '{"name", "manifest", "image"} like buildx\'s {{json .}}: manifest is the index\n' +
        "(schemaVersion, mediaType, digest, size, manifests, annotations) or the manifest with\n" +
        "its digest and size; image is the image config, or an object of configs keyed by\n" +
        'platform ("linux/arm64/v8") when the index has several; plus provenance and sbom\n' +
        "(the attestations) when there are any. '{{json .}}' prints buildx's object as is,\n" +
        "'{{json .Provenance}}' and '{{json .SBOM}}' buildx's per-platform attestation views.",
    )
    .argument("<name>", "image reference, e.g. registry/app:1 or registry/app@sha256:…")
    .option("--raw", "print the manifest or index exactly as stored")
    .option(
      "--format <format>",
      "output format: json (with provenance and sbom), or '{{json .}}', '{{json .Provenance}}', '{{json .SBOM}}'",
    )
    .option(
      "--insecure-registry <host>",
      "allow plain HTTP to this registry (loopback always is) (repeatable)",
      collect,
      [],
    )
    .action(async (name: string, flags: InspectFlags) => {
      const format = flags.format === undefined ? undefined : parseInspectFormat(flags.format);
      if (flags.raw && flags.format !== undefined) {
        throw new KilnError("E_FLAG", "--raw and --format cannot be combined", {
          hint: "choose one",
        });
      }
      const client = new RegistryClient({
        insecureHosts: flags.insecureRegistry,
        auth: dockerCredentials(),
      });
      try {
        const img = await inspectImage(client, parseReference(name));
        const print = (v: unknown): void => {
          process.stdout.write(JSON.stringify(v, null, 2) + "\n");
        };
        if (flags.raw) process.stdout.write(img.bytes);
        else if (format === "all") print(await inspectJSON(client, img));
        else if (format === "kiln") {
          const base = await inspectJSON(client, img);
          const att = await imageAttestations(client, img);
          print({
            ...base,
            ...(Object.keys(att.provenance).length > 0
              ? { provenance: attestationView(att, "provenance") }
              : {}),
            ...(Object.keys(att.sbom).length > 0 ? { sbom: attestationView(att, "sbom") } : {}),
          });
        } else if (format !== undefined)
          print(attestationView(await imageAttestations(client, img), format));
        else process.stdout.write(formatInspect(img));
      } finally {
        client.close();
      }
    });
}
