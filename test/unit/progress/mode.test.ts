import { test } from "node:test";
import assert from "node:assert/strict";
import { isKilnError } from "../../../src/errors.js";
import {
  PlainRenderer,
  QuietRenderer,
  TtyRenderer,
  createRenderer,
  defaultProgressMode,
  parseProgressMode,
  resolveProgressMode,
} from "../../../src/progress/index.js";
import { Capture } from "./script.js";

const tty = Object.assign(new Capture({ columns: 80, rows: 24 }), { isTTY: true });
const file = new Capture();

test("auto is tty only on a terminal that is not dumb and not CI", () => {
  assert.equal(resolveProgressMode("auto", tty, {}), "tty");
  assert.equal(resolveProgressMode("auto", tty, { TERM: "xterm-256color" }), "tty");
  assert.equal(resolveProgressMode("auto", tty, { TERM: "dumb" }), "plain");
  assert.equal(resolveProgressMode("auto", tty, { CI: "true" }), "plain");
  assert.equal(resolveProgressMode("auto", file, {}), "plain");
  assert.equal(resolveProgressMode("quiet", tty, {}), "quiet");
});

test("KILN_PROGRESS, then BUILDKIT_PROGRESS, give the default mode", () => {
  assert.equal(defaultProgressMode({}), "auto");
  assert.equal(defaultProgressMode({ BUILDKIT_PROGRESS: "plain" }), "plain");
  assert.equal(
    defaultProgressMode({ BUILDKIT_PROGRESS: "plain", KILN_PROGRESS: "rawjson" }),
    "rawjson",
  );
  assert.equal(resolveProgressMode(undefined, tty, { BUILDKIT_PROGRESS: "quiet" }), "quiet");
  assert.ok(
    createRenderer(undefined, tty, { env: { KILN_PROGRESS: "plain" } }) instanceof PlainRenderer,
  );
});

test("unknown modes are rejected with the list of valid ones", () => {
  assert.equal(parseProgressMode(" TTY "), "tty");
  assert.throws(
    () => parseProgressMode("fancy"),
    (e) => isKilnError(e) && e.code === "E_PROGRESS_MODE" && (e.hint ?? "").includes("rawjson"),
  );
  assert.throws(
    () => defaultProgressMode({ BUILDKIT_PROGRESS: "nope" }),
    (e) => isKilnError(e) && e.message.startsWith("BUILDKIT_PROGRESS:"),
  );
});

test("createRenderer picks the renderer for the resolved mode", async () => {
  const t = createRenderer("auto", tty, { env: {}, timers: false });
  assert.ok(t instanceof TtyRenderer);
  await t.close();
  assert.ok(createRenderer("auto", file, { env: {} }) instanceof PlainRenderer);
  assert.ok(createRenderer("quiet", file) instanceof QuietRenderer);
});

test("NO_COLOR turns the tty renderer's colors off", async () => {
  const ev = { type: "vertex", id: "x", name: "n", started: 1, completed: 2 } as const;
  const colored = Object.assign(new Capture({ columns: 80, rows: 24 }), { isTTY: true });
  const plain = Object.assign(new Capture({ columns: 80, rows: 24 }), { isTTY: true });
  for (const [out, env] of [
    [colored, {}],
    [plain, { NO_COLOR: "1" }],
  ] as const) {
    const r = createRenderer("tty", out, { env, timers: false });
    r.write(ev);
    await r.close();
  }
  assert.ok(colored.text.includes("\x1b[34m"));
  assert.ok(!/\[3\dm/.test(plain.text));
});
