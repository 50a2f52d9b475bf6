/** `kiln build`: buildx's flags, mapped onto a BuildRequest for the engine. */
import { contextFromStdin } from "./stdin-context.js";
import { openRemoteContexts } from "./remote-contexts.js";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { Command, Option } from "commander";
import { KilnError, messageOf } from "../errors.js";
import { parseEntitlements } from "../entitlements/index.js";
import { build } from "../engine/build.js";
import { defaultRoot } from "../engine/state.js";
import { newRef, recordBuild } from "../history/index.js";
import { printCall } from "./call.js";
import { remoteBuild, selectBuilder } from "../client/index.js";
import type { BuildRequest } from "../request/index.js";
import { parsePlatformList } from "../platform/index.js";
import { createRenderer, defaultProgressMode, parseProgressMode } from "../progress/index.js";
import {
  parseAddHosts,
  parseBuildArgs,
  parseBuildContexts,
  parseKeyValues,
  parseSecret,
  planOutputs,
  parseSsh,
  parseAttributes,
} from "./options.js";
import { parseCacheFrom, parseCacheTo } from "../remotecache/index.js";
import { reportResult } from "./results.js";
import { forOutputs } from "../attest/index.js";
import { parseAttestFlags } from "./attest-flags.js";

// no default value: commander would print "(default: [])" in the help
// commander gives `--no-*` options a default of true; a list starts empty whatever it was given
const collect = (v: string, prev: unknown): string[] => [
  ...(Array.isArray(prev) ? (prev as string[]) : []),
  v,
];

interface BuildFlags {
  file?: string;
  tag?: string[];
  platform?: string[];
  buildArg?: string[];
  target?: string;
  push?: boolean;
  load?: boolean;
  output?: string[];
  label?: string[];
  annotation?: string[];
  cache?: boolean;
  // commander files `--no-cache-filter <stage>` under cacheFilter
  cacheFilter?: string[] | true;
  cacheFrom?: string[];
  cacheTo?: string[];
  pull?: boolean;
  progress?: string;
  metadataFile?: string;
  iidfile?: string;
  secret?: string[];
  ssh?: string[];
  buildContext?: string[];
  network: string;
  allow?: string[];
  addHost?: string[];
  maxParallelism?: string;
  quiet?: boolean;
  printGraph?: boolean;
  ignoreBinfmt?: boolean;
  insecureRegistry?: string[];
  builder?: string;
  strictPlatforms?: boolean;
  provenance?: string;
  sbom?: string;
  attest?: string[];
}

const OUTPUTS_HELP = `
Outputs (-o/--output, repeatable; buildx's syntax):
  type=image       keep in kiln's store; name=a,b  push=true  push-by-digest=true
                   name-canonical=true  oci-mediatypes=false (Docker types, manifest list)
                   compression=gzip|zstd|uncompressed  compression-level=N
                   force-compression=true  registry.insecure=true  annotation[-TYPE].KEY=V
  type=registry    type=image,push=true (what --push adds)
  type=oci         OCI layout tarball: dest=FILE|-  tar=false,dest=DIR for a directory
  type=docker      \`docker load\` tarball (one platform): dest=FILE|-
  type=local       the files: dest=DIR (one os_arch/ directory per platform)
  type=tar         the files as a tar: dest=FILE|-  platform-split=false
  No output: the image stays in kiln's store (kiln images, kiln push NAME).

Cache (--cache-to / --cache-from, repeatable; buildx's syntax, BuildKit's format):
  type=registry    ref=REPO:TAG  mode=min|max  compression=gzip|zstd|uncompressed
                   oci-mediatypes=false  image-manifest=false  ignore-error=true
                   registry.insecure=true; a bare --cache-from REF is type=registry
  type=local       --cache-to dest=DIR  --cache-from src=DIR; tag=T (default latest),
                   digest=sha256:… (import)
  type=inline      --cache-to only: the records go into the pushed image's config;
                   import with --cache-from IMAGE
  mode=min (default) exports the final image's steps, mode=max every step of every stage.
  An import that cannot be read is a warning; a failed export fails the build unless
  ignore-error=true.

RUN sandbox (containerd's default seccomp profile and capabilities on every RUN):
  RUN --security=insecure  needs --allow security.insecure: no filter, all capabilities
  RUN --network=host       needs --allow network.host (so does --network host)
  RUN --device=NAME        a CDI device: kiln has none; optional ones are skipped,
                           required ones (NAME,required) fail the build

Environment:
  SOURCE_DATE_EPOCH  clamp every timestamp (layers, config, history, local/tar files)
                     for reproducible images; also accepted as --build-arg
  BUILDX_NO_DEFAULT_ATTESTATIONS=1  no default provenance attestation
  KILN_ROOT          kiln's state directory
  KILN_HISTORY_KEEP  build records kept for kiln history (default 50, 0: none)
  BUILDKIT_PROGRESS  default --progress mode
`;

