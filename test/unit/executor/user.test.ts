import { test } from "node:test";
import assert from "node:assert/strict";
import { parseGroup, parsePasswd, resolveUser } from "../../../src/executor/index.js";
import { isKilnError } from "../../../src/errors.js";

const passwd = [
  "root:x:0:0:root:/root:/bin/sh",
  "# comment line is skipped",
  "alice:x:1000:1000:Alice:/home/alice:/bin/sh",
  "bob:x:1001:100::/home/bob:/bin/sh",
  "broken:x:notanumber:1:::",
  "",
].join("\n");
const group = [
  "root:x:0:",
  "users:x:100:",
  "alice:x:1000:",
  "wheel:x:10:alice,root",
  "audio:x:29:bob,alice",
  "staff:x:50:",
].join("\n");

test("parsePasswd / parseGroup keep well-formed entries", () => {
  assert.deepEqual(
    parsePasswd(passwd).map((u) => [u.name, u.uid, u.gid, u.home]),
    [
      ["root", 0, 0, "/root"],
      ["alice", 1000, 1000, "/home/alice"],
      ["bob", 1001, 100, "/home/bob"],
    ],
  );
  assert.deepEqual(
    parseGroup(group).find((g) => g.name === "audio"),
    {
      name: "audio",
      gid: 29,
      members: ["bob", "alice"],
    },
  );
});

const cases: [string, string, { uid: number; gid: number; additionalGids: number[] }][] = [
  ["default is root with its memberships", "", { uid: 0, gid: 0, additionalGids: [0, 10] }],
  [
    "name → uid, primary gid, supplementary groups",
    "alice",
    { uid: 1000, gid: 1000, additionalGids: [1000, 10, 29] },
  ],
  [
    "numeric uid with an entry gets its groups",
    "1001",
    { uid: 1001, gid: 100, additionalGids: [100, 29] },
  ],
  ["numeric uid without an entry is gid 0", "4242", { uid: 4242, gid: 0, additionalGids: [0] }],
  [
    "explicit group by name drops supplementary groups",
    "alice:staff",
    { uid: 1000, gid: 50, additionalGids: [50] },
  ],
  [
    "explicit numeric group without an entry",
    "alice:777",
    { uid: 1000, gid: 777, additionalGids: [777] },
  ],
  ["uid:gid fast path", "5:6", { uid: 5, gid: 6, additionalGids: [6] }],
  ["root:root fast path", "root:root", { uid: 0, gid: 0, additionalGids: [0] }],
  ["uid with group name", "4242:audio", { uid: 4242, gid: 29, additionalGids: [29] }],
];
for (const [name, spec, want] of cases) {
  test(`resolveUser: ${name}`, () => {
    assert.deepEqual(resolveUser(spec, passwd, group), want);
  });
}

test("resolveUser: unknown names are errors, missing files are not for numeric ids", () => {
  for (const spec of ["nobody", "alice:nogroup"]) {
    assert.throws(
      () => resolveUser(spec, passwd, group),
      (e) => isKilnError(e) && e.code === "E_EXEC_USER",
    );
  }
  assert.throws(
    () => resolveUser("alice", undefined, undefined),
    (e) => isKilnError(e) && e.code === "E_EXEC_USER",
  );
  assert.deepEqual(resolveUser("", undefined, undefined), { uid: 0, gid: 0, additionalGids: [0] });
  assert.deepEqual(resolveUser("12", undefined, undefined), {
    uid: 12,
    gid: 0,
    additionalGids: [0],
  });
});
