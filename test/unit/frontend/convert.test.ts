import { test } from "node:test";
import assert from "node:assert/strict";
import { DockerfileError } from "../../../src/frontend/dockerfile/index.js";
import { KilnError } from "../../../src/errors.js";
import type { ExecMount } from "../../../src/graph/index.js";
import {
  convert,
  envOf,
  execs,
  files,
  history,
  lastExec,
  names,
  vertices,
  type Converted,
} from "./convert-helpers.js";

const SH = ["/bin/sh", "-c"];

async function rejects(p: Promise<unknown>, re: RegExp, line?: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KilnError, `not a KilnError: ${String(e)}`);
    assert.match(e.message, re);
    if (line !== undefined) {
      assert.ok(e instanceof DockerfileError, `not placed: ${e.message}`);
      assert.equal(e.line, line, e.message);
    }
    return true;
  });
}

// ---------------------------------------------------------------- ARG scoping

test("global ARGs expand in FROM; a stage sees them only when it re-declares them", async () => {
  const src = "ARG BASE=alpine\nARG V=1\nFROM $BASE\nRUN echo $V\nARG V\nRUN echo $V\n";
  const r = await convert(src);
  assert.deepEqual(r.calls, ["alpine linux/amd64"]);
  const [first, second] = execs(r).map((v) => v.op);
  assert.equal(envOf(first!).V, undefined);
  assert.equal(envOf(second!).V, "1");
  assert.deepEqual(history(r), [
    { created_by: "RUN /bin/sh -c echo $V # buildkit" },
    { created_by: "ARG V=1", empty_layer: true },
    { created_by: "RUN |1 V=1 /bin/sh -c echo $V # buildkit" },
  ]);
});

test("--build-arg overrides global and stage defaults", async () => {
  const src = "ARG BASE=alpine\nFROM $BASE\nARG V=default\nRUN echo $V\n";
  const r = await convert(src, { buildArgs: { BASE: "busybox", V: "cli" } });
  assert.deepEqual(r.calls, ["busybox linux/amd64"]);
  assert.equal(envOf(lastExec(r)).V, "cli");
  assert.equal(history(r)[0]!.created_by, "ARG V=cli");
});

test("ARG defaults expand earlier ARGs and ENV of the stage, in order", async () => {
  const src = "FROM alpine\nENV E=env\nARG A=a B=${A}-b\nARG C=$E/$B/$UNSET\nRUN true\n";
  const env = envOf(lastExec(await convert(src)));
  assert.equal(env.B, "a-b");
  assert.equal(env.C, "env/a-b/");
});

test("a global ARG default expands earlier global ARGs", async () => {
  const src = "ARG REPO=alp\nARG IMG=${REPO}ine\nFROM $IMG\nARG IMG\nRUN true\n";
  const r = await convert(src);
  assert.deepEqual(r.calls, ["alpine linux/amd64"]);
  assert.equal(envOf(lastExec(r)).IMG, "alpine");
});

test("ENV overrides an ARG of the same name in RUN's env and in the history text", async () => {
  const src = "FROM alpine\nARG A=1\nENV A=2\nRUN true\n";
  const r = await convert(src);
  assert.equal(envOf(lastExec(r)).A, "2");
  assert.equal(history(r).at(-1)!.created_by, "RUN |1 A=2 /bin/sh -c true # buildkit");
});

test("ARG without a value and no global value is declared but unset", async () => {
  const r = await convert("FROM alpine\nARG NOPE\nRUN true\n");
  assert.equal(envOf(lastExec(r)).NOPE, undefined);
  assert.deepEqual(history(r), [
    { created_by: "ARG NOPE", empty_layer: true },
    { created_by: "RUN |1 NOPE= /bin/sh -c true # buildkit" },
  ]);
});

test("a stage built FROM another stage inherits its ARGs (RUN history lists them)", async () => {
  const src = "FROM alpine AS a\nARG X=1\nFROM a\nARG Y=2\nRUN true\n";
  const r = await convert(src);
  assert.equal(history(r).at(-1)!.created_by, "RUN |2 X=1 Y=2 /bin/sh -c true # buildkit");
  assert.deepEqual([envOf(lastExec(r)).X, envOf(lastExec(r)).Y], ["1", "2"]);
});

// ---------------------------------------------------------------- automatic platform ARGs

const PLATFORM_ARGS =
  "TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT";

for (const [target, tp, arch, variant] of [
  ["linux/amd64", "linux/amd64", "amd64", ""],
  ["linux/arm64", "linux/arm64", "arm64", ""],
  ["linux/arm64/v8", "linux/arm64", "arm64", ""],
  ["linux/arm", "linux/arm/v7", "arm", "v7"],
  ["linux/arm/v6", "linux/arm/v6", "arm", "v6"],
  ["linux/386", "linux/386", "386", ""],
  ["linux/ppc64le", "linux/ppc64le", "ppc64le", ""],
  ["linux/riscv64", "linux/riscv64", "riscv64", ""],
] as const) {
  test(`automatic platform ARGs for target ${target} built on amd64`, async () => {
    const r = await convert(`FROM alpine\nARG ${PLATFORM_ARGS}\nRUN true\n`, { platform: target });
    assert.deepEqual(r.calls, [`alpine ${tp}`]);
    const env = envOf(lastExec(r));
    assert.deepEqual(
      [env.TARGETPLATFORM, env.TARGETOS, env.TARGETARCH, env.TARGETVARIANT],
      [tp, "linux", arch, variant],
    );
    assert.deepEqual(
      [env.BUILDPLATFORM, env.BUILDOS, env.BUILDARCH, env.BUILDVARIANT],
      ["linux/amd64", "linux", "amd64", ""],
    );
    assert.equal(
      history(r).at(-1)!.created_by,
      `RUN |8 TARGETPLATFORM=${tp} TARGETOS=linux TARGETARCH=${arch} TARGETVARIANT=${variant} ` +
        "BUILDPLATFORM=linux/amd64 BUILDOS=linux BUILDARCH=amd64 BUILDVARIANT= /bin/sh -c true # buildkit",
    );
    assert.equal(r.config.architecture, arch);
    assert.equal(r.config.variant, variant || undefined);
  });
}

test("the config's platform is containerd-normalized: arm64 'v8' from the base is dropped, arm gets v7", async () => {
  const images = {
    arm64v8: { only: "linux/arm64", configPlatform: { variant: "v8" } },
    aarch64: { configPlatform: { architecture: "aarch64", variant: "8" } },
    armnovariant: { only: "linux/arm/v7", configPlatform: { variant: "" } },
  };
  for (const platform of ["linux/arm64", "linux/arm64/v8", undefined]) {
    const r = await convert("FROM arm64v8\nRUN true\n", { platform, images });
    assert.equal(r.config.architecture, "arm64");
    assert.equal(r.config.variant, undefined, `platform ${platform}`);
  }
  const a = await convert("FROM aarch64\n", { platform: "linux/arm64", images });
  assert.deepEqual([a.config.architecture, a.config.variant], ["arm64", undefined]);
  // the implicit target keeps the base's platform, still normalized
  const b = await convert("FROM armnovariant\n", { images });
  assert.deepEqual([b.config.architecture, b.config.variant], ["arm", "v7"]);
});

