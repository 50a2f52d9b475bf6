import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mountDefaults,
  parseGoDuration,
  parseRunDevice,
  parseRunMount,
  type RunMount,
} from "../../../src/frontend/dockerfile/index.js";
import { isKilnError } from "../../../src/errors.js";

const id = (w: string): string => w;
const mount = (v: string): RunMount => parseRunMount(v, id);
const bad = (v: string, re: RegExp): void => {
  assert.throws(
    () => mount(v),
    (e: unknown) => isKilnError(e) && e.code === "E_DOCKERFILE_FLAG_VALUE" && re.test(e.message),
  );
};

test("bind is the default type and read-only by default", () => {
  const m = mount("target=/src");
  assert.deepEqual([m.type, m.readOnly, m.target], ["bind", true, "/src"]);
  assert.equal(mount("target=/src,rw").readOnly, false);
  assert.equal(mount("target=/src,readwrite=true").readOnly, false);
  assert.equal(mount("type=bind,source=x,dst=/y,from=build").from, "build");
});

test("key aliases and case-insensitive keys", () => {
  const m = mount("TYPE=Cache,DESTINATION=/c,ID=x,SHARING=Locked");
  assert.deepEqual([m.type, m.target, m.id, m.sharing], ["cache", "/c", "x", "locked"]);
  assert.equal(mount("src=a,dst=/b").source, "a");
});

test("cache defaults: writable, shared, id from cleaned target, 0755", () => {
  const m = mount("type=cache,target=/root/.cache/go-build/");
  assert.equal(m.readOnly, false);
  assert.deepEqual(mountDefaults(m), {
    id: "/root/.cache/go-build",
    sharing: "shared",
    target: "/root/.cache/go-build/",
    mode: 0o755,
  });
  assert.equal(mountDefaults(mount("type=cache,target=/x,id=mine,sharing=private")).id, "mine");
});

test("secret defaults: /run/secrets/<id>, or env only", () => {
  assert.deepEqual(mountDefaults(mount("type=secret,id=npmrc")), {
    id: "npmrc",
    sharing: "shared",
    target: "/run/secrets/npmrc",
    mode: undefined,
  });
  assert.equal(mountDefaults(mount("type=secret,target=/etc/token")).id, "token");
  assert.equal(mountDefaults(mount("type=secret,id=tok,env=TOKEN")).target, undefined);
  assert.equal(mountDefaults(mount("type=secret,id=tok,uid=1000")).mode, 0o400);
  const m = mount("type=secret,id=aws,required,mode=0440,uid=1,gid=2");
  assert.deepEqual([m.required, m.mode, m.uid, m.gid, m.readOnly], [true, 0o440, 1, 2, true]);
});

test("ssh defaults to id 'default'", () => {
  const m = mount("type=ssh");
  assert.equal(mountDefaults(m).id, "default");
  assert.equal(mount("type=ssh,required=false").required, false);
});

test("tmpfs size in binary units", () => {
  assert.equal(mount("type=tmpfs,target=/t,size=64m").sizeLimit, 64 * 1024 * 1024);
  assert.equal(mount("type=tmpfs,target=/t,size=1.5GiB").sizeLimit, 1.5 * 1024 ** 3);
  assert.equal(mount("type=tmpfs,target=/t,size=100").sizeLimit, 100);
  assert.equal(mount("type=tmpfs,target=/t").readOnly, false);
  bad("type=tmpfs,target=/t,size=lots", /invalid value for size/);
});

test("values are expanded with the given expander", () => {
  const env: Record<string, string> = { T: "cache", D: "/cache" };
  const m = parseRunMount("type=$T,target=$D", (w) =>
    w.replace(/\$(\w+)/g, (_, n: string) => env[n] ?? ""),
  );
  assert.deepEqual([m.type, m.target], ["cache", "/cache"]);
});

test("CSV quoting", () => {
  assert.equal(mount('type=bind,"target=/a,b",source=x').target, "/a,b");
  assert.equal(mount('type=bind,"target=/a""b"').target, '/a"b');
  bad("", /EOF/);
  bad('target=/a"b', /bare "/);
});

test("mount validation errors", () => {
  bad("type=volume", /unsupported mount type "volume"/);
  bad("type=cahce,target=/x", /did you mean cache\?/);
  bad("type=bind,target=/x,sharing=shared", /invalid cache sharing/);
  bad("type=cache,target=/x,sharing=everyone", /unsupported sharing value/);
  bad("type=bind,required", /unexpected key 'required'/);
  bad("type=bind,target=/x,size=1m", /unexpected key 'size'/);
  bad("type=bind,target=/x,mode=0644", /mode not allowed for "bind"/);
  bad("type=cache,target=/x,mode=0999", /invalid value 0999 for mode/);
  bad("type=cache,target=/x,uid=-1", /invalid value -1 for uid/);
  bad("type=bind,tagret=/x", /unexpected key 'tagret'.*did you mean target\?/);
  bad("type=bind,foo", /must be a key=value pair/);
  bad("type=bind,ro=perhaps", /invalid value for ro/);
  bad("type=secret", /one of source, target required/);
  bad("type=secret,id=a,from=b", /should not have a from/);
  bad("type=secret,id=a,source=b", /both source and id/);
});

test("devices", () => {
  assert.deepEqual(parseRunDevice("/dev/fuse"), { name: "/dev/fuse", required: false });
  assert.deepEqual(parseRunDevice("name=vendor.com/x=all,required=true"), {
    name: "vendor.com/x=all",
    required: true,
  });
  assert.throws(() => parseRunDevice("a,b"), /must be a key=value pair/);
  assert.throws(() => parseRunDevice("a,name=b"), /already set/);
});

test("Go durations", () => {
  const cases: [string, number | undefined][] = [
    ["0", 0],
    ["1s", 1e9],
    ["1.5h", 5400e9],
    ["1h2m3s", 3723e9],
    ["300ms", 3e8],
    ["2us", 2000],
    ["2\u00b5s", 2000],
    ["10ns", 10],
    ["-1m", -60e9],
    ["+5s", 5e9],
    [".5s", 5e8],
    ["1.s", 1e9],
    ["", undefined],
    ["10", undefined],
    ["1sec", undefined],
    ["s", undefined],
    [".s", undefined],
    ["1d", undefined],
    ["9999999999999h", undefined],
  ];
  for (const [input, ns] of cases) assert.equal(parseGoDuration(input), ns, input);
});
