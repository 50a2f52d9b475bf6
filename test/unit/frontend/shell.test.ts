import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DockerfileError,
  ShellLex,
  parseDockerfile,
  placeError,
} from "../../../src/frontend/dockerfile/index.js";
import { isKilnError } from "../../../src/errors.js";

const ENV: Record<string, string> = {
  HOME: "/root",
  EMPTY: "",
  SP: "a  b",
  LEAD: "  x y",
  TRAIL: "x y  ",
  FILE: "archive.tar.gz",
  PATHV: "/usr/local/bin/tool",
  GREETING: "hello world hello",
  HANGUL: "한국어",
  STAR: "a*b",
};

// [input, expected processWord result or null for an error]
const wordCases: [string, string | null][] = [
  ["plain", "plain"],
  ["$HOME", "/root"],
  ["${HOME}", "/root"],
  ["x${HOME}y", "x/rooty"],
  ["$HOME/bin", "/root/bin"],
  ["$UNSET", ""],
  ["a${UNSET}b", "ab"],
  ["$", "$"],
  ["a$", "a$"],
  ["$.", "$."],
  ["$1x", "x"],
  ["$12x", "x"],
  ["${1:-d}", "d"],
  ["\\$HOME", "$HOME"],
  ["\\\\$HOME", "\\/root"],
  ["'$HOME'", "$HOME"],
  ['"$HOME"', "/root"],
  ['"\\$HOME"', "$HOME"],
  ['"a\\tb"', "a\\tb"],
  ["a\\tb", "atb"],
  ["'a\\tb'", "a\\tb"],
  ['"\\""', '"'],
  ["'\"'", '"'],
  ['"\'"', "'"],
  ["he'll'o", "hello"],
  ["he\\'llo", "he'llo"],
  ["trailing\\", "trailing"],
  ["trailing\\\\", "trailing\\"],
  ["'unterminated", null],
  ['"unterminated', null],
  ['"esc at end\\"', null],
  ["${}", null],
  ["${:}", null],
  ["${{x}", null],
  ["${HOME", null],
  ["${.}", null],
  ["${HOME}}", "/root}"],
  // default values
  ["${UNSET:-def}", "def"],
  ["${EMPTY:-def}", "def"],
  ["${HOME:-def}", "/root"],
  ["${UNSET-def}", "def"],
  ["${EMPTY-def}", ""],
  ["${UNSET:-$HOME}", "/root"],
  ["${UNSET:-${ALSO:-deep}}", "deep"],
  ["${UNSET:-a b}", "a b"],
  ['${UNSET:-"q w"}', "q w"],
  ["${UNSET:-\\$HOME}", "$HOME"],
  ["${UNSET:-\\}}", "}"],
  ["${UNSET:-x", null],
  // alternate values
  ["${HOME:+alt}", "alt"],
  ["${EMPTY:+alt}", ""],
  ["${EMPTY+alt}", "alt"],
  ["${UNSET+alt}", ""],
  ["${UNSET:+alt}", ""],
  ["${HOME:+${HOME}:}", "/root:"],
  // required
  ["${HOME:?}", "/root"],
  ["${HOME?}", "/root"],
  ["${EMPTY?}", ""],
  ["${EMPTY:?}", null],
  ["${UNSET?}", null],
  ["${UNSET:?must be set}", null],
  // unsupported modifiers
  ["${HOME:=x}", null],
  ["${HOME:x}", null],
  ["${HOME^^}", null],
  ["${HOME:#x}", null],
  // prefix / suffix removal
  ["${FILE#*.}", "tar.gz"],
  ["${FILE##*.}", "gz"],
  ["${FILE%.*}", "archive.tar"],
  ["${FILE%%.*}", "archive"],
  ["${FILE#archive}", ".tar.gz"],
  ["${FILE#nomatch}", "archive.tar.gz"],
  ["${FILE%gz}", "archive.tar."],
  ["${PATHV##*/}", "tool"],
  ["${PATHV%/*}", "/usr/local/bin"],
  ["${PATHV#/usr/}", "local/bin/tool"],
  ["${FILE#?}", "rchive.tar.gz"],
  ["${FILE%???}", "archive.tar"],
  ["${STAR#a\\*}", "b"],
  ["${FILE#[a]}", "archive.tar.gz"],
  ["${UNSET#x}", ""],
  ["${HANGUL#한}", "국어"],
  ["${HANGUL%어}", "한국"],
  // replacement
  ["${GREETING/hello/bye}", "bye world hello"],
  ["${GREETING//hello/bye}", "bye world bye"],
  ["${GREETING//o/0}", "hell0 w0rld hell0"],
  ["${GREETING/nomatch/x}", "hello world hello"],
  ["${GREETING/h*o/X}", "X"],
  ["${GREETING/w?r/W}", "hello Wld hello"],
  ["${PATHV//\\//:}", ":usr:local:bin:tool"],
  ["${GREETING/ /_}", "hello_world hello"],
  ["${GREETING// /}", "helloworldhello"],
  ["${UNSET/a/b}", ""],
  ["${GREETING/hello", null],
  ["${GREETING/a\\x/b}", null],
  // unicode and specials
  ["$HANGUL", "한국어"],
  ["안'녕'", "안녕"],
  ["$@", ""],
  ["${#}", ""],
  ["a<b", "a<b"],
  ["<<EOF", "<<EOF"],
];