test("automatic platform ARGs can be overridden with --build-arg; TARGETSTAGE names the target", async () => {
  const src = "FROM alpine AS one\nARG TARGETARCH TARGETSTAGE\nRUN true\nFROM alpine AS two\n";
  const r = await convert(src, { buildArgs: { TARGETARCH: "mips" }, target: "one" });
  assert.equal(envOf(lastExec(r)).TARGETARCH, "mips");
  assert.equal(envOf(lastExec(r)).TARGETSTAGE, "one");
  const d = await convert("FROM alpine\nARG TARGETSTAGE\nRUN true\n");
  assert.equal(envOf(lastExec(d)).TARGETSTAGE, "default");
});

// ---------------------------------------------------------------- RUN's exec op

test("RUN's exec op: shell, env from the image, cwd, user, network", async () => {
  const r = await convert("FROM withuser\nENV B=2\nRUN --network=none make\n");
  const op = lastExec(r);
  assert.deepEqual(op.args, [...SH, "make"]);
  assert.deepEqual(op.env, [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "B=2",
  ]);
  assert.equal(op.cwd, "/home/app");
  assert.equal(op.user, "app");
  assert.equal(op.network, "none");
  assert.equal(r.config.config!.WorkingDir, "/home/app");
});

test("RUN exec form runs argv as is; SHELL changes the shell of later shell forms", async () => {
  const r = await convert(
    'FROM alpine\nRUN ["echo", "a b"]\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nRUN echo $0\n',
  );
  const [a, b] = execs(r).map((v) => v.op);
  assert.deepEqual(a!.args, ["echo", "a b"]);
  assert.deepEqual(b!.args, ["/bin/bash", "-eo", "pipefail", "-c", "echo $0"]);
  assert.deepEqual(r.config.config!.Shell, ["/bin/bash", "-eo", "pipefail", "-c"]);
  assert.deepEqual(
    history(r).map((h) => h.created_by),
    [
      "RUN echo a b # buildkit",
      "SHELL [/bin/bash -eo pipefail -c]",
      "RUN /bin/bash -eo pipefail -c echo $0 # buildkit",
    ],
  );
});

test("a re-set variable moves to the end of RUN's env (LLB EnvList) but stays in place in the config", async () => {
  const r = await convert("FROM alpine\nENV A=1 B=2\nENV A=3\nRUN true\n");
  assert.deepEqual(lastExec(r).env, ["PATH=/usr/bin:/bin", "B=2", "A=3"]);
  assert.deepEqual(r.config.config!.Env, ["PATH=/usr/bin:/bin", "A=3", "B=2"]);
});

test("BUILDKIT_SANDBOX_HOSTNAME sets RUN's hostname; --add-host reaches every RUN", async () => {
  const r = await convert("FROM alpine\nRUN true\n", {
    buildArgs: { BUILDKIT_SANDBOX_HOSTNAME: "box" },
    extraHosts: [{ host: "db", ip: "10.0.0.2" }],
  });
  assert.equal(lastExec(r).hostname, "box");
  assert.deepEqual(lastExec(r).extraHosts, [{ host: "db", ip: "10.0.0.2" }]);
});

test("RUN --security=insecure and --network=host need their entitlements", async () => {
  const insecure = "FROM alpine\nRUN --security=insecure true\n";
  await rejects(convert(insecure), /:5: security\.insecure is not allowed\n/, 2);
  await assert.rejects(convert(insecure), (e: unknown) => {
    assert.ok(e instanceof KilnError);
    assert.equal(e.code, "E_ENTITLEMENT");
    assert.match(e.hint ?? "", /--allow security\.insecure/);
    return true;
  });
  const granted = await convert(insecure, { entitlements: new Set(["security.insecure"]) });
  assert.equal(lastExec(granted).security, "insecure");
  const sandboxed = await convert("FROM alpine\nRUN true\n");
  assert.ok(!("security" in lastExec(sandboxed)), "a sandboxed RUN's digest is unchanged");

  const host = "FROM alpine\nRUN true\nRUN --network=host true\n";
  await rejects(convert(host), /network\.host is not allowed\n/, 3);
  await rejects(convert("FROM alpine\nRUN true\n", { network: "host" }), /network\.host/, 2);
  const ok = await convert(host, { entitlements: new Set(["network.host"]) });
  assert.equal(lastExec(ok).network, "host");
  await rejects(convert(host, { entitlements: new Set(["security.insecure"]) }), /network\.host/);
});

test("RUN --device: a required device is refused (no CDI devices), an optional one skipped (the default)", async () => {
  await rejects(
    convert("FROM alpine\nRUN --device=vendor.com/gpu=0,required true\n"),
    /required device "vendor\.com\/gpu=0" is not registered: kiln has no CDI devices/,
    2,
  );
  await rejects(convert("FROM alpine\nRUN --device=name=a,required=true true\n"), /CDI/, 2);
  for (const flag of ["--device=vendor.com/gpu=0", "--device=vendor.com/gpu=0,required=false"]) {
    const r = await convert(`FROM alpine\nRUN ${flag} true\n`);
    assert.deepEqual(
      r.warnings.map((w) => [w.message, w.location?.line]),
      [['optional device "vendor.com/gpu=0" is not registered: skipped', 2]],
    );
  }
});

// ---------------------------------------------------------------- ENV

test("ENV: every pair of a line expands with the values from before the line", async () => {
  const r = await convert("FROM alpine\nENV A=1\nENV A=2 B=$A\nRUN true\n");
  assert.equal(envOf(lastExec(r)).B, "1");
  assert.equal(envOf(lastExec(r)).A, "2");
  assert.deepEqual(history(r).slice(0, 2), [
    { created_by: "ENV A=1", empty_layer: true },
    { created_by: "ENV A=2 B=1", empty_layer: true },
  ]);
});

test("ENV legacy form and PATH default for an image without one", async () => {
  const r = await convert("FROM emptyimage\nENV K some value\n", {
    images: { emptyimage: { layers: 0, config: {} } },
  });
  assert.deepEqual(r.config.config!.Env, [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "K=some value",
  ]);
  assert.equal(history(r)[0]!.created_by, "ENV K=some value");
});

// ---------------------------------------------------------------- WORKDIR, USER

