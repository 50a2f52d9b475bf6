import { test } from "node:test";
import assert from "node:assert/strict";
import { DockerfileError } from "../../../src/frontend/dockerfile/index.js";
import { parseCheckOptions } from "../../../src/frontend/dockerfile/lint.js";
import { convert } from "./convert-helpers.js";

async function warnings(src: string, buildArgs: Record<string, string> = {}): Promise<string[]> {
  const r = await convert(src, { buildArgs });
  return r.warnings.map((w) => `${w.location?.line ?? "-"} ${w.message}`);
}

test("checks: each rule's finding is a warning on its line, worded as BuildKit's", async () => {
  const src = [
    "FROM alpine as Base", // 1
    "maintainer me", // 2
    "CMD echo a", // 3
    "CMD echo b", // 4
    "ENV a b", // 5
    "LABEL k v", // 6
    "WORKDIR rel", // 7
    "WORKDIR rel2", // 8
    "RUN true \\", // 9
    "", // 10
    "  && true", // 11
    "FROM busybox AS context", // 12
    "FROM busybox AS base", // 13
    "HEALTHCHECK NONE", // 14
    "HEALTHCHECK CMD true", // 15
    'ENTRYPOINT ["/bin/sh"]', // 16
    "",
  ].join("\n");
  assert.deepEqual(await warnings(src), [
    "11 NoEmptyContinuation: Empty continuation line",
    "1 StageNameCasing: Stage name 'Base' should be lowercase",
    "1 FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
    "2 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
    '12 ReservedStageName: Stage name should not use the same name as reserved stage "context"',
    '13 DuplicateStageName: Duplicate stage name "base", stage names should be unique',
    "2 ConsistentInstructionCasing: Command 'maintainer' should match the case of the command majority (uppercase)",
    // only the stage that is built is dispatched: the last one
    "14 MultipleInstructionsDisallowed: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used",
  ]);
  // the first stage's dispatch-time findings when it is the target
  assert.deepEqual(await warnings(src.split("\n").slice(0, 11).join("\n") + "\n"), [
    "11 NoEmptyContinuation: Empty continuation line",
    "1 StageNameCasing: Stage name 'Base' should be lowercase",
    "1 FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
    "2 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
    "2 ConsistentInstructionCasing: Command 'maintainer' should match the case of the command majority (uppercase)",
    "3 JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
    "3 MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used",
    "4 JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
    '5 LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV key value" format',
    '6 LegacyKeyValueFormat: "LABEL key=value" should be used instead of legacy "LABEL key value" format',
    '7 WorkdirRelativePath: Relative workdir "rel" can have unexpected results if the base image changes',
  ]);
  // a SHELL makes shell-form CMD deliberate; FROM in lower case with `as` is consistent
  assert.deepEqual(
    await warnings(
      'from alpine as b\nshell ["/bin/sh", "-c"]\ncmd echo a\nworkdir /a\nworkdir b\n',
    ),
    [],
  );
});

test("check directive: skip rules or all, per instruction comments, the build arg wins", async () => {
  const src = "FROM alpine as Base\nmaintainer me\n";
  assert.deepEqual(await warnings(`# check=skip=FromAsCasing,StageNameCasing\n${src}`), [
    "3 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
    "3 ConsistentInstructionCasing: Command 'maintainer' should match the case of the command majority (uppercase)",
  ]);
  assert.deepEqual(await warnings(`# check=skip=all\n${src}`), []);
  assert.deepEqual(await warnings(`# check=skip=FromAsCasing\nFROM alpine as b\n`), []);
  assert.deepEqual(
    await warnings("# check=skip=FromAsCasing\nFROM alpine as b\n", {
      BUILDKIT_DOCKERFILE_CHECK: "skip=StageNameCasing",
    }),
    ["2 FromAsCasing: 'as' and 'FROM' keywords' casing do not match"],
  );
  // a `# check=` comment right above an instruction applies to it alone
  assert.deepEqual(
    await warnings("FROM alpine as a\n# check=skip=FromAsCasing\nFROM alpine as b\n"),
    ["1 FromAsCasing: 'as' and 'FROM' keywords' casing do not match"],
  );
});

