import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { Ajv } from "ajv";
import { RawJsonRenderer, createRenderer } from "../../../src/progress/index.js";
import * as s from "./script.js";

const schemaUrl = new URL("../../../docs/progress-event.schema.json", import.meta.url);
const schema = JSON.parse(await readFile(schemaUrl, "utf8")) as object;
const validate = new Ajv({ allErrors: true, strict: true }).compile(schema);

test("rawjson writes exactly the events, one per line, each valid against the schema", async () => {
  const out = new s.Capture();
  const r = new RawJsonRenderer(out);
  for (const [, ev] of s.script) r.write(ev);
  await r.close();
  assert.ok(out.text.endsWith("\n"));
  const lines = out.text.slice(0, -1).split("\n");
  assert.deepEqual(
    lines.map((l) => JSON.parse(l) as unknown),
    s.script.map(([, ev]) => ev),
  );
  for (const l of lines) {
    assert.ok(validate(JSON.parse(l)), `${l}: ${JSON.stringify(validate.errors)}`);
  }
});

test("the schema rejects malformed events", () => {
  for (const bad of [
    { type: "log", vertex: s.C, stream: 3, data: "x", timestamp: 1 },
    { type: "vertex", id: s.A },
    { type: "vertex", id: s.A, name: "n", colour: "red" },
    { type: "status", vertex: s.B, id: "x", current: -1 },
    { type: "summary", durationMs: 1, platforms: [{ platform: "linux/amd64" }] },
    { type: "progress" },
  ]) {
    assert.equal(validate(bad), false, JSON.stringify(bad));
  }
});

test("createRenderer('rawjson') is the raw JSON renderer", async () => {
  const out = new s.Capture();
  const r = createRenderer("rawjson", out);
  r.write(s.script[0]![1]);
  await r.close();
  assert.equal(out.text, `${JSON.stringify(s.script[0]![1])}\n`);
});
