import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseDockerfile, type Dockerfile } from "../../../src/frontend/dockerfile/index.js";

const dir = join(import.meta.dirname, "../../fixtures/dockerfiles");
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".Dockerfile"))
  .sort();
const parsed = new Map<string, Dockerfile>();

test("the corpus holds at least 40 Dockerfiles", () => {
  assert.ok(files.length >= 40, String(files.length));
});

for (const f of files) {
  test(`corpus parses: ${f}`, () => {
    const df = parseDockerfile(readFileSync(join(dir, f), "utf8"), { file: f });
    assert.ok(df.stages.length >= 1);
    for (const s of df.stages) {
      for (const c of s.commands) assert.ok(c.location.startLine > s.location.startLine);
    }
    parsed.set(f, df);
  });
}

function get(f: string): Dockerfile {
  const df = parsed.get(f);
  assert.ok(df, `${f} did not parse`);
  return df;
}

test("corpus spot checks", () => {
  const win = get("windows-escape-backtick.Dockerfile");
  assert.equal(win.escapeToken, "`");
  const winRun = win.stages[0]!.commands.find((c) => c.kind === "run")!;
  assert.ok(winRun.kind === "run" && winRun.cmdLine[0]!.includes("C:\\ ;"));

  const many = get("heredoc-many.Dockerfile").stages[0]!.commands;
  const copies = many.filter((c) => c.kind === "copy");
  assert.deepEqual(
    copies.map((c) => c.sourceContents.map((s) => [s.path, s.expand])),
    [
      [["EOF", false]],
      [["CONF", true]],
      [
        ["a.txt", true],
        ["b.txt", true],
      ],
    ],
  );
  assert.equal(
    copies[0]!.sourceContents[0]!.data,
    'export APP_HOME=/opt/app\nexport PATH="$APP_HOME/bin:$PATH"\n',
  );

  const go = get("go-xx-cross.Dockerfile");
  assert.deepEqual(
    go.metaArgs.map((a) => a.args[0]!.key),
    ["GO_VERSION", "XX_VERSION", "ALPINE_VERSION"],
  );
  assert.deepEqual(
    go.stages.map((s) => s.name),
    ["xx", "base", "deps", "build", "binary", "release"],
  );
  assert.equal(go.stages[1]!.platform, "$BUILDPLATFORM");

  const multi = get("multi-target-bake.Dockerfile");
  assert.equal(multi.stages[multi.stages.length - 1]!.baseName, "binaries-$TARGETOS");

  const cont = get("comments-and-continuations.Dockerfile").stages[0]!.commands;
  const apt = cont[0]!;
  assert.ok(apt.kind === "run");
  assert.equal(
    apt.cmdLine[0],
    "apt-get update     && apt-get install -y         make         gcc     && rm -rf /var/lib/apt/lists/*",
  );

  const health = get("healthcheck-variants.Dockerfile").stages.map((s) => s.commands[0]!);
  assert.deepEqual(
    health.map((h) => (h.kind === "healthcheck" ? h.health.test[0] : h.kind)),
    ["CMD", "CMD-SHELL", "NONE"],
  );
});