test("WORKDIR: absolute, relative to the previous one, with variables; each makes a mkdir op", async () => {
  const r = await convert("FROM alpine\nENV D=src\nWORKDIR /app\nWORKDIR $D/\nWORKDIR ../lib\n");
  assert.equal(r.config.config!.WorkingDir, "/app/lib");
  const mk = files(r).map((v) => v.op.actions[0]);
  assert.deepEqual(mk, [
    { action: "mkdir", path: "/app", mode: 0o755, makeParents: true },
    { action: "mkdir", path: "/app/src", mode: 0o755, makeParents: true },
    { action: "mkdir", path: "/app/lib", mode: 0o755, makeParents: true },
  ]);
  // layers, yet without the "# buildkit" mark of RUN/COPY/ADD (BuildKit's dispatchWorkdir)
  assert.deepEqual(history(r).slice(1), [
    { created_by: "WORKDIR /app" },
    { created_by: "WORKDIR /app/src" },
    { created_by: "WORKDIR /app/lib" },
  ]);
  assert.deepEqual(names(r).slice(1), [
    "[2/4] WORKDIR /app",
    "[3/4] WORKDIR src/",
    "[4/4] WORKDIR ../lib",
  ]);
});

test("WORKDIR / makes no layer; WORKDIR after USER creates the directory owned by the user", async () => {
  const r = await convert("FROM alpine\nWORKDIR /\nUSER 1000:1000\nWORKDIR /data\nRUN id\n");
  assert.deepEqual(history(r).slice(0, 2), [
    { created_by: "WORKDIR /", empty_layer: true },
    { created_by: "USER 1000:1000", empty_layer: true },
  ]);
  assert.deepEqual(files(r)[0]!.op.actions[0], {
    action: "mkdir",
    path: "/data",
    mode: 0o755,
    makeParents: true,
    chown: { user: "1000", group: "1000" },
  });
  assert.equal(lastExec(r).user, "1000:1000");
  assert.equal(lastExec(r).cwd, "/data");
});

test("WORKDIR on scratch makes the directory in an empty filesystem", async () => {
  const r = await convert("FROM scratch\nWORKDIR /w\n");
  assert.equal(files(r)[0]!.op.dest, -1);
  assert.equal(files(r)[0]!.inputs.length, 0);
});

// ---------------------------------------------------------------- CMD, ENTRYPOINT

test("CMD and ENTRYPOINT in shell and exec form", async () => {
  const r = await convert('FROM alpine\nENTRYPOINT ["/app"]\nCMD serve "x y"\n');
  assert.deepEqual(r.config.config!.Entrypoint, ["/app"]);
  assert.deepEqual(r.config.config!.Cmd, [...SH, 'serve "x y"']);
  assert.deepEqual(
    history(r).map((h) => h.created_by),
    ['ENTRYPOINT ["/app"]', 'CMD ["/bin/sh" "-c" "serve \\"x y\\""]'],
  );
});

test("ENTRYPOINT clears the CMD inherited from the image, not one set in the stage", async () => {
  const a = await convert("FROM withcmd\nENTRYPOINT /run.sh\n");
  assert.deepEqual(a.config.config!.Entrypoint, [...SH, "/run.sh"]);
  assert.equal("Cmd" in a.config.config!, false);
  const b = await convert('FROM withcmd\nCMD ["x"]\nENTRYPOINT ["/e"]\n');
  assert.deepEqual(b.config.config!.Cmd, ["x"]);
  const c = await convert('FROM withcmd AS base\nCMD ["x"]\nFROM base\nENTRYPOINT ["/e"]\n');
  assert.equal(c.config.config!.Cmd, undefined);
});

test("CMD shell form uses the SHELL set before it", async () => {
  const r = await convert('FROM alpine\nSHELL ["pwsh", "-c"]\nCMD Get-Date\n');
  assert.deepEqual(r.config.config!.Cmd, ["pwsh", "-c", "Get-Date"]);
});

// ---------------------------------------------------------------- EXPOSE, VOLUME, LABEL, STOPSIGNAL, HEALTHCHECK

test("EXPOSE: ranges, protocols lower-cased, default tcp, variables", async () => {
  const r = await convert(
    "FROM alpine\nENV P=9000\nEXPOSE 80 53/UDP 8000-8002/tcp $P 7/ 1.2.3.4:81:81\n",
  );
  assert.deepEqual(Object.keys(r.config.config!.ExposedPorts!).sort(), [
    "53/udp",
    "7/tcp",
    "80/tcp",
    "8000/tcp",
    "8001/tcp",
    "8002/tcp",
    "81/tcp",
    "9000/tcp",
  ]);
  assert.match(history(r).at(-1)!.created_by!, /^EXPOSE \[[^\]]*8000\/tcp 8001\/tcp 8002\/tcp/);
});

for (const [bad, re] of [
  ["80/ftp", /invalid proto: ftp/],
  ["70000", /invalid containerPort: 70000/],
  ["90-80", /invalid containerPort: 90-80/],
  ["1000-1001:80-82", /invalid ranges/],
  ["nope:80:80", /invalid IP address: nope/],
] as const) {
  test(`EXPOSE ${bad} is an error on its line`, async () => {
    await rejects(convert(`FROM alpine\n\nEXPOSE ${bad}\n`), re, 3);
  });
}

test("VOLUME, LABEL (expanded) and MAINTAINER", async () => {
  const r = await convert(
    'FROM alpine\nENV V=x\nVOLUME ["/data", "/cache"]\nVOLUME /$V /y\nLABEL a=$V "b c"="d e"\nMAINTAINER me <me@x>\n',
  );
  assert.deepEqual(Object.keys(r.config.config!.Volumes!), ["/cache", "/data", "/x", "/y"]);
  assert.deepEqual(r.config.config!.Labels, { a: "x", "b c": "d e" });
  assert.equal(r.config.author, "me <me@x>");
  assert.deepEqual(
    history(r)
      .slice(1)
      .map((h) => h.created_by),
    ["VOLUME [/data /cache]", "VOLUME [/x /y]", "LABEL a=x b c=d e", "MAINTAINER me <me@x>"],
  );
});

test("an absolute WORKDIR is kept as written in the config and history; a relative one is cleaned", async () => {
  const r = await convert("FROM alpine\nWORKDIR /app/\nRUN true\nWORKDIR sub/../lib/\n");
  assert.equal(r.config.config!.WorkingDir, "/app/lib");
  assert.deepEqual(
    history(r)
      .slice(-3)
      .map((h) => h.created_by),
    ["WORKDIR /app/", "RUN /bin/sh -c true # buildkit", "WORKDIR /app/lib"],
  );
  const r2 = await convert("FROM alpine\nWORKDIR /trailing/slash/\n");
  assert.equal(r2.config.config!.WorkingDir, "/trailing/slash/");
  const mkdir = files(r2)[0]!.op.actions[0]!;
  assert.equal(mkdir.action === "mkdir" ? mkdir.path : undefined, "/trailing/slash");
});

