// -o/--push/--load/--annotation → outputs, as buildx spells them, and every conflict refused
// with E_FLAG before anything is built.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  parseAnnotations,
  parseOutput,
  planOutputs,
  type OutputFlags,
} from "../../../src/cli/options.js";
import { isKilnError } from "../../../src/errors.js";

const plan = (f: Partial<OutputFlags>) =>
  planOutputs({ output: [], tag: [], annotation: [], platformCount: 1, ...f });

function refused(fn: () => unknown, message: RegExp, hint?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isKilnError(e), String(e));
    assert.equal(e.code, "E_FLAG");
    assert.match(e.message, message);
    if (hint) assert.match(e.hint ?? "", hint);
    return true;
  });
}

test("type=registry is image,push=true with the -t names; every image attribute is read", () => {
  assert.deepEqual(parseOutput("type=registry", ["r/a:1", "r/a:latest"]), {
    type: "image",
    names: ["r/a:1", "r/a:latest"],
    push: true,
    pushByDigest: false,
    nameCanonical: false,
    ociMediaTypes: true,
    compression: "gzip",
    compressionLevel: undefined,
    forceCompression: false,
    annotations: {},
    insecure: false,
  });
  const o = parseOutput(
    'type=image,"name=r/x:1,r/y:2",push=true,push-by-digest=true,name-canonical=true,oci-mediatypes=false,compression=uncompressed,force-compression=1,registry.insecure=true',
    ["ignored:1"],
  );
  assert.equal(o.type, "image");
  if (o.type !== "image") return;
  assert.deepEqual(o.names, ["r/x:1", "r/y:2"]);
  assert.ok(o.push && o.pushByDigest && o.nameCanonical && o.forceCompression && o.insecure);
  assert.equal(o.ociMediaTypes, false);
  assert.equal(o.compression, "uncompressed");
});

test("annotation attributes of -o become TYPE:KEY entries", () => {
  const o = parseOutput(
    "type=image,annotation.a=1,annotation-index.b=2,annotation-manifest[linux/arm64].c=3,annotation-index-descriptor.d=4",
    [],
  );
  assert.ok(o.type === "image");
  assert.deepEqual(o.annotations, {
    a: "1",
    "index:b": "2",
    "manifest[linux/arm64]:c": "3",
    "index-descriptor:d": "4",
  });
});

test("oci/docker/local/tar: dest, tar=false, bare paths and -", () => {
  assert.deepEqual(parseOutput("type=oci,dest=out.tar", ["a:1"]), {
    type: "oci",
    dest: "out.tar",
    tar: true,
    names: ["a:1"],
    annotations: {},
  });
  assert.deepEqual(parseOutput("type=oci,tar=false,dest=dir", []), {
    type: "oci",
    dest: "dir",
    tar: false,
    names: [],
    annotations: {},
  });
  assert.deepEqual(parseOutput("out", []), { type: "local", dest: "out" });
  assert.deepEqual(parseOutput("-", []), { type: "tar", dest: "-" });
  assert.deepEqual(parseOutput("type=tar,dest=-,platform-split=false", []), {
    type: "tar",
    dest: "-",
    platformSplit: false,
  });
});

test("bad -o values: unknown type or attribute, missing dest, bad compression settings", () => {
  refused(
    () => parseOutput("type=weird,dest=x", []),
    /unknown output type weird/,
    /image, registry/,
  );
  refused(
    () => parseOutput("type=registry,compresion=zstd", []),
    /has no attribute "compresion"/,
    /compression-level/,
  );
  refused(() => parseOutput("type=local,dest=x,name=a", []), /has no attribute "name"/);
  refused(() => parseOutput("type=oci", []), /dest is required/, /dest=-/);
  refused(() => parseOutput("type=local,dest=-", []), /cannot go to stdout/, /type=tar/);
  refused(
    () => parseOutput("type=docker,tar=false,dest=d", []),
    /always writes a tarball/,
    /type=oci,tar=false/,
  );
  refused(() => parseOutput("type=image,compression=lz4", []), /unknown compression lz4/);
  refused(() => parseOutput("type=image,compression=gzip,compression-level=10", []), /from 0 to 9/);
  refused(() => parseOutput("type=image,compression-level=x", []), /whole number/);
  refused(
    () => parseOutput("type=registry,compression=zstd,oci-mediatypes=false", []),
    /zstd layers need OCI media types/,
  );
  refused(() => parseOutput("type=image,push=maybe", []), /expected true or false/);
  const zstd = parseOutput("type=image,compression=zstd,compression-level=22", []);
  assert.ok(zstd.type === "image" && zstd.compressionLevel === 22);
});