test("check=error=true: a finding fails the build on its line; bad options are errors", async () => {
  await assert.rejects(
    convert("# check=error=true\nFROM alpine as base\nRUN true\n"),
    (e: unknown) => {
      assert.ok(e instanceof DockerfileError, String(e));
      assert.equal(e.code, "E_DOCKERFILE_LINT");
      assert.equal(e.line, 2);
      assert.match(e.message, /^Dockerfile:2:1: lint violation found for rules: FromAsCasing\n/);
      assert.match(e.hint ?? "", /Dockerfile:2: FromAsCasing: 'as' and 'FROM' keywords' casing/);
      return true;
    },
  );
  // error=true with nothing found, or the rule skipped: builds
  await convert("# check=error=true\nFROM alpine AS base\nRUN true\n");
  await convert("# check=skip=FromAsCasing;error=true\nFROM alpine as base\n");
  await assert.rejects(convert("# check=error=maybe\nFROM alpine\n"), (e: unknown) => {
    assert.ok(e instanceof DockerfileError, String(e));
    assert.equal(e.line, 1);
    assert.match(e.message, /failed to parse check option "error=maybe"/);
    return true;
  });
  await assert.rejects(
    convert("FROM alpine\n", { buildArgs: { BUILDKIT_DOCKERFILE_CHECK: "nope" } }),
    /BUILDKIT_DOCKERFILE_CHECK: failed to parse check options: invalid check option "nope"/,
  );
});

test("parseCheckOptions follows linter.ParseLintOptions", () => {
  assert.deepEqual(parseCheckOptions(""), { skipAll: false, skip: new Set(), error: false });
  assert.deepEqual(parseCheckOptions(" skip = A, B ; error = 1 ; experimental=all"), {
    skipAll: false,
    skip: new Set(["A", "B"]),
    error: true,
  });
  assert.equal(parseCheckOptions("skip=all").skipAll, true);
  assert.throws(() => parseCheckOptions("fail=true"), /invalid check option "fail"/);
});

test("checks on FROM expansions, secrets in ARG/ENV names and EXPOSE (as buildctl reports them)", async () => {
  const src = [
    "ARG BASE=alpine", // 1
    "FROM $BASE AS a", // 2
    "FROM --platform=$TARGETPLATFORM $BASE AS c", // 3
    "FROM --platform=linux/amd64 $BASE AS d", // 4
    "FROM --platform=linux/arm64 $BASE AS arm64-tools", // 5
    "FROM --platform=$BUILDPLATFORM $BASE AS e", // 6
    "FROM $BASE", // 7
    "ARG API_KEY=x PUBLIC_KEY=y", // 8
    "ENV DB_PASSWORD=z AUTH_FILE=w", // 9
    "ENV my_token v", // 10
    "EXPOSE 80/TCP 127.0.0.1:8080:80 90", // 11
    "",
  ].join("\n");
  assert.deepEqual(await warnings(src), [
    "3 RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    '4 FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value "linux/amd64"',
    '8 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "API_KEY")',
    '9 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")',
    '10 LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV key value" format',
    '10 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "my_token")',
    "11 ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:8080:80'",
    "11 ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
  ]);
  assert.deepEqual(
    await warnings("ARG BASE=alpine\nFROM ${BSE:-alpine} AS a\nFROM $BASE\nRUN true\n"),
    ["2 UndefinedArgInFrom: FROM argument 'BSE' is not declared (did you mean BASE?)"],
  );
  // valid with the build arg, but not with the defaults alone
  assert.deepEqual(await warnings("ARG IMG\nFROM $IMG\nRUN true\n", { IMG: "alpine" }), [
    "2 InvalidDefaultArgInFrom: Default value for ARG $IMG results in empty or invalid base image name",
  ]);
});

test("UndefinedVar: a variable a command's words use that nothing set or declared", async () => {
  const src = [
    "FROM alpine", // 1
    "ARG DECLARED", // 2
    "ARG WITHVAL=v", // 3
    "ENV FOOD=x", // 4
    "COPY f /$FOO/$DECLARED/$WITHVAL/", // 5
    "WORKDIR /w/$NOPE", // 6
    "USER ${USR:-root}", // 7
    "ENV A=$FOOD B=$BAR", // 8
    "LABEL l=$TARGETARCH", // 9
    "RUN --mount=type=tmpfs,target=/t$MNT echo $UNSEEN", // 10
    "ARG X=$UNDEF_IN_ARG", // 11
    "VOLUME /v$VOL", // 12
    "STOPSIGNAL ${SIG:-SIGTERM}", // 13
    "",
  ].join("\n");
  assert.deepEqual(await warnings(src), [
    "5 UndefinedVar: Usage of undefined variable '$FOO' (did you mean $FOOD?)",
    "6 UndefinedVar: Usage of undefined variable '$NOPE'",
    "7 UndefinedVar: Usage of undefined variable '$USR'",
    "8 UndefinedVar: Usage of undefined variable '$BAR'",
    "9 UndefinedVar: Usage of undefined variable '$TARGETARCH'",
    "10 UndefinedVar: Usage of undefined variable '$MNT'",
    "11 UndefinedVar: Usage of undefined variable '$UNDEF_IN_ARG'",
    "12 UndefinedVar: Usage of undefined variable '$VOL'",
    "13 UndefinedVar: Usage of undefined variable '$SIG'",
  ]);
});