test("map-valued config fields are written in key order, as Go's encoding/json does", async () => {
  const r = await convert(
    "FROM alpine\nLABEL z=1 a=2 M=3\nEXPOSE 8080 443 53/udp\nVOLUME /z /a\nLABEL b=4\n",
    { labels: { c: "5" } },
  );
  const cc = r.config.config!;
  assert.deepEqual(Object.keys(cc.Labels!), ["M", "a", "b", "c", "z"]);
  assert.deepEqual(Object.keys(cc.ExposedPorts!), ["443/tcp", "53/udp", "8080/tcp"]);
  assert.deepEqual(Object.keys(cc.Volumes!), ["/a", "/z"]);
});

test("CMD [] and ENTRYPOINT [] clear the inherited values (omitted, not empty lists)", async () => {
  const r = await convert('FROM alpine\nENTRYPOINT ["/e"]\nCMD ["c"]\nENTRYPOINT []\nCMD []\n');
  assert.equal("Entrypoint" in r.config.config!, false);
  assert.equal("Cmd" in r.config.config!, false);
  assert.deepEqual(
    history(r)
      .slice(-2)
      .map((h) => h.created_by),
    ["ENTRYPOINT []", "CMD []"],
  );
});

test("--label adds labels to the result without a history entry", async () => {
  const r = await convert("FROM alpine\nLABEL a=1\n", { labels: { b: "2", a: "3" } });
  assert.deepEqual(r.config.config!.Labels, { a: "3", b: "2" });
  assert.equal(history(r).length, 1);
});

for (const ok of ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-14", "-1"]) {
  test(`STOPSIGNAL ${ok} is accepted`, async () => {
    const r = await convert(`FROM alpine\nSTOPSIGNAL ${ok}\n`);
    assert.equal(r.config.config!.StopSignal, ok);
    assert.equal(history(r)[0]!.created_by, `STOPSIGNAL ${ok}`);
  });
}
for (const bad of ["SIGFOO", "0", "RTMIN+16", "RTMAX-15"]) {
  test(`STOPSIGNAL ${bad} is rejected`, async () => {
    await rejects(convert(`FROM alpine\nSTOPSIGNAL ${bad}\n`), /invalid signal/, 2);
  });
}

test("HEALTHCHECK config and history text", async () => {
  const r = await convert(
    "FROM alpine\nHEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f http://x/\n",
  );
  assert.deepEqual(r.config.config!.Healthcheck, {
    Test: ["CMD-SHELL", "curl -f http://x/"],
    Interval: 90e9,
    Timeout: 500e6,
    Retries: 3,
  });
  assert.equal(
    history(r)[0]!.created_by,
    "HEALTHCHECK {Test:[CMD-SHELL curl -f http://x/] Interval:1m30s Timeout:500ms StartPeriod:0s StartInterval:0s Retries:3}",
  );
  const none = await convert("FROM alpine\nHEALTHCHECK NONE\n");
  assert.deepEqual(none.config.config!.Healthcheck, { Test: ["NONE"] });
});

// ---------------------------------------------------------------- ONBUILD

test("ONBUILD triggers of a base image run after FROM and are not inherited further", async () => {
  const r = await convert("FROM onbuild\nRUN echo own\n", { multiPlatform: false });
  assert.deepEqual(
    execs(r).map((v) => v.op.args.at(-1)),
    ["echo from-image-trigger", "echo own"],
  );
  assert.equal(envOf(lastExec(r)).TRIGGERED, "1");
  assert.equal(r.config.config!.OnBuild, undefined);
  // FROM is named before the triggers join the total, as in BuildKit
  assert.deepEqual(names(r), [
    "[1/2] FROM registry.test/onbuild@" +
      r.calls.length.toString().slice(0, 0) +
      (vertices(r)[0]!.op as { manifestDigest: string }).manifestDigest,
    "[2/4] ONBUILD RUN echo from-image-trigger",
    "[3/4] RUN echo own",
  ]);
});

test("ONBUILD in a stage runs in stages built FROM it, once, and is kept in the image config", async () => {
  const src =
    "FROM alpine AS base\nONBUILD RUN echo trig\nRUN echo base\nFROM base AS mid\nRUN echo mid\nFROM mid\nRUN echo last\n";
  const r = await convert(src);
  assert.deepEqual(
    execs(r).map((v) => v.op.args.at(-1)),
    ["echo base", "echo trig", "echo mid", "echo last"],
  );
  const base = await convert(src, { target: "base" });
  assert.deepEqual(base.config.config!.OnBuild, ["RUN echo trig"]);
  const mid = await convert(src, { target: "mid" });
  assert.equal(mid.config.config!.OnBuild, undefined);
  assert.deepEqual(names(mid).slice(-2), [
    "[mid 1/2] ONBUILD RUN echo trig",
    "[mid 2/2] RUN echo mid",
  ]);
});

// ---------------------------------------------------------------- targets and reachability

test("--target builds that stage; an unknown target lists the stage names", async () => {
  const src = "FROM alpine AS build\nRUN make\nFROM busybox AS final\nCOPY --from=build /a /a\n";
  const r = await convert(src, { target: "build" });
  assert.deepEqual(r.calls, ["alpine linux/amd64"]);
  await assert.rejects(convert(src, { target: "nope" }), (e: unknown) => {
    assert.ok(e instanceof KilnError);
    assert.equal(e.code, "E_TARGET_NOT_FOUND");
    assert.match(e.message, /target stage "nope" could not be found/);
    assert.match(e.hint ?? "", /build, final/);
    return true;
  });
});

test("only the stages the target needs are converted: an unreachable base is never resolved", async () => {
  const src =
    "FROM nonexistent-image AS unused\nRUN false\nFROM alpine AS dep\nRUN make\nFROM busybox\nCOPY --from=dep /out /out\n";
  const r = await convert(src);
  assert.deepEqual(r.calls.sort(), ["alpine linux/amd64", "busybox linux/amd64"]);
});

test("FROM matches a stage name as written: FROM Builder is an invalid image name, even unreachable (BuildKit)", async () => {
  const src =
    "FROM alpine AS Builder\nRUN make\nFROM Builder AS second\nFROM busybox\nCOPY --from=BUILDER /a /a\n";
  await assert.rejects(convert(src), (e: unknown) => {
    assert.ok(e instanceof DockerfileError, String(e));
    assert.equal(e.line, 3);
    assert.match(
      e.message,
      /failed to parse stage name: invalid image reference "Builder": .*must be lower-case/,
    );
    assert.match(e.hint ?? "", /write FROM builder/);
    return true;
  });
  // COPY --from= and --target stay case-insensitive
  const ok =
    "FROM alpine AS Builder\nRUN make\nFROM builder AS second\nFROM busybox\nCOPY --from=BUILDER /a /a\n";
  const r = await convert(ok, { target: "SECOND" });
  assert.deepEqual(r.calls, ["alpine linux/amd64"]);
});

