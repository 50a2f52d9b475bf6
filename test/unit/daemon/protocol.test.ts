import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { LineReader, parseAddress } from "../../../src/daemon/index.js";
import { isKilnError } from "../../../src/errors.js";

function chunks(...parts: (string | Buffer)[]): AsyncIterable<Buffer> {
  return Readable.from(parts.map((p) => Buffer.from(p)));
}

async function collect(it: AsyncIterable<Buffer>): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out).toString();
}

test("lines split across chunks (and inside a UTF-8 character), then the raw rest", async () => {
  const euro = Buffer.from("€");
  const r = new LineReader(
    chunks(
      '{"a":',
      '1}\n\n{"b":"',
      euro.subarray(0, 1),
      euro.subarray(1),
      '"}\nTAR',
      "BYTES\nmore",
    ),
  );
  assert.equal(await r.nextLine(), '{"a":1}');
  assert.equal(await r.nextLine(), '{"b":"€"}');
  assert.equal(await collect(r.rest()), "TARBYTES\nmore");
});

test("the last line needs no newline; the end is undefined", async () => {
  const r = new LineReader(chunks("one\ntwo"));
  assert.equal(await r.nextLine(), "one");
  assert.equal(await r.nextLine(), "two");
  assert.equal(await r.nextLine(), undefined);
});

test("a line longer than the limit is refused", async () => {
  const r = new LineReader(chunks("x".repeat(100), "y".repeat(100)));
  await assert.rejects(r.nextLine(150), RangeError);
});

test("addresses: unix paths, tcp host:port, IPv6; anything else is an error", () => {
  assert.deepEqual(parseAddress("unix:///run/kilnd.sock"), {
    kind: "unix",
    path: "/run/kilnd.sock",
  });
  assert.deepEqual(parseAddress("tcp://10.0.0.1:1234"), {
    kind: "tcp",
    host: "10.0.0.1",
    port: 1234,
  });
  assert.deepEqual(parseAddress("tcp://[::1]:99"), { kind: "tcp", host: "::1", port: 99 });
  for (const bad of ["unix://relative.sock", "tcp://host", "http://x:1", "ssh://x"]) {
    assert.throws(
      () => parseAddress(bad),
      (e: unknown) => isKilnError(e) && e.code === "E_ADDRESS",
    );
  }
});