for (const [input, expected] of wordCases) {
  test(`processWord ${JSON.stringify(input)}`, () => {
    const lex = new ShellLex();
    if (expected === null) {
      assert.throws(
        () => lex.processWord(input, ENV),
        (e: unknown) => isKilnError(e) && e.code === "E_DOCKERFILE_EXPANSION",
      );
    } else {
      assert.equal(lex.processWord(input, ENV), expected);
    }
  });
}

const wordsCases: [string, string[]][] = [
  ["a b  c", ["a", "b", "c"]],
  ["  lead", ["lead"]],
  ['"a b" c', ["a b", "c"]],
  ["a\\ b", ["a b"]],
  ["x${SP}y", ["xa", "by"]],
  ['x"${SP}"y', ["xa  by"]],
  ["$LEAD", ["x", "y"]],
  ["pre$LEAD", ["pre", "x", "y"]],
  ["${TRAIL}z", ["x", "y", "z"]],
  ['""', []],
  ["a '' b", ["a", "b"]],
  ["80/tcp 443", ["80/tcp", "443"]],
  ["a << b", ["a", "<< b"]],
];

for (const [input, expected] of wordsCases) {
  test(`processWords ${JSON.stringify(input)}`, () => {
    assert.deepEqual(new ShellLex().processWords(input, ENV), expected);
  });
}

test("backtick escape token", () => {
  const lex = new ShellLex({ escapeToken: "`" });
  assert.equal(lex.processWord("C:\\path\\$HOME", ENV), "C:\\path\\/root");
  assert.equal(lex.processWord("`$HOME", ENV), "$HOME");
  assert.equal(lex.processWord('"a`"b"', ENV), 'a"b');
  assert.equal(lex.processWord("a` b", ENV), "a b");
  assert.deepEqual(lex.processWords("a` b c", ENV), ["a b", "c"]);
});

test("processWordWithMatches reports matched and unmatched names", () => {
  const r = new ShellLex().processWordWithMatches("$HOME ${NOPE:-x} ${EMPTY} $ALSO_NOT", ENV);
  assert.equal(r.result, "/root x  ");
  assert.deepEqual([...r.matched].sort(), ["EMPTY", "HOME"]);
  assert.deepEqual([...r.unmatched].sort(), ["ALSO_NOT", "NOPE"]);
});

test("env may be a Map or a lookup function; prototype keys are not variables", () => {
  const lex = new ShellLex();
  assert.equal(lex.processWord("$A-$B", new Map([["A", "1"]])), "1-");
  assert.equal(
    lex.processWord("$A", (n) => (n === "A" ? "f" : undefined)),
    "f",
  );
  assert.equal(lex.processWord("[$constructor]", {}), "[]");
});

test("skipUnsetEnv keeps unset references as written", () => {
  const lex = new ShellLex({ skipUnsetEnv: true });
  assert.equal(lex.processWord("$X ${Y} ${Z:-d} $HOME", ENV), "$X ${Y} ${Z:-d} /root");
});

test("skipProcessQuotes treats quotes literally (heredoc bodies)", () => {
  const lex = new ShellLex({ skipProcessQuotes: true });
  assert.equal(lex.processWord("echo \"$HOME\" '$HOME'\n", ENV), "echo \"/root\" '/root'\n");
});

test("rawQuotes and rawEscapes keep the characters", () => {
  assert.equal(new ShellLex({ rawQuotes: true }).processWord(`'a'"b"`, ENV), `'a'"b"`);
  assert.equal(new ShellLex({ rawEscapes: true }).processWord("a\\$b", ENV), "a\\$b");
});

test("expansion errors name the word and the problem", () => {
  assert.throws(
    () => new ShellLex().processWord("${NEEDED:?set NEEDED first}", ENV),
    /failed to process "\$\{NEEDED:\?set NEEDED first\}": NEEDED: set NEEDED first/,
  );
});

test("expansion errors can be placed on the instruction's line", () => {
  const df = parseDockerfile("FROM a\nWORKDIR ${DIR:?set DIR}\n");
  const wd = df.stages[0]!.commands[0]!;
  assert.ok(wd.kind === "workdir");
  let placed: unknown;
  try {
    new ShellLex({ escapeToken: df.escapeToken }).processWord(wd.path, {});
  } catch (e) {
    placed = placeError(e, df.source, wd.location.startLine, wd.location.endLine);
  }
  assert.ok(placed instanceof DockerfileError);
  assert.equal(placed.line, 2);
  assert.equal(placed.code, "E_DOCKERFILE_EXPANSION");
  assert.match(placed.message, /^Dockerfile:2:1: failed to process .*DIR: set DIR\n 2 \| WORKDIR/);
});