// ---------------------------------------------------------------- COPY / ADD

test("FROM <stage>: a name the parent declared as ARG and ENV reaches the child's RUN as the ENV value", async () => {
  const parent =
    "FROM alpine AS parent\nENV B=envb\nARG A=arga B=argb OTHER=o\nENV A=enva\nRUN p\n";
  const r = await convert(parent + "FROM parent\nRUN c\n");
  const env = envOf(lastExec(r));
  assert.deepEqual([env.A, env.B, env.OTHER], ["enva", "envb", "o"]);
  assert.match(history(r).at(-1)!.created_by!, /^RUN \|3 A=enva B=envb OTHER=o \/bin\/sh -c c/);
  // the parent's own RUN saw the later declaration of each
  const p = await convert(parent, { target: "parent" });
  assert.deepEqual([envOf(lastExec(p)).A, envOf(lastExec(p)).B], ["enva", "argb"]);
  // `ARG A` re-declared without a default in the child keeps the ENV value
  const a = await convert(parent + "FROM parent\nARG A B\nRUN c\n");
  assert.deepEqual([envOf(lastExec(a)).A, envOf(lastExec(a)).B], ["enva", "envb"]);
  // a build arg still wins for a name the child declares
  const b = await convert(parent + "FROM parent\nARG A\nRUN c\n", { buildArgs: { A: "cli" } });
  assert.equal(envOf(lastExec(b)).A, "cli");
});

test("COPY --from a stage (by name and by index), an image and a named context", async () => {
  const src =
    "FROM alpine AS a\nRUN make\nFROM busybox\nCOPY --from=a /x /x\nCOPY --from=0 /y /y\nCOPY --from=tonistiigi/xx / /\nCOPY --from=extra /z /z\n";
  const r = await convert(src, {
    contexts: new Map([
      ["context", { dir: "/ctx", excludePatterns: [] }],
      ["extra", { dir: "/extra", excludePatterns: [] }],
    ]),
  });
  const copies = files(r).map((v) => v.inputs[1]!);
  assert.equal(copies[0]!.op.kind, "exec");
  assert.equal(copies[1]!.digest, copies[0]!.digest);
  assert.equal(copies[2]!.op.kind, "image");
  assert.match(copies[2]!.name, /^FROM registry\.test\/tonistiigi\/xx@/);
  assert.deepEqual(copies[3]!.op, {
    kind: "local",
    name: "extra",
    dir: "/extra",
    excludePatterns: [],
  });
});

test("COPY --from an image inside a $BUILDPLATFORM stage uses the target platform (BuildKit)", async () => {
  const src = "FROM --platform=$BUILDPLATFORM alpine\nCOPY --from=tonistiigi/xx / /\n";
  const r = await convert(src, { platform: "linux/arm64" });
  assert.deepEqual(r.calls, ["alpine linux/amd64", "tonistiigi/xx linux/arm64"]);
});

test("COPY --from errors: later stage, unknown index, variables", async () => {
  await rejects(
    convert("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n", { target: "a" }),
    /cannot copy from stage "b", it needs to be defined before current stage "a"/,
    2,
  );
  await rejects(convert("FROM alpine\n\nCOPY --from=3 /x /x\n"), /invalid stage index 3/, 3);
  await assert.rejects(
    convert(
      "FROM alpine AS a\nFROM alpine AS unused\nARG S=a\nCOPY --from=$S /x /x\nFROM alpine\n",
    ),
    /variable expansion is not supported for --from/,
  );
  await rejects(convert("FROM alpine\nCOPY --from=missing-image /x /x\n"), /missing-image/, 2);
});

test("COPY expands sources, dest, --chown and --chmod; not --exclude", async () => {
  const src =
    "FROM alpine\nWORKDIR /app\nENV S=src U=app M=0640 X=*.tmp\nCOPY --chown=$U:$U --chmod=$M --exclude=$X $S/ ${S}2 dst/\n";
  const r = await convert(src);
  const op = files(r).at(-1)!.op;
  assert.equal(op.dest, 0);
  assert.deepEqual(
    op.actions.map((a) => (a.action === "copy" ? [a.src, a.dest] : [])),
    [
      ["src/", "/app/dst/"],
      ["src2", "/app/dst/"],
    ],
  );
  const a = op.actions[0]!;
  assert.ok(a.action === "copy");
  assert.deepEqual(a.chown, { user: "app", group: "app" });
  assert.equal(a.chmod, "0640");
  assert.deepEqual(a.excludes, ["$X"]);
  assert.equal(
    history(r).at(-1)!.created_by,
    "COPY --chown=app:app --chmod=0640 src/ src2 dst/ # buildkit",
  );
  assert.equal(
    names(r).at(-1),
    "[3/3] COPY --chown=app:app --chmod=0640 --exclude=*.tmp src/ src2 dst/",
  );
});

test("COPY with several sources and no trailing slash is accepted, as in BuildKit", async () => {
  const r = await convert("FROM alpine\nWORKDIR /app\nCOPY go.mod go.sum .\nCOPY a b /c\n");
  const [dot, c] = files(r)
    .slice(-2)
    .map((v) => v.op.actions);
  assert.deepEqual(
    dot!.map((a) => (a.action === "copy" ? a.dest : "")),
    ["/app/", "/app/"],
  );
  assert.deepEqual(
    c!.map((a) => (a.action === "copy" ? a.dest : "")),
    ["/c", "/c"],
  );
});

for (const [chmod, ok] of [
  ["755", true],
  ["0644", true],
  ["7777", true],
  ["u+x,go-w", true],
  ["a=rX", true],
  ["g=u", true],
  ["10000", false],
  ["0789", false],
  ["u+q", false],
  ["", true],
] as const) {
  test(`COPY --chmod=${chmod} ${ok ? "is valid" : "is rejected"}`, async () => {
    const p = convert(`FROM alpine\nCOPY --chmod=${chmod} a /a\n`);
    if (ok) await p;
    else await rejects(p, /invalid chmod parameter/, 2);
  });
}