export function buildCommand(): Command {
  return new Command("build")
    .description("Build an image from a Dockerfile, for one or more platforms")
    .argument(
      "[context]",
      "build context: a directory, a git URL (git://…, https://….git, #ref:subdir), an http(s) URL of a tar, or - for a tar (or a lone Dockerfile) on stdin",
      ".",
    )
    .option("-f, --file <path>", "Dockerfile (default: <context>/Dockerfile)")
    .option("-t, --tag <name>", "image name and tag, e.g. registry/app:1 (repeatable)", collect)
    .option(
      "--platform <list>",
      "target platforms, e.g. linux/amd64,linux/arm64 (repeatable; local = this host)",
      collect,
    )
    .option(
      "--build-arg <key=value>",
      "set a build-time variable (repeatable; KEY alone reads the environment)",
      collect,
    )
    .option("--target <stage>", "build this stage instead of the last one")
    .option("--push", "push the image to its registry (shorthand for --output type=registry)")
    .option(
      "--load",
      "also keep the image in kiln's store (see `kiln images`); the default when no output is given",
    )
    .option(
      "-o, --output <spec>",
      "where the result goes: type=TYPE,KEY=VALUE,… (see Outputs below), a directory, or - for a tar on stdout (repeatable)",
      collect,
    )
    .option("--label <key=value>", "set an image label (repeatable)", collect)
    .option(
      "--annotation <[types:]key=value>",
      "add an image annotation; types: manifest (default), index, manifest-descriptor, index-descriptor, comma-separated, manifest[os/arch] for one platform (repeatable)",
      collect,
    )
    .option("--no-cache", "do not use the build cache")
    .option(
      "--no-cache-filter <stage>",
      "do not use the cache for this stage (repeatable)",
      collect,
    )
    .option(
      "--cache-from <spec>",
      "import build cache: type=registry,ref=R | type=local,src=DIR[,tag=T|digest=D] | R (repeatable)",
      collect,
    )
    .option(
      "--cache-to <spec>",
      "export build cache: type=registry,ref=R | type=local,dest=DIR | type=inline; mode=min|max (see Cache below; repeatable)",
      collect,
    )
    .option("--pull", "always resolve base images again (kiln resolves tags on every build)")
    .option("--progress <mode>", "auto, tty, plain, rawjson or quiet (env BUILDKIT_PROGRESS)")
    .option(
      "--metadata-file <path>",
      "write the result as JSON: containerimage.digest/.descriptor/.config.digest, image.name, buildx.build.ref",
    )
    .option("--iidfile <path>", "write the image ID (index or manifest digest) to a file")
    .option(
      "--secret <spec>",
      "expose a secret: id=name,src=path | id=name,env=VAR (repeatable)",
      collect,
    )
    .option(
      "--ssh <spec>",
      "forward an ssh agent: default | id=/path/to/socket (repeatable)",
      collect,
    )
    .option(
      "--build-context <name=dir>",
      "additional named build context: a directory, docker-image://REF, oci-layout://DIR[:TAG][@DIGEST], a git URL or an http(s) URL of a tar (repeatable)",
      collect,
    )
    .addOption(
      new Option("--network <mode>", "network for RUN steps")
        .choices(["default", "none", "host"])
        .default("default"),
    )
    .option(
      "--allow <entitlement>",
      "allow network.host (RUN --network=host) or security.insecure (RUN --security=insecure) (repeatable)",
      collect,
    )
    .option("--add-host <host:ip>", "add a line to /etc/hosts in RUN steps (repeatable)", collect)
    .option(
      "--max-parallelism <n>",
      "run at most n steps at once (default: number of CPUs, at least 2)",
    )
    .option("-q, --quiet", "no progress; print only the image ID on stdout")
    .option(
      "--print-graph",
      "print the merged build graph (one line per step: digest, op, inputs) before building",
    )
    .option(
      "--ignore-binfmt",
      "emulate foreign platforms with a QEMU wrapper only, ignoring kernel binfmt handlers",
    )
    .option(
      "--insecure-registry <host>",
      "allow plain HTTP to this registry (loopback always is) (repeatable)",
      collect,
    )
    .option(
      "--builder <name>",
      "build on this builder's nodes (default: as selected by kiln builder use)",
    )
    .option(
      "--strict-platforms",
      "with a builder: never build a platform on a node that emulates it",
    )
    .option(
      "--provenance <value>",
      "SLSA provenance: true, false, or mode=min|max[,version=v1|v0.2][,builder-id=ID] (default: mode=min on images)",
    )
    .option(
      "--sbom <value>",
      "SPDX SBOM of the image from kiln's scanner: true or false (default: false)",
    )
    .option(
      "--attest <spec>",
      "attestation: type=provenance,… or type=sbom (disabled=true turns one off) (repeatable)",
      collect,
    )
    .option(
      "--call <method>",
      "outline, targets or check[,format=json]: describe or check instead of building",
    )
    .option("--check", "shorthand for --call check")
    .addHelpText("after", OUTPUTS_HELP)
    .action(async (context: string, flags: BuildFlags & { call?: string; check?: boolean }) => {
      const call = flags.check ? "check" : flags.call;
      if (call !== undefined && (await printCall(context, { ...flags, call }))) return;
      await runBuild(context, flags);
    });
}

