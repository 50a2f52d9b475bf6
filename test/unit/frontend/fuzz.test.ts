import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DockerfileError,
  ShellLex,
  parseDockerfile,
  parseRunMount,
} from "../../../src/frontend/dockerfile/index.js";
import { isKilnError } from "../../../src/errors.js";

/** mulberry32: small, fast and deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LINES = [
  "FROM alpine:3.20",
  "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION:-1.22} AS build",
  "FROM scratch",
  "FROM build AS final",
  "ARG GO_VERSION=1.22",
  "ARG TARGETOS TARGETARCH",
  'ARG A="x y" B',
  "RUN apk add --no-cache git",
  "RUN --mount=type=cache,target=/root/.cache/go-build go build ./...",
  "RUN --mount=type=secret,id=tok,env=TOKEN --network=none make",
  "RUN --mount=type=bind,from=build,source=/out,target=/in cp /in/x /x",
  'RUN ["echo", "hi \\u0041"]',
  "RUN echo a \\",
  "  && echo b",
  "# comment",
  "",
  "RUN <<EOF",
  "RUN <<-'EOT' bash",
  "COPY <<EOF /etc/config",
  "echo heredoc body $HOME",
  "EOF",
  "\tEOT",
  "COPY --from=build --chown=1000:1000 --chmod=0755 /out/app /usr/bin/app",
  "COPY --link --parents --exclude=*.md . /src/",
  'COPY ["a b", "/dst/"]',
  "ADD --checksum=sha256:0123 https://example.com/a.tgz /tmp/",
  "ADD --keep-git-dir=true git@github.com:a/b.git /src",
  'ENV A=1 B="two words" C=${A:+set}',
  "ENV LEGACY some value",
  "LABEL org.opencontainers.image.source=https://x version=$V",
  "EXPOSE 80/tcp 443 ${PORT}",
  'VOLUME ["/data"]',
  "WORKDIR /src/${NAME}",
  "USER 1000:1000",
  "STOPSIGNAL SIGQUIT",
  "HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD wget -qO- localhost || exit 1",
  "HEALTHCHECK NONE",
  'SHELL ["/bin/bash", "-o", "pipefail", "-c"]',
  "ONBUILD COPY . /app",
  "ONBUILD RUN <<EOF",
  'CMD ["/app", "--serve"]',
  "ENTRYPOINT exec /app",
  "MAINTAINER someone",
  "# syntax=docker/dockerfile:1",
  "# escape=`",
  "RUN dir C:\\ `",
];

const NOISE = [
  "\\", "`", "\"", "'", "[", "]", "{", "}", "$", "${", "<<", "<<-", "=", ",", "--", "-", "#",
  " ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2028", "\uFEFF", "é", "😀", "\\u", "EOF", ":", "/", "*",
  "?", "%", "##", "//", "${X:-", "${X/", "type=", "from=$", "0", "1", "--mount=", "--from=", "\u0000",
]; // prettier-ignore

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function generate(r: () => number): string {
  const lines: string[] = [];
  const n = 1 + Math.floor(r() * 12);
  if (r() < 0.7) lines.push(pick(r, LINES.slice(0, 4)));
  for (let i = 0; i < n; i++) lines.push(pick(r, LINES));
  return lines.join(r() < 0.1 ? "\r\n" : "\n");
}

function mutate(r: () => number, s: string): string {
  const ops = 1 + Math.floor(r() * 4);
  for (let k = 0; k < ops; k++) {
    const at = Math.floor(r() * (s.length + 1));
    const op = r();
    if (op < 0.45) s = s.slice(0, at) + pick(r, NOISE) + s.slice(at);
    else if (op < 0.7) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 8));
    else if (op < 0.85) s = s.slice(0, at) + s.slice(at, at + 20) + s.slice(at);
    else s = s.slice(at) + "\n" + s.slice(0, at);
  }
  return s;
}

const TOTAL = 100_000;

test(`parser survives ${TOTAL} generated and mutated Dockerfiles`, () => {
  const r = prng(0x6b696c6e);
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < TOTAL; i++) {
    const base = generate(r);
    const text = i % 4 === 0 ? base : mutate(r, base);
    try {
      const df = parseDockerfile(text);
      accepted++;
      const lineCount = text.split("\n").length;
      for (const st of df.stages) {
        for (const c of st.commands) {
          assert.ok(c.location.startLine >= 1 && c.location.endLine <= lineCount, text);
          assert.ok(c.location.startLine <= c.location.endLine, text);
          if (c.kind === "run") {
            for (const m of c.mounts) {
              try {
                parseRunMount(m, (w) => w);
              } catch (e) {
                assert.ok(isKilnError(e), `mount ${m}: ${String(e)}`);
              }
            }
          }
        }
      }
    } catch (e) {
      if (!(e instanceof DockerfileError)) {
        assert.fail(`non-DockerfileError for ${JSON.stringify(text)}: ${String(e)}`);
      }
      assert.ok(e.line >= 1 && e.column >= 1, e.message);
      assert.match(e.code, /^E_DOCKERFILE_/);
      rejected++;
    }
  }
  // Both outcomes must be well represented, or the generator is not exercising the parser.
  assert.ok(accepted > TOTAL / 10, `accepted ${accepted}`);
  assert.ok(rejected > TOTAL / 50, `rejected ${rejected}`);
});

test("shell lexer survives random words", () => {
  const r = prng(42);
  const env = { A: "x y", EMPTY: "", P: "a*b/c.d" };
  const lexers = [
    new ShellLex(),
    new ShellLex({ escapeToken: "`" }),
    new ShellLex({ skipUnsetEnv: true, rawQuotes: true, rawEscapes: true }),
  ];
  for (let i = 0; i < 20_000; i++) {
    let w = "";
    const n = Math.floor(r() * 10);
    for (let k = 0; k < n; k++) w += r() < 0.3 ? pick(r, ["A", "P", "EMPTY", "B"]) : pick(r, NOISE);
    for (const lex of lexers) {
      try {
        lex.processWord(w, env);
        lex.processWords(w, env);
      } catch (e) {
        assert.ok(
          isKilnError(e) && e.code === "E_DOCKERFILE_EXPANSION",
          `${JSON.stringify(w)}: ${String(e)}`,
        );
      }
    }
  }
});