test("--push marks image outputs, or adds a registry output; --load keeps a copy", () => {
  assert.deepEqual(
    plan({ push: true, tag: ["r/a:1"] }).outputs.map((o) => o.type === "image" && o.push),
    [true],
  );
  const withOci = plan({ push: true, tag: ["r/a:1"], output: ["type=oci,dest=a.tar"] });
  assert.deepEqual(
    withOci.outputs.map((o) => o.type),
    ["oci", "image"],
  );
  const both = plan({ push: true, load: true, tag: ["r/a:1"] });
  assert.deepEqual(
    both.outputs.map((o) => o.type === "image" && o.push),
    [true, false],
  );
  assert.equal(both.implicit, false);
});

test("no output at all: an implicit store output named by -t", () => {
  const p = plan({ tag: ["r/a:1"] });
  assert.equal(p.implicit, true);
  assert.deepEqual(
    p.outputs.map((o) => o.type === "image" && !o.push && o.names),
    [["r/a:1"]],
  );
});

test("--annotation goes to every image-writing output, typed keys validated", () => {
  const p = plan({
    output: ["type=oci,dest=a.tar", "type=local,dest=d"],
    annotation: ["index,manifest:org.example=1", "plain=2"],
  });
  const oci = p.outputs[0]!;
  assert.deepEqual(oci.type === "oci" && oci.annotations, {
    "index,manifest:org.example": "1",
    plain: "2",
  });
  assert.deepEqual(parseAnnotations(["manifest[linux/arm64]:k=v=w"]), {
    "manifest[linux/arm64]:k": "v=w",
  });
  refused(() => parseAnnotations(["nothing"]), /expected \[TYPE:\]KEY=VALUE/);
  refused(
    () => parseAnnotations(["layer:k=v"]),
    /unknown annotation type "layer"/,
    /index-descriptor/,
  );
  refused(() => parseAnnotations(["index[linux/amd64]:k=v"]), /cannot name a platform/);
});

test("conflicts are refused before the build, naming the flags", () => {
  refused(() => plan({ push: true }), /pushing needs an image name/, /-t/);
  refused(() => plan({ output: ["type=registry"] }), /pushing needs an image name/);
  refused(
    () => plan({ output: ["type=oci,dest=-", "-"] }),
    /type=oci,dest=- and type=tar,dest=- both write to stdout/,
  );
  refused(
    () => plan({ output: ["type=local,dest=x", "type=oci,tar=false,dest=x"] }),
    /two outputs write to x/,
  );
  refused(
    () =>
      plan({
        output: ["type=registry,name=r/a:1", "type=registry,name=r/a:1,push-by-digest=true"],
      }),
    /r\/a:1 is pushed by two outputs/,
  );
  refused(
    () => plan({ output: ["type=registry,name=r/a:1", "type=image,name=r/b:1,compression=zstd"] }),
    /image outputs disagree on compression \(gzip vs zstd\)/,
    /one image per build/,
  );
  refused(
    () => plan({ output: ["type=docker,dest=d.tar"], platformCount: 2 }),
    /cannot hold 2 platforms: a `docker load` tarball has one/,
    /--platform linux\/amd64.*type=oci/,
  );
  refused(
    () => plan({ output: ["type=tar,dest=t.tar,platform-split=false"], platformCount: 3 }),
    /platform-split=false cannot hold 3 platforms/,
  );
  // one platform: both are fine
  assert.equal(plan({ output: ["type=docker,dest=d.tar"], platformCount: 1 }).outputs.length, 1);
});