async function readSecrets(specs: string[]): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const spec of specs) {
    const s = parseSecret(spec);
    if (s.env !== undefined) {
      const v = process.env[s.env];
      if (v === undefined) {
        throw new KilnError(
          "E_SECRET",
          `secret ${s.id}: environment variable ${s.env} is not set`,
          {
            hint: `export ${s.env}=… before running kiln, or use --secret id=${s.id},src=<file>`,
          },
        );
      }
      out[s.id] = Buffer.from(v);
      continue;
    }
    const src = s.src ?? (process.env[s.id] !== undefined ? undefined : s.id);
    if (src === undefined) {
      out[s.id] = Buffer.from(process.env[s.id]!);
      continue;
    }
    try {
      out[s.id] = await readFile(src);
    } catch (e) {
      // the message names the file, never its content
      throw new KilnError(
        "E_SECRET",
        `secret ${s.id}: cannot read ${src}: ${(e as NodeJS.ErrnoException).code ?? messageOf(e)}`,
      );
    }
  }
  return out;
}

async function runBuild(context: string, flags: BuildFlags): Promise<void> {
  // git and http(s) contexts, main or named, are checked out or downloaded first
  const remote = await openRemoteContexts(context, flags);
  try {
    if (context !== "-") {
      await runBuildIn(remote.contextDir ?? resolve(context), remote.flags);
      return;
    }
    const stdin = await contextFromStdin();
    try {
      await runBuildIn(stdin.dir, remote.flags);
    } finally {
      await stdin.dispose();
    }
  } finally {
    await remote.dispose();
  }
}

