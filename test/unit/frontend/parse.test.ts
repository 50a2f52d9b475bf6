import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DockerfileError,
  parseDockerfile,
  parseNodes,
  type Command,
  type Dockerfile,
} from "../../../src/frontend/dockerfile/index.js";

/** The commands of the last stage. */
function cmds(src: string): Command[] {
  const df = parseDockerfile(src);
  return df.stages[df.stages.length - 1]!.commands;
}
function first<K extends Command["kind"]>(src: string, kind: K): Extract<Command, { kind: K }> {
  const c = cmds(src)[0]!;
  assert.equal(c.kind, kind);
  return c as Extract<Command, { kind: K }>;
}
function rejects(src: string, code: string, line: number, re?: RegExp): void {
  assert.throws(
    () => parseDockerfile(src),
    (e: unknown) => {
      assert.ok(e instanceof DockerfileError, `not a DockerfileError: ${String(e)}`);
      assert.equal(e.code, code, e.message);
      assert.equal(e.line, line, e.message);
      if (re) assert.match(e.message, re);
      return true;
    },
  );
}

type Case = [name: string, run: () => void];
const F = "FROM alpine\n";

const cases: Case[] = [
  // ---- file structure, BOM, directives
  [
    "BOM is stripped",
    () => {
      assert.equal(parseDockerfile("\uFEFFFROM a").stages[0]!.baseName, "a");
    },
  ],
  [
    "syntax, escape and check directives",
    () => {
      const df = parseDockerfile(
        "# syntax=docker/dockerfile:1.7\n# escape=`\n# check=skip=all\nFROM a",
      );
      assert.deepEqual(
        df.directives.map((d) => [d.name, d.value, d.line]),
        [
          ["syntax", "docker/dockerfile:1.7", 1],
          ["escape", "`", 2],
          ["check", "skip=all", 3],
        ],
      );
      assert.equal(df.escapeToken, "`");
    },
  ],
  [
    "directive names are case-insensitive and may have spaces",
    () => {
      const df = parseDockerfile("#  SYNTAX =  x/y:1  \n#ESCAPE=`\nFROM a");
      assert.deepEqual(
        df.directives.map((d) => [d.name, d.value]),
        [
          ["syntax", "x/y:1"],
          ["escape", "`"],
        ],
      );
    },
  ],
  [
    "directive after an instruction is a comment",
    () => {
      const df = parseDockerfile("FROM a\n# escape=`\nRUN a \\\n b");
      assert.equal(df.escapeToken, "\\");
      assert.deepEqual(df.directives, []);
    },
  ],
  [
    "directive after a plain comment is a comment",
    () => {
      assert.equal(parseDockerfile("# hello\n# escape=`\nFROM a").escapeToken, "\\");
    },
  ],
  [
    "directive after a blank line is a comment",
    () => {
      assert.equal(parseDockerfile("\n# escape=`\nFROM a").escapeToken, "\\");
    },
  ],
  [
    "an unknown directive ends the directive block",
    () => {
      assert.equal(parseDockerfile("# foo=bar\n# escape=`\nFROM a").escapeToken, "\\");
    },
  ],
  [
    "duplicate directive is an error",
    () => {
      rejects("# escape=`\n# ESCAPE=\\\nFROM a", "E_DOCKERFILE_PARSE", 2, /only one escape/);
    },
  ],
  [
    "invalid escape token",
    () => {
      rejects("# escape=x\nFROM a", "E_DOCKERFILE_PARSE", 1, /invalid escape token 'x'/);
    },
  ],
  [
    "empty file",
    () => {
      rejects("", "E_DOCKERFILE_STRUCTURE", 1, /no instructions/);
    },
  ],
  [
    "only comments and blanks",
    () => {
      rejects("# a\n\n  # b\n", "E_DOCKERFILE_STRUCTURE", 3);
    },
  ],
  [
    "instruction before FROM",
    () => {
      rejects("RUN x\nFROM a", "E_DOCKERFILE_STRUCTURE", 1, /no build stage/);
    },
  ],
  [
    "ARGs before FROM are global",
    () => {
      const df = parseDockerfile("ARG A=1\nARG B\nFROM x:$A\nARG A");
      assert.deepEqual(
        df.metaArgs.map((a) => a.args),
        [[{ key: "A", value: "1" }], [{ key: "B" }]],
      );
      assert.equal(df.stages[0]!.commands.length, 1);
    },
  ],
  [
    "keywords are case-insensitive and keep their spelling",
    () => {
      const c = cmds("from a\nrun echo\nCoPy a b");
      assert.deepEqual(
        c.map((x) => [x.kind, x.keyword]),
        [
          ["run", "run"],
          ["copy", "CoPy"],
        ],
      );
    },
  ],
  [
    "leading whitespace before instructions",
    () => {
      assert.equal(first("  FROM a\n\t RUN x", "run").cmdLine[0], "x");
    },
  ],
  // ---- continuations
  [
    "backslash continuation joins lines",
    () => {
      assert.deepEqual(first(F + "RUN a \\\n  b", "run").cmdLine, ["a   b"]);
    },
  ],
  [
    "whitespace after the escape still continues",
    () => {
      assert.deepEqual(first(F + "RUN a \\  \t\nb", "run").cmdLine, ["a b"]);
    },
  ],
  [
    "comments inside a continuation are dropped",
    () => {
      assert.deepEqual(first(F + "RUN a \\\n# note\n  # indented note\n b", "run").cmdLine, [
        "a  b",
      ]);
    },
  ],
  [
    "blank lines inside a continuation are dropped with a warning",
    () => {
      const df = parseDockerfile(F + "RUN a \\\n\n   \n b");
      assert.deepEqual((df.stages[0]!.commands[0] as { cmdLine: string[] }).cmdLine, ["a  b"]);
      assert.equal(df.warnings.length, 1);
      assert.match(df.warnings[0]!.message, /Empty continuation/);
    },
  ],
  [
    "continuation at end of file",
    () => {
      assert.deepEqual(first(F + "RUN a \\", "run").cmdLine, ["a"]);
    },
  ],
  [
    "escaped escape at end is not a continuation",
    () => {
      assert.equal(cmds(F + "RUN echo \\\\\nRUN b").length, 2);
    },
  ],
  [
    "a line holding only the escape continues",
    () => {
      assert.deepEqual(first(F + "RUN a\\\n\\\nb", "run").cmdLine, ["ab"]);
    },
  ],
  [
    "backtick escape continues lines and leaves backslashes alone",
    () => {
      const c = first("# escape=`\nFROM w\nRUN dir C:\\Windows `\n  /b", "run");
      assert.deepEqual(c.cmdLine, ["dir C:\\Windows   /b"]);
    },
  ],
  [
    "with backtick escape a trailing backslash is literal",
    () => {
      assert.equal(cmds("# escape=`\nFROM w\nRUN a\\\nRUN b").length, 2);
    },
  ],
  [
    "CRLF line endings",
    () => {
      const c = cmds("FROM a\r\nRUN x \\\r\n  y\r\nENV A=1\r\n");
      assert.deepEqual((c[0] as { cmdLine: string[] }).cmdLine, ["x   y"]);
      assert.deepEqual((c[1] as { pairs: unknown }).pairs, [
        { key: "A", value: "1", legacy: false },
      ]);
    },
  ],
  [
    "location covers continuation and heredoc lines",
    () => {
      const c = cmds(F + "RUN a \\\n b\nRUN <<EOF\nx\nEOF\nUSER u");
      assert.deepEqual(
        c.map((x) => [x.location.startLine, x.location.endLine]),
        [
          [2, 3],
          [4, 6],
          [7, 7],
        ],
      );
    },
  ],
  [
    "code is the joined logical line",
    () => {
      assert.equal(first(F + "RUN a \\\n b", "run").code, "RUN a  b");
    },
  ],
  // ---- JSON vs shell form
  [
    "exec form",
    () => {
      assert.deepEqual(first(F + 'RUN ["echo", "hi"]', "run"), {
        ...first(F + 'RUN ["echo", "hi"]', "run"),
        cmdLine: ["echo", "hi"],
        prependShell: false,
      });
    },
  ],
  [
    "JSON escapes are decoded",
    () => {
      assert.deepEqual(first(F + 'CMD ["\\u0041", "a\\"b", "\\\\", "\\t"]', "cmd").cmdLine, [
        "A",
        'a"b',
        "\\",
        "\t",
      ]);
    },
  ],
  [
    "JSON keeps inner whitespace",
    () => {
      assert.deepEqual(first(F + 'CMD [ "  a  " ,\t"b" ]', "cmd").cmdLine, ["  a  ", "b"]);
    },
  ],
  [
    "not JSON falls back to shell form",
    () => {
      assert.deepEqual(first(F + "CMD [echo, hi]", "cmd"), {
        ...first(F + "CMD [echo, hi]", "cmd"),
        cmdLine: ["[echo, hi]"],
        prependShell: true,
      });
    },
  ],
  [
    "single quotes are not JSON",
    () => {
      assert.deepEqual(first(F + "CMD ['a']", "cmd").cmdLine, ["['a']"]);
    },
  ],
  [
    "text after the array is shell form",
    () => {
      assert.deepEqual(first(F + 'CMD ["a"] b', "cmd").cmdLine, ['["a"] b']);
    },
  ],
  [
    "a JSON array of non-strings is an error",
    () => {
      rejects(F + 'CMD ["a", 1]', "E_DOCKERFILE_PARSE", 2, /strings only/);
    },
  ],
  [
    "null in a JSON array is an error",
    () => {
      rejects(F + "ENTRYPOINT [null]", "E_DOCKERFILE_PARSE", 2);
    },
  ],
  [
    "empty JSON array",
    () => {
      assert.deepEqual(first(F + "CMD []", "cmd").cmdLine, []);
    },
  ],
  [
    "shell-form entrypoint",
    () => {
      assert.equal(first(F + "ENTRYPOINT exec app --flag", "entrypoint").prependShell, true);
    },
  ],
  [
    "RUN without a command parses (BuildKit accepts it)",
    () => {
      assert.deepEqual(first(F + "RUN", "run").cmdLine, []);
    },
  ],
  [
    "COPY JSON form keeps spaces in names",
    () => {
      assert.deepEqual(first(F + 'COPY ["a b", "c", "/d e/"]', "copy").sources, ["a b", "c"]);
    },
  ],
  [
    "COPY shell form splits on whitespace",
    () => {
      const c = first(F + "COPY  a\tb   /dst/", "copy");
      assert.deepEqual([c.sources, c.dest], [["a", "b"], "/dst/"]);
    },
  ],
  [
    "VOLUME JSON and list",
    () => {
      assert.deepEqual(
        [
          first(F + 'VOLUME ["/a", "/b"]', "volume").volumes,
          first(F + "VOLUME /a /b", "volume").volumes,
        ],
        [
          ["/a", "/b"],
          ["/a", "/b"],
        ],
      );
    },
  ],
  // ---- flags
  [
    "COPY flags",
    () => {
      const c = first(
        F +
          "COPY --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=x --from=build a /b",
        "copy",
      );
      assert.deepEqual(
        [c.chown, c.chmod, c.link, c.parents, c.excludes, c.from],
        ["1:2", "0755", true, true, ["*.md", "x"], "build"],
      );
    },
  ],
  [
    "quoted flag values",
    () => {
      assert.equal(first(F + 'COPY --chown="app user" a b', "copy").chown, "app user");
    },
  ],
  [
    "bool flag =false",
    () => {
      assert.equal(first(F + "COPY --link=false a b", "copy").link, false);
    },
  ],
  [
    "bool flag with a bad value",
    () => {
      rejects(F + "COPY --link=maybe a b", "E_DOCKERFILE_FLAG_VALUE", 2, /expecting boolean/);
    },
  ],
  [
    "string flag without value",
    () => {
      rejects(
        F + "COPY --from a b",
        "E_DOCKERFILE_FLAG_VALUE",
        2,
        /missing a value on flag: --from/,
      );
    },
  ],
  [
    "duplicate flag",
    () => {
      rejects(F + "COPY --from=a --from=b a b", "E_DOCKERFILE_FLAG_VALUE", 2, /duplicate flag/);
    },
  ],
  [
    "unknown flag names the allowed ones and points at it",
    () => {
      assert.throws(
        () => parseDockerfile(F + "COPY --form=x a b"),
        (e: unknown) =>
          e instanceof DockerfileError &&
          e.code === "E_DOCKERFILE_UNKNOWN_FLAG" &&
          e.column === 6 &&
          /did you mean --from\?/.test(e.message) &&
          /--chown/.test(e.hint ?? ""),
      );
    },
  ],
  [
    "-- ends flags",
    () => {
      assert.deepEqual(first(F + "COPY -- --odd /dst", "copy").sources, ["--odd"]);
    },
  ],
  [
    "flags are not allowed on ENV",
    () => {
      rejects(F + "ENV --x=1 a=b", "E_DOCKERFILE_UNKNOWN_FLAG", 2);
    },
  ],
  [
    "ADD flags",
    () => {
      const a = first(
        F +
          "ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chown=1 --chmod=644 --link --exclude=a https://x/y.tgz /y",
        "add",
      );
      assert.deepEqual(
        [a.checksum, a.keepGitDir, a.unpack, a.chown, a.chmod, a.link, a.excludes],
        ["sha256:abc", true, false, "1", "644", true, ["a"]],
      );
    },
  ],
  [
    "ADD leaves unset tri-state flags undefined",
    () => {
      const a = first(F + "ADD a b", "add");
      assert.equal("keepGitDir" in a || "unpack" in a, false);
    },
  ],
  [
    "ADD has no --from",
    () => {
      rejects(F + "ADD --from=x a b", "E_DOCKERFILE_UNKNOWN_FLAG", 2);
    },
  ],
  [
    "COPY needs a destination",
    () => {
      rejects(F + "COPY onlyone", "E_DOCKERFILE_ARGUMENTS", 2, /at least two arguments/);
    },
  ],
  // ---- heredocs
  [
    "RUN heredoc",
    () => {
      const r = first(F + "RUN <<EOF\necho $A\n  indented\nEOF\nUSER x", "run");
      assert.deepEqual(
        [r.cmdLine, r.files],
        [["<<EOF"], [{ name: "EOF", data: "echo $A\n  indented\n", chomp: false }]],
      );
    },
  ],
  [
    "<<- strips leading tabs for COPY and marks chomp for RUN",
    () => {
      const c = first(F + "COPY <<-EOT /f\n\tone\n\t\ttwo\n\tEOT", "copy");
      assert.deepEqual(c.sourceContents, [{ path: "EOT", data: "one\ntwo\n", expand: true }]);
      const r = first(F + "RUN <<-EOT\n\tone\n\tEOT", "run");
      assert.deepEqual(r.files, [{ name: "EOT", data: "\tone\n", chomp: true }]);
    },
  ],
  [
    "quoted delimiters disable expansion",
    () => {
      const q = (d: string): boolean =>
        first(F + `COPY <<${d} /f\nx\nEOF`, "copy").sourceContents[0]!.expand;
      assert.deepEqual([q("EOF"), q('"EOF"'), q("'EOF'"), q('E"O"F')], [true, false, false, false]);
    },
  ],
  [
    "several heredocs in one RUN",
    () => {
      const r = first(F + "RUN <<A cat > /a && <<B cat > /b\na\nA\nb\nB", "run");
      assert.deepEqual(
        r.files.map((f) => [f.name, f.data]),
        [
          ["A", "a\n"],
          ["B", "b\n"],
        ],
      );
    },
  ],
  [
    "COPY heredocs mixed with paths",
    () => {
      const c = first(F + "COPY <<one real.txt <<two /dst/\n1\none\n2\ntwo", "copy");
      assert.deepEqual(
        [c.sources, c.sourceContents.map((s) => s.data), c.dest],
        [["real.txt"], ["1\n", "2\n"], "/dst/"],
      );
    },
  ],
  [
    "heredoc with a shebang keeps it",
    () => {
      assert.equal(
        first(F + "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF", "run").files[0]!.data,
        "#!/usr/bin/env python3\nprint(1)\n",
      );
    },
  ],
  [
    "heredoc body lines looking like instructions stay in the body",
    () => {
      assert.equal(cmds(F + "RUN <<EOF\nFROM x\nRUN y\nEOF").length, 1);
    },
  ],
  [
    "exec form RUN reads no heredoc",
    () => {
      assert.equal(cmds(F + 'RUN ["cat", "<<EOF"]\nRUN x').length, 2);
    },
  ],
  [
    "heredocs only for RUN/COPY/ADD",
    () => {
      assert.equal(cmds(F + "LABEL a=<<EOF\nRUN x").length, 2);
    },
  ],
  [
    "unterminated heredoc",
    () => {
      rejects(F + "RUN <<EOF\necho\n", "E_DOCKERFILE_PARSE", 2, /unterminated heredoc/);
    },
  ],
  [
    "terminator must match exactly",
    () => {
      rejects(F + "RUN <<EOF\nx\nEOF \n EOF\n", "E_DOCKERFILE_PARSE", 2);
    },
  ],
  [
    "CRLF terminator",
    () => {
      assert.equal(first(F + "RUN <<EOF\r\nx\r\nEOF\r\n", "run").files[0]!.data, "x\r\n");
    },
  ],
  [
    "heredoc as COPY destination is an error",
    () => {
      rejects(F + "COPY a <<EOF\nx\nEOF", "E_DOCKERFILE_ARGUMENTS", 2, /heredoc as a destination/);
    },
  ],
  [
    "space after << is allowed",
    () => {
      assert.equal(first(F + "RUN cat << EOF\nx\nEOF", "run").files[0]!.name, "EOF");
    },
  ],
  [
    "file descriptor heredoc",
    () => {
      const n = parseNodes(F + "RUN cat 3<<EOF\nx\nEOF").nodes[1]!;
      assert.deepEqual(
        n.heredocs.map((h) => [h.name, h.fileDescriptor]),
        [["EOF", 3]],
      );
    },
  ],
  [
    "ONBUILD RUN heredoc",
    () => {
      const o = first(F + "ONBUILD RUN <<EOF\necho hi\nEOF", "onbuild");
      assert.equal(o.expression, "RUN <<EOF\necho hi\nEOF");
      assert.deepEqual((o.trigger as { files: unknown }).files, [
        { name: "EOF", data: "echo hi\n", chomp: false },
      ]);
    },
  ],
  [
    "a heredoc word with unbalanced quotes is an ordinary path",
    () => {
      assert.deepEqual(first(F + "COPY <<'EOF /dst", "copy").sources, ["<<'EOF"]);
    },
  ],
  [
    "<<- followed by a space is not a heredoc (as in BuildKit)",
    () => {
      assert.equal(cmds(F + "RUN cat <<- EOF\nRUN x").length, 2);
    },
  ],
  // ---- ENV / LABEL / ARG
  [
    "ENV pairs keep quotes for later expansion",
    () => {
      assert.deepEqual(
        first(F + "ENV A=1 B=\"two words\" C='x' D=", "env").pairs.map((p) => [p.key, p.value]),
        [
          ["A", "1"],
          ["B", '"two words"'],
          ["C", "'x'"],
          ["D", ""],
        ],
      );
    },
  ],
  [
    "legacy ENV takes the rest of the line",
    () => {
      assert.deepEqual(first(F + "ENV NAME some  value here", "env").pairs, [
        { key: "NAME", value: "some  value here", legacy: true },
      ]);
    },
  ],
  [
    "ENV escaped space stays in one word",
    () => {
      assert.deepEqual(
        first(F + "ENV A=b\\ c D=e", "env").pairs.map((p) => p.value),
        ["b\\ c", "e"],
      );
    },
  ],
  [
    "ENV with a continuation",
    () => {
      assert.equal(first(F + "ENV A=1 \\\n    B=2", "env").pairs.length, 2);
    },
  ],
  [
    "ENV without value",
    () => {
      rejects(F + "ENV ONLY", "E_DOCKERFILE_ARGUMENTS", 2, /two arguments/);
    },
  ],
  [
    "ENV mixing forms",
    () => {
      rejects(F + "ENV a=1 b", "E_DOCKERFILE_PARSE", 2, /can't find =/);
    },
  ],
  [
    "ENV blank name",
    () => {
      rejects(F + "ENV =x", "E_DOCKERFILE_ARGUMENTS", 2, /names can not be blank/);
    },
  ],
  [
    "empty ENV",
    () => {
      rejects(F + "ENV", "E_DOCKERFILE_ARGUMENTS", 2, /at least one argument/);
    },
  ],
  [
    "LABEL pairs",
    () => {
      assert.deepEqual(
        first(F + 'LABEL org.opencontainers.image.title="My App" version=1.0', "label").pairs.map(
          (p) => p.key,
        ),
        ["org.opencontainers.image.title", "version"],
      );
    },
  ],
  [
    "ARG forms",
    () => {
      assert.deepEqual(first(F + 'ARG A B=2 C= D="x y" E=a=b', "arg").args, [
        { key: "A" },
        { key: "B", value: "2" },
        { key: "C", value: "" },
        { key: "D", value: '"x y"' },
        { key: "E", value: "a=b" },
      ]);
    },
  ],
  [
    "ARG blank name",
    () => {
      rejects(F + "ARG =1", "E_DOCKERFILE_ARGUMENTS", 2);
    },
  ],
  [
    "ARG needs a name",
    () => {
      rejects(F + "ARG", "E_DOCKERFILE_ARGUMENTS", 2);
    },
  ],
  // ---- FROM
  [
    "FROM AS is lower-cased; platform kept raw",
    () => {
      const s = parseDockerfile("FROM --platform=$BUILDPLATFORM golang:${V} AS Builder").stages[0]!;
      assert.deepEqual(
        [s.name, s.baseName, s.platform],
        ["builder", "golang:${V}", "$BUILDPLATFORM"],
      );
    },
  ],
  [
    "FROM without AS has no name or platform",
    () => {
      assert.deepEqual(
        Object.keys(parseDockerfile("FROM scratch").stages[0]!).includes("name"),
        false,
      );
    },
  ],
  [
    "FROM with a bad stage name",
    () => {
      rejects("FROM a AS 1st", "E_DOCKERFILE_ARGUMENTS", 1, /invalid name for build stage/);
    },
  ],
  [
    "FROM with two words",
    () => {
      rejects("FROM a b", "E_DOCKERFILE_ARGUMENTS", 1, /one or three/);
    },
  ],
  [
    "FROM without image",
    () => {
      rejects("FROM", "E_DOCKERFILE_ARGUMENTS", 1);
    },
  ],
  [
    "FROM unknown flag",
    () => {
      rejects("FROM --plaform=x a", "E_DOCKERFILE_UNKNOWN_FLAG", 1, /did you mean --platform/);
    },
  ],
  [
    "stages collect their commands",
    () => {
      const df: Dockerfile = parseDockerfile("FROM a AS one\nRUN 1\nFROM one\nRUN 2\nRUN 3");
      assert.deepEqual(
        df.stages.map((s) => s.commands.length),
        [1, 2],
      );
    },
  ],
  // ---- single-value instructions
  [
    "MAINTAINER",
    () => {
      assert.equal(first(F + "MAINTAINER Jane <j@x>", "maintainer").maintainer, "Jane <j@x>");
    },
  ],
  [
    "WORKDIR keeps the whole text",
    () => {
      assert.equal(first(F + 'WORKDIR "/a b"', "workdir").path, '"/a b"');
    },
  ],
  [
    "WORKDIR needs an argument",
    () => {
      rejects(F + "WORKDIR", "E_DOCKERFILE_ARGUMENTS", 2, /exactly one/);
    },
  ],
  [
    "USER",
    () => {
      assert.equal(first(F + "USER 1000:1000", "user").user, "1000:1000");
    },
  ],
  [
    "STOPSIGNAL",
    () => {
      assert.equal(first(F + "STOPSIGNAL SIGTERM", "stopsignal").signal, "SIGTERM");
    },
  ],
  [
    "EXPOSE sorts like BuildKit",
    () => {
      assert.deepEqual(first(F + "EXPOSE 8080 443/tcp 53/udp", "expose").ports, [
        "443/tcp",
        "53/udp",
        "8080",
      ]);
    },
  ],
  [
    "EXPOSE needs a port",
    () => {
      rejects(F + "EXPOSE", "E_DOCKERFILE_ARGUMENTS", 2);
    },
  ],
  [
    "VOLUME with an empty JSON string",
    () => {
      rejects(F + 'VOLUME [""]', "E_DOCKERFILE_ARGUMENTS", 2, /empty string/);
    },
  ],
  // ---- HEALTHCHECK
  [
    "HEALTHCHECK NONE",
    () => {
      assert.deepEqual(first(F + "HEALTHCHECK NONE", "healthcheck").health.test, ["NONE"]);
    },
  ],
  [
    "HEALTHCHECK NONE with args",
    () => {
      rejects(F + "HEALTHCHECK NONE x", "E_DOCKERFILE_ARGUMENTS", 2);
    },
  ],
  [
    "HEALTHCHECK shell form with every flag",
    () => {
      assert.deepEqual(
        first(
          F +
            "HEALTHCHECK --interval=1m30s --timeout=3s --start-period=0.5s --start-interval=250ms --retries=5 CMD curl -f http://l/ || exit 1",
          "healthcheck",
        ).health,
        {
          test: ["CMD-SHELL", "curl -f http://l/ || exit 1"],
          interval: 90e9,
          timeout: 3e9,
          startPeriod: 5e8,
          startInterval: 2.5e8,
          retries: 5,
        },
      );
    },
  ],
  [
    "HEALTHCHECK exec form",
    () => {
      assert.deepEqual(
        first(F + 'HEALTHCHECK CMD ["/bin/check", "-q"]', "healthcheck").health.test,
        ["CMD", "/bin/check", "-q"],
      );
    },
  ],
  [
    "HEALTHCHECK interval 0 means unset",
    () => {
      assert.equal(first(F + "HEALTHCHECK --interval=0s CMD x", "healthcheck").health.interval, 0);
    },
  ],
  [
    "HEALTHCHECK interval below 1ms",
    () => {
      rejects(
        F + "HEALTHCHECK --interval=500us CMD x",
        "E_DOCKERFILE_FLAG_VALUE",
        2,
        /less than 1ms/,
      );
    },
  ],
  [
    "HEALTHCHECK bad duration",
    () => {
      rejects(
        F + "HEALTHCHECK --timeout=10 CMD x",
        "E_DOCKERFILE_FLAG_VALUE",
        2,
        /invalid duration/,
      );
    },
  ],
  [
    "HEALTHCHECK negative retries",
    () => {
      rejects(F + "HEALTHCHECK --retries=-1 CMD x", "E_DOCKERFILE_FLAG_VALUE", 2, /negative/);
    },
  ],
  [
    "HEALTHCHECK unknown type",
    () => {
      rejects(F + "HEALTHCHECK RUN x", "E_DOCKERFILE_ARGUMENTS", 2, /try CMD/);
    },
  ],
  [
    "HEALTHCHECK CMD without command",
    () => {
      rejects(F + "HEALTHCHECK CMD", "E_DOCKERFILE_ARGUMENTS", 2, /Missing command/);
    },
  ],
  // ---- SHELL, ONBUILD
  [
    "SHELL JSON",
    () => {
      assert.deepEqual(first(F + 'SHELL ["pwsh", "-Command"]', "shell").shell, [
        "pwsh",
        "-Command",
      ]);
    },
  ],
  [
    "SHELL must be JSON",
    () => {
      rejects(F + "SHELL bash -c", "E_DOCKERFILE_ARGUMENTS", 2, /JSON form/);
    },
  ],
  [
    "ONBUILD typed trigger",
    () => {
      const o = first(F + "ONBUILD COPY --chown=app . /src", "onbuild");
      assert.equal(o.expression, "COPY --chown=app . /src");
      assert.equal((o.trigger as { chown: string }).chown, "app");
      assert.equal(o.expandable, false);
    },
  ],
  [
    "ONBUILD ONBUILD",
    () => {
      rejects(F + "ONBUILD ONBUILD RUN x", "E_DOCKERFILE_ARGUMENTS", 2, /Chaining/);
    },
  ],
  [
    "ONBUILD FROM",
    () => {
      rejects(F + "ONBUILD FROM x", "E_DOCKERFILE_ARGUMENTS", 2, /FROM isn't allowed/);
    },
  ],
  [
    "ONBUILD MAINTAINER",
    () => {
      rejects(F + "onbuild maintainer x", "E_DOCKERFILE_ARGUMENTS", 2, /MAINTAINER isn't allowed/);
    },
  ],
  [
    "ONBUILD with an unknown trigger still parses",
    () => {
      assert.equal(first(F + "ONBUILD FOO bar", "onbuild").trigger, undefined);
    },
  ],
  [
    "ONBUILD alone",
    () => {
      rejects(F + "ONBUILD", "E_DOCKERFILE_ARGUMENTS", 2);
    },
  ],
  // ---- RUN flags
  [
    "RUN --mount values stay raw and in order",
    () => {
      const r = first(
        F +
          "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=npmrc,target=/root/.npmrc --network=none --security=insecure go build",
        "run",
      );
      assert.deepEqual(
        [r.mounts, r.network, r.security, r.cmdLine],
        [
          ["type=cache,target=/root/.cache", "type=secret,id=npmrc,target=/root/.npmrc"],
          "none",
          "insecure",
          ["go build"],
        ],
      );
      assert.deepEqual(r.flagsUsed.sort(), ["mount", "network", "security"]);
    },
  ],
  [
    "RUN mount from= cannot use variables",
    () => {
      rejects(
        F + "RUN --mount=type=bind,from=$STAGE,target=/x true",
        "E_DOCKERFILE_FLAG_VALUE",
        2,
        /variable expansion/,
      );
    },
  ],
  [
    "RUN mount with broken CSV",
    () => {
      rejects(F + 'RUN --mount=type=bind,\\"src=a true', "E_DOCKERFILE_FLAG_VALUE", 2, /csv/);
    },
  ],
  [
    "RUN mount with variables is accepted while parsing",
    () => {
      assert.deepEqual(
        first(F + "RUN --mount=type=$T,target=$DIR,from=stage$ true", "run").mounts.length,
        1,
      );
    },
  ],
  [
    "RUN invalid network",
    () => {
      rejects(F + "RUN --network=bridge x", "E_DOCKERFILE_FLAG_VALUE", 2, /invalid network mode/);
    },
  ],
  [
    "RUN invalid security",
    () => {
      rejects(F + "RUN --security=root x", "E_DOCKERFILE_FLAG_VALUE", 2);
    },
  ],
  [
    "RUN --device",
    () => {
      assert.deepEqual(first(F + "RUN --device=nvidia.com/gpu=all,required x", "run").devices, [
        { name: "nvidia.com/gpu=all", required: true },
      ]);
    },
  ],
  // ---- unknown instructions and messages
  [
    "unknown instruction suggests the closest",
    () => {
      assert.throws(
        () => parseDockerfile("FROM a\n  RUNN x"),
        (e: unknown) =>
          e instanceof DockerfileError &&
          e.code === "E_DOCKERFILE_UNKNOWN_INSTRUCTION" &&
          e.line === 2 &&
          e.column === 3 &&
          e.message ===
            "Dockerfile:2:3: unknown instruction: RUNN (did you mean RUN?)\n 2 |   RUNN x\n   |   ^",
      );
    },
  ],
  [
    "lower-case unknown instruction suggests lower-case",
    () => {
      rejects("FROM a\ncopyy a b", "E_DOCKERFILE_UNKNOWN_INSTRUCTION", 2, /did you mean copy\?/);
    },
  ],
  [
    "far-off unknown instruction has no suggestion",
    () => {
      rejects(
        "FROM a\nINSTALL x",
        "E_DOCKERFILE_UNKNOWN_INSTRUCTION",
        2,
        /unknown instruction: INSTALL$/m,
      );
    },
  ],
  [
    "file name in messages",
    () => {
      assert.throws(
        () => parseDockerfile("FROM a\nBAD", { file: "ci/Dockerfile.dev" }),
        (e: unknown) => e instanceof Error && e.message.startsWith("ci/Dockerfile.dev:2:1: "),
      );
    },
  ],
  // ---- expandable marks
  [
    "expandable follows BuildKit",
    () => {
      const c = cmds(
        F +
          'ADD a b\nCOPY a b\nENV a=b\nEXPOSE 1\nLABEL a=b\nSTOPSIGNAL 9\nUSER u\nVOLUME /v\nWORKDIR /w\nARG x\nRUN x\nCMD x\nENTRYPOINT x\nSHELL ["s"]\nHEALTHCHECK NONE\nMAINTAINER m',
      );
      assert.deepEqual(
        c.filter((x) => x.expandable).map((x) => x.kind),
        [
          "add",
          "copy",
          "env",
          "expose",
          "label",
          "stopsignal",
          "user",
          "volume",
          "workdir",
          "arg",
          "run",
        ],
      );
    },
  ],
  [
    "comments above an instruction are kept",
    () => {
      assert.deepEqual(first(F + "# build it\n# fast\nRUN x", "run").comments, [
        "build it",
        "fast",
      ]);
    },
  ],
];

for (const [name, run] of cases) test(name, run);

test("the table has the promised size", () => {
  assert.ok(cases.length >= 100, String(cases.length));
});