test("COPY --link makes a copy onto scratch merged onto the stage (with --chmod too)", async () => {
  const r = await convert(
    "FROM alpine\nRUN make\nCOPY --link a /a\nCOPY --link --chmod=600 b /b\n",
    {
      multiPlatform: true,
      platform: "linux/arm64",
    },
  );
  const merges = vertices(r).filter((v) => v.op.kind === "merge");
  assert.equal(merges.length, 2);
  const merge = merges[0]!;
  assert.equal(merge.inputs.length, 2);
  assert.equal(merge.inputs[0]!.op.kind, "exec");
  const copy = merge.inputs[1]!;
  assert.equal(copy.op.kind === "file" && copy.op.dest, -1);
  assert.equal(copy.name, "[linux/arm64 3/4] COPY --link a /a");
  assert.equal(merge.name, "[linux/arm64 3/4] LINK COPY --link a /a");
  assert.equal(r.root!.digest, merges[1]!.digest);
  assert.equal(r.root!.inputs[0]!.digest, merge.digest);
  const chmodCopy = r.root!.inputs[1]!;
  assert.equal(chmodCopy.op.kind === "file" && chmodCopy.op.dest, -1, "onto scratch");
  assert.equal(
    chmodCopy.op.kind === "file" &&
      chmodCopy.op.actions[0]!.action === "copy" &&
      chmodCopy.op.actions[0]!.chmod,
    "600",
  );
  const linked = chmodCopy.op.kind === "file" ? chmodCopy.op.actions[0] : undefined;
  assert.equal(linked?.action === "copy" && linked.linkedParents, true, "parents: default mode");
  assert.deepEqual(
    history(r)
      .slice(-2)
      .map((h) => h.created_by),
    ["COPY a /a # buildkit", "COPY --chmod=600 b /b # buildkit"],
  );
});

test("ADD: local archives unpack unless --unpack=false; COPY of a git or http URL is an error", async () => {
  const r = await convert("FROM alpine\nADD a.tar /x/\nADD --unpack=false b.tar /y/\n");
  assert.deepEqual(
    files(r).map((v) => (v.op.actions[0]!.action === "copy" ? v.op.actions[0]!.unpack : null)),
    [true, false],
  );
  for (const git of [
    "https://github.com/a/b.git#main",
    "git@github.com:a/b.git",
    "git://h/r",
    "ssh://git@h/r",
  ]) {
    await rejects(
      convert(`FROM alpine\nCOPY ${git} /src\n`),
      /source can't be a git ref for COPY/,
      2,
    );
  }
  await rejects(
    convert("FROM alpine\nCOPY https://x.test/f /f\n"),
    /source can't be a URL for COPY/,
    2,
  );
  await rejects(
    convert("FROM alpine\nADD --checksum=sha256:00 local /f\n"),
    /checksum requires HTTP\(S\) or Git sources/,
    2,
  );
  // github.com/x/y reads as a local path
  await convert("FROM alpine\nCOPY github.com/a/b /src\n");
  const local = await convert("FROM alpine\nADD github.com/a/b /src\n");
  assert.equal(vertices(local).filter((v) => v.op.kind === "git").length, 0);
});

test("ADD <git URL>: one git source shared by every platform, its root copied onto dest", async () => {
  const src =
    "FROM alpine\nWORKDIR /w\nADD --chown=1:2 --exclude=*.md git://h/r.git#v1:sub/dir app\n";
  const amd = await convert(src, { multiPlatform: true, platform: "linux/amd64" });
  const arm = await convert(src, { multiPlatform: true, platform: "linux/arm64" });
  const gitOf = (r: Converted) => vertices(r).filter((v) => v.op.kind === "git");
  assert.equal(gitOf(amd).length, 1);
  const repo = gitOf(amd)[0]!;
  assert.equal(repo.digest, gitOf(arm)[0]!.digest, "the same vertex for both platforms");
  assert.equal(repo.platform, undefined);
  assert.deepEqual(repo.op, { kind: "git", remote: "git://h/r.git", ref: "v1", subdir: "sub/dir" });
  assert.equal(repo.name, "git://h/r.git#v1:sub/dir (Dockerfile:3)");
  const copy = files(amd).at(-1)!.op.actions[0]!;
  assert.deepEqual(copy, {
    action: "copy",
    input: 1,
    src: "/",
    dest: "/w/app",
    chown: { user: "1", group: "2" },
    followSymlinks: false,
    dirContents: false,
    allowWildcard: false,
    allowEmptyWildcard: false,
    createDestPath: true,
    unpack: false,
    excludes: ["*.md"],
    parents: false,
  });
  assert.deepEqual(history(amd).at(-1), {
    created_by: "ADD --chown=1:2 git://h/r.git#v1:sub/dir app # buildkit",
  });
});

test("ADD <git URL>: --keep-git-dir and --checksum merge with the URL's query", async () => {
  const opOf = async (line: string) => {
    const r = await convert(`FROM alpine\nARG C=abc123\n${line}\n`);
    return vertices(r).find((v) => v.op.kind === "git")!.op;
  };
  assert.deepEqual(await opOf("ADD --keep-git-dir=true --checksum=$C git@h:o/r.git /s"), {
    kind: "git",
    remote: "git@h:o/r.git",
    ref: "",
    checksum: "abc123",
    keepGitDir: true,
  });
  assert.deepEqual(
    await opOf("ADD https://h/r.git?branch=dev&keep-git-dir&submodules=false&commit=abc /s"),
    {
      kind: "git",
      remote: "https://h/r.git",
      ref: "refs/heads/dev",
      checksum: "abc",
      keepGitDir: true,
      skipSubmodules: true,
    },
  );
  // --keep-git-dir=false is the default: the op does not change (nor its digest)
  assert.deepEqual(
    await opOf("ADD --keep-git-dir=false git://h/r /s"),
    await opOf("ADD git://h/r /s"),
  );
  await rejects(
    convert("FROM alpine\nADD --keep-git-dir=false git://h/r?keep-git-dir=true /s\n"),
    /inconsistent keep-git-dir configuration/,
    2,
  );
  await rejects(
    convert("FROM alpine\nADD --checksum=abc git://h/r?checksum=def /s\n"),
    /checksum mismatch "abc" != "def"/,
    2,
  );
  await rejects(
    convert("FROM alpine\nADD --checksum=abc git://h/r ./other /s/\n"),
    /checksum can't be specified for multiple sources/,
    2,
  );
  await rejects(convert("FROM alpine\nADD git://h/r?frob=1 /s\n"), /unexpected query "frob"/, 2);
});

test("COPY heredocs: an inline file per document, expanded unless the delimiter is quoted", async () => {
  const src = "FROM alpine\nENV N=world\nCOPY <<EOF <<'RAW' /etc/\nhello $N\nEOF\nkeep $N\nRAW\n";
  const r = await convert(src);
  const op = files(r).at(-1)!.op;
  const docs = files(r).filter((v) => v.name === "preparing inline document");
  assert.deepEqual(
    docs.map((v) => v.op.actions[0]),
    [
      { action: "mkfile", path: "/EOF", data: "hello world\n", mode: 0o644 },
      { action: "mkfile", path: "/RAW", data: "keep $N\n", mode: 0o644 },
    ],
  );
  assert.deepEqual(
    op.actions.map(
      (a) => a.action === "copy" && [a.src, a.dest, a.followSymlinks, a.allowWildcard],
    ),
    [
      ["/EOF", "/etc/", false, false],
      ["/RAW", "/etc/", false, false],
    ],
  );
  assert.equal(history(r).at(-1)!.created_by, "COPY <<EOF <<RAW /etc/ # buildkit");
});