async function runBuildIn(contextDir: string, flags: BuildFlags): Promise<void> {
  const platforms = parsePlatformList(flags.platform ?? []);
  const { outputs, implicit } = planOutputs({
    output: flags.output ?? [],
    tag: flags.tag ?? [],
    push: flags.push,
    load: flags.load,
    annotation: flags.annotation ?? [],
    platformCount: Math.max(platforms.length, 1),
  });
  const toStdout = outputs.some((o) => o.type !== "image" && o.dest === "-");
  if (toStdout && process.stdout.isTTY) {
    throw new KilnError("E_FLAG", "refusing to write a tar to the terminal", {
      hint: "redirect stdout (… -o - > rootfs.tar) or give the output a dest file",
    });
  }
  const req: BuildRequest = {
    contextDir,
    dockerfile: flags.file ? resolve(flags.file) : "Dockerfile",
    namedContexts: parseBuildContexts(flags.buildContext ?? []),
    platforms,
    buildArgs: parseBuildArgs(flags.buildArg ?? [], process.env),
    target: flags.target,
    tags: flags.tag ?? [],
    labels: parseKeyValues("--label", flags.label ?? []),
    outputs,
    noCache: flags.cache === false,
    // a `--no-*` option defaults to true when it was not given
    noCacheFilter: Array.isArray(flags.cacheFilter) ? flags.cacheFilter : [],
    pull: flags.pull ?? false,
    secrets: await readSecrets(flags.secret ?? []),
    ssh: Object.fromEntries(
      (flags.ssh ?? []).map((s) => parseSsh(s, process.env)).map((s) => [s.id, s.path]),
    ),
    network: flags.network as BuildRequest["network"],
    // --network=host asks for its entitlement itself, as in buildx
    allow: parseEntitlements(
      [...(flags.allow ?? []), ...(flags.network === "host" ? ["network.host"] : [])],
      "--allow",
    ),
    extraHosts: parseAddHosts(flags.addHost ?? []),
    maxParallelism:
      flags.maxParallelism === undefined ? undefined : parsePositive(flags.maxParallelism),
    ignoreBinfmt: flags.ignoreBinfmt ?? process.env.KILN_IGNORE_BINFMT === "1",
    insecureRegistries: flags.insecureRegistry ?? [],
    cacheFrom: (flags.cacheFrom ?? []).map((v) =>
      parseCacheFrom(v, v.includes("=") ? parseAttributes("--cache-from", v) : new Map()),
    ),
    cacheTo: (flags.cacheTo ?? []).map((v) => parseCacheTo(v, parseAttributes("--cache-to", v))),
    attestations: forOutputs(
      parseAttestFlags({
        provenance: flags.provenance,
        sbom: flags.sbom,
        attest: flags.attest ?? [],
      }),
      {
        imageOutput: outputs.some((o) => o.type !== "local" && o.type !== "tar"),
        dockerMediaTypes: outputs.some((o) => o.type === "image" && !o.ociMediaTypes),
        implicitProvenance:
          flags.provenance === undefined &&
          !(flags.attest ?? []).some((a) => /(^|,)\s*type=provenance\s*(,|$)/i.test(a)),
      },
    ),
  };
  const mode = flags.quiet
    ? "quiet"
    : flags.progress
      ? parseProgressMode(flags.progress)
      : defaultProgressMode();
  const progress = createRenderer(mode, process.stderr);
  const abort = new AbortController();
  const onSignal = (): void => {
    abort.abort(new KilnError("E_CANCELED", "build canceled (interrupted)"));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const builder = await selectBuilder(flags.builder);
    const ref = newRef();
    const recorded = { root: defaultRoot(), ref, request: req, progress, builder: builder?.name };
    const result = await recordBuild(recorded, (sink) =>
      builder
        ? remoteBuild(req, builder, {
            progress: sink,
            signal: abort.signal,
            strictPlatforms: flags.strictPlatforms ?? false,
          })
        : build(req, {
            progress: sink,
            signal: abort.signal,
            onGraph: flags.printGraph ? (g) => process.stderr.write(`${g}\n`) : undefined,
          }),
    );
    await progress.close();
    await reportResult(result, outputs, implicit, flags, ref);
  } catch (e) {
    await progress.close();
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function parsePositive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    throw new KilnError("E_FLAG", `invalid --max-parallelism value ${JSON.stringify(v)}`, {
      hint: "use a whole number >= 1",
    });
  }
  return n;
}