// ---------------------------------------------------------------- RUN heredocs

test("RUN heredoc with a shebang runs the document as a file mounted at /dev/pipes", async () => {
  const r = await convert("FROM alpine\nRUN <<EOT\n#!/usr/bin/env python3\nprint(1)\nEOT\n");
  const op = lastExec(r);
  assert.deepEqual(op.args, [...SH, "/dev/pipes/EOT"]);
  const m = op.mounts[0]!;
  assert.deepEqual(m, {
    type: "bind",
    target: "/dev/pipes/",
    input: 1,
    source: "/",
    readonly: true,
  });
  const doc = execs(r).at(-1)!.inputs[1]!;
  assert.deepEqual(doc.op.kind === "file" && doc.op.actions, [
    { action: "mkfile", path: "/EOT", data: "#!/usr/bin/env python3\nprint(1)\n", mode: 0o755 },
  ]);
  assert.equal(names(r).at(-1), "[2/2] RUN <<EOT (#!/usr/bin/env python3...)");
  assert.equal(history(r).at(-1)!.created_by, "RUN /bin/sh -c /dev/pipes/EOT # buildkit");
});

test("RUN heredoc without a shebang runs its text in the shell; <<- strips tabs", async () => {
  const r = await convert("FROM alpine\nRUN <<-EOT\n\techo a\n\techo b\n\tEOT\n");
  assert.deepEqual(lastExec(r).args, [...SH, "echo a\necho b\n"]);
  assert.equal(names(r).at(-1), "[2/2] RUN <<-EOT (echo a...)");
});

test("RUN with several heredocs hands the whole script to the shell", async () => {
  const r = await convert("FROM alpine\nRUN cat <<A > /a && cat <<B > /b\none\nA\ntwo\nB\n");
  assert.deepEqual(lastExec(r).args, [...SH, "cat <<A > /a && cat <<B > /b\none\nA\ntwo\nB"]);
});

// ---------------------------------------------------------------- RUN --mount

function mountsOf(src: string): Promise<ExecMount[]> {
  return convert(src).then((r) => lastExec(r).mounts);
}

test("RUN --mount=type=cache: id defaults to the target, shared, namespaced, 0755 root", async () => {
  const m = await mountsOf("FROM alpine\nWORKDIR /w\nRUN --mount=type=cache,target=.cache/ x\n");
  assert.deepEqual(m, [
    {
      type: "cache",
      target: "/w/.cache",
      id: "/.cache",
      sharing: "shared",
      readonly: false,
      mode: 0o755,
      uid: 0,
      gid: 0,
    },
  ]);
  const ns = await convert(
    "FROM alpine\nRUN --mount=type=cache,id=go,target=/go,sharing=locked,uid=1,mode=0700 x\n",
    {
      buildArgs: { BUILDKIT_CACHE_MOUNT_NS: "proj" },
    },
  );
  assert.deepEqual(lastExec(ns).mounts[0], {
    type: "cache",
    target: "/go",
    id: "proj/go",
    sharing: "locked",
    readonly: false,
    mode: 0o700,
    uid: 1,
    gid: 0,
  });
});

test("RUN --mount=type=bind: the context by default, read-only; from a stage with a source", async () => {
  const r = await convert(
    "FROM alpine AS b\nRUN make\nFROM alpine\nRUN --mount=target=/src --mount=type=bind,from=b,source=/out,target=/o,rw x\n",
  );
  const op = lastExec(r);
  const ins = execs(r).at(-1)!.inputs;
  assert.deepEqual(op.mounts[0], {
    type: "bind",
    target: "/src",
    input: 1,
    source: "/",
    readonly: true,
  });
  assert.equal(ins[1]!.op.kind, "local");
  assert.deepEqual(op.mounts[1], {
    type: "bind",
    target: "/o",
    input: 2,
    source: "/out",
    readonly: false,
  });
  assert.equal(ins[2]!.op.kind, "exec");
});

test("RUN --mount=type=secret: target /run/secrets/<id>, env-only secrets, masked in the step name", async () => {
  const r = await convert(
    "FROM alpine\nRUN --mount=type=secret,id=npm --mount=type=secret,id=tok,env=TOKEN,required echo $TOKEN\n",
  );
  assert.deepEqual(lastExec(r).mounts, [
    {
      type: "secret",
      id: "npm",
      target: "/run/secrets/npm",
      required: false,
      mode: 0o400,
      uid: 0,
      gid: 0,
    },
    { type: "secret", id: "tok", env: "TOKEN", required: true, mode: 0o400, uid: 0, gid: 0 },
  ]);
  assert.equal(
    names(r).at(-1),
    "[stage-0 2/2] RUN --mount=type=secret,id=npm --mount=type=secret,id=tok,env=TOKEN,required echo ****",
  );
  const byTarget = await mountsOf("FROM alpine\nRUN --mount=type=secret,target=/root/.npmrc x\n");
  assert.equal(byTarget[0]!.type === "secret" && byTarget[0]!.id, ".npmrc");
});

test("RUN --mount=type=ssh and tmpfs defaults; ssh rejects source", async () => {
  const m = await mountsOf(
    "FROM alpine\nRUN --mount=type=ssh --mount=type=tmpfs,target=/t,size=1m x\n",
  );
  assert.deepEqual(m, [
    {
      type: "ssh",
      id: "default",
      target: "/run/buildkit/ssh_agent.0",
      required: false,
      mode: 0o600,
      uid: 0,
      gid: 0,
    },
    { type: "tmpfs", target: "/t", size: 1048576 },
  ]);
  await rejects(
    convert("FROM alpine\nRUN --mount=type=ssh,source=x x\n"),
    /ssh does not support source/,
    2,
  );
});

test("RUN --mount errors: target /, stage defined later, variable in from", async () => {
  await rejects(
    convert("FROM alpine\nRUN --mount=type=cache,target=/ x\n"),
    /invalid mount target "\/"/,
    2,
  );
  await rejects(
    convert("FROM alpine AS a\nRUN --mount=from=b,target=/b x\nFROM alpine AS b\n", {
      target: "a",
    }),
    /cannot mount from stage "b" to "\/b", stage needs to be defined before current command/,
    2,
  );
  await assert.rejects(
    convert("FROM alpine\nARG S\nRUN --mount=from=$S,target=/b x\n"),
    /'from' doesn't support variable expansion/,
  );
});

// ---------------------------------------------------------------- platforms

test("FROM --platform=$BUILDPLATFORM runs on the build platform; the result is the target's", async () => {
  const src =
    "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nARG TARGETARCH\nRUN go build\nFROM alpine\nCOPY --from=build /go/app /app\n";
  const r = await convert(src, { platform: "linux/arm64", multiPlatform: true });
  assert.deepEqual(r.calls.sort(), ["alpine linux/arm64", "golang:1.22 linux/amd64"]);
  const run = execs(r)[0]!;
  assert.deepEqual(run.platform, { os: "linux", architecture: "amd64" });
  assert.equal(run.name, "[linux/amd64->arm64 build 2/2] RUN go build");
  assert.equal(r.config.architecture, "arm64");
  assert.deepEqual(r.platform, { os: "linux", architecture: "arm64" });
});

test("step names: no platform prefix for one target; number width follows the total", async () => {
  const runs = Array.from({ length: 10 }, (_, i) => `RUN echo ${i}`).join("\n");
  const r = await convert(`FROM alpine AS a\n${runs}\nFROM a\nRUN x\n`);
  assert.equal(
    names(r)[0],
    "[a  1/11] FROM registry.test/alpine@" +
      (vertices(r)[0]!.op as { manifestDigest: string }).manifestDigest,
  );
  assert.equal(names(r)[1], "[a  2/11] RUN echo 0");
  assert.equal(names(r)[10], "[a 11/11] RUN echo 9");
  assert.equal(names(r)[11], "[stage-1 1/1] RUN x");
});

test("FROM --platform=X <stage> builds that stage for X (kiln's documented difference)", async () => {
  const src = "FROM alpine AS base\nRUN uname -m\nFROM --platform=linux/arm64 base\nRUN true\n";
  const r = await convert(src);
  assert.deepEqual(r.calls, ["alpine linux/arm64"]);
  assert.deepEqual(execs(r)[0]!.platform, { os: "linux", architecture: "arm64" });
});

test("warnings: InvalidBaseImagePlatform, unused build args", async () => {
  const r = await convert("FROM amd64only\nRUN true\n", {
    platform: "linux/arm64",
    buildArgs: { UNUSED: "1", HTTP_PROXY: "x", TARGETARCH: "arm64" },
  });
  assert.deepEqual(
    r.warnings.map((w) => [w.message, w.location?.line]),
    [
      [
        'InvalidBaseImagePlatform: Base image amd64only was pulled with platform "linux/amd64", expected "linux/arm64" for current build',
        1,
      ],
      ["One or more build-args [UNUSED] were not consumed", undefined],
    ],
  );
});

test("errors are placed: empty FROM names the variable; unknown image names the line", async () => {
  await assert.rejects(convert("ARG IMG\nFROM $IMG\n"), (e: unknown) => {
    assert.ok(e instanceof DockerfileError);
    assert.equal(e.line, 2);
    assert.match(e.message, /base name \(\$IMG\) should not be blank/);
    assert.match(e.hint ?? "", /IMG is empty/);
    return true;
  });
  await rejects(convert("FROM alpine\nFROM nothere\n"), /nothere/, 2);
  await rejects(
    convert("FROM --platform=$NOPE alpine\n"),
    /empty platform value from expression \$NOPE/,
    1,
  );
});

test("a single stage is named stage-0 when COPY --from or RUN --mount adds a source (BuildKit)", async () => {
  assert.equal(names(await convert("FROM alpine\nRUN x\n")).at(-1), "[2/2] RUN x");
  assert.equal(
    names(await convert("FROM alpine\nRUN --mount=type=cache,target=/c x\n")).at(-1),
    "[stage-0 2/2] RUN --mount=type=cache,target=/c x",
  );
  assert.equal(
    names(await convert("FROM alpine\nCOPY --from=busybox /bin/sh /sh\n")).at(-1),
    "[stage-0 2/2] COPY --from=busybox /bin/sh /sh",
  );
});

test("an empty base image (no layers) is scratch: no image vertex, no FROM number", async () => {
  const r = await convert("FROM emptyimage\nCOPY a /a\n");
  assert.equal(
    vertices(r).some((v) => v.op.kind === "image"),
    false,
  );
  assert.equal(names(r)[0], "[1/1] COPY a /a");
});

test("several ssh mounts get numbered default sockets", async () => {
  const m = await mountsOf(
    "FROM alpine\nRUN --mount=type=ssh,id=a,target=/s --mount=type=ssh,id=b --mount=type=ssh x\n",
  );
  assert.deepEqual(
    m.map((x) => x.type === "ssh" && x.target),
    ["/s", "/run/buildkit/ssh_agent.1", "/run/buildkit/ssh_agent.2"],
  );
});

test("step names: COPY and WORKDIR drop quotes and unset variables, RUN keeps them", async () => {
  const r = await convert(
    'FROM alpine\nENV D=/d\nWORKDIR "$D/$NOPE"\nCOPY "a" $NOPE/c $D/\nRUN echo "$D" $NOPE\n',
  );
  assert.deepEqual(names(r).slice(1), [
    "[2/4] WORKDIR /d/",
    "[3/4] COPY a /c /d/",
    '[4/4] RUN echo "/d" $NOPE',
  ]);
});

test("FROM --platform on scratch is honoured (kiln; BuildKit uses the target platform)", async () => {
  const r = await convert(
    "FROM --platform=$BUILDPLATFORM scratch AS s\nCOPY a /a\nFROM alpine\nCOPY --from=s /a /a\n",
    {
      platform: "linux/arm64",
    },
  );
  const copyA = files(r).find((v) => v.name.includes("COPY a /a"))!;
  assert.deepEqual(copyA.platform, { os: "linux", architecture: "amd64" });
});

test("proxy build args reach RUN under both spellings without an ARG, and stay out of history", async () => {
  const r = await convert("FROM alpine\nRUN true\n", {
    buildArgs: { HTTP_PROXY: "http://p:3128", no_proxy: "localhost", OTHER: "x" },
  });
  const env = lastExec(r).env;
  assert.deepEqual(env.slice(-4), [
    "HTTP_PROXY=http://p:3128",
    "http_proxy=http://p:3128",
    "NO_PROXY=localhost",
    "no_proxy=localhost",
  ]);
  assert.ok(!env.some((e) => e.startsWith("OTHER=")));
  assert.equal(history(r).at(-1)!.created_by, "RUN /bin/sh -c true # buildkit");
});

test("ssh mounts: SSH_AUTH_SOCK names the first one's target unless the env sets it", async () => {
  const r = await convert(
    "FROM alpine\nRUN --mount=type=ssh,required=false --mount=type=ssh,id=b,target=/b true\n",
  );
  assert.equal(envOf(lastExec(r)).SSH_AUTH_SOCK, "/run/buildkit/ssh_agent.0");
  const s = await convert("FROM alpine\nENV SSH_AUTH_SOCK=/mine\nRUN --mount=type=ssh true\n");
  assert.deepEqual(
    lastExec(s).env.filter((e) => e.startsWith("SSH_AUTH_SOCK=")),
    ["SSH_AUTH_SOCK=/mine"],
  );
  const n = await convert("FROM alpine\nRUN true\n");
  assert.equal(envOf(lastExec(n)).SSH_AUTH_SOCK, undefined);
});
