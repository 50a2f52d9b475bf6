import { test } from "node:test";
import assert from "node:assert/strict";
import {
  encodeJSON,
  goImageConfig,
  parseConfig,
  type ImageConfig,
} from "../../../src/oci/index.js";

test("goImageConfig: BuildKit's bytes — sorted top level, struct order inside, unknown and empty fields gone", () => {
  const fromDocker = {
    os: "linux",
    architecture: "arm",
    variant: "v7",
    container_config: { Hostname: "abc" },
    docker_version: "20.10",
    author: "",
    config: {
      Cmd: ["sh"],
      Hostname: "",
      AttachStdout: false,
      Env: ["PATH=/bin"],
      Labels: {},
      ArgsEscaped: false,
      OnBuild: null,
      Healthcheck: { Retries: 3, Test: ["CMD", "true"], Interval: 0 },
      User: "app",
    },
    rootfs: { diff_ids: ["sha256:" + "a".repeat(64)], type: "layers" },
    history: [
      { empty_layer: true, comment: "c", created_by: "ENV X", created: "1970-01-01T00:00:00Z" },
    ],
    created: "1970-01-01T00:00:00Z",
  } as unknown as ImageConfig;
  assert.equal(
    encodeJSON(goImageConfig(fromDocker)).toString(),
    '{"architecture":"arm","config":{"User":"app","Env":["PATH=/bin"],"Cmd":["sh"],' +
      '"Healthcheck":{"Test":["CMD","true"],"Retries":3}},"created":"1970-01-01T00:00:00Z",' +
      '"history":[{"created":"1970-01-01T00:00:00Z","created_by":"ENV X","comment":"c","empty_layer":true}],' +
      '"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:' +
      "a".repeat(64) +
      '"]},"variant":"v7"}',
  );
  // config is a Go struct: always written, even empty; an empty history is omitted; no layers
  // is a nil diff_ids slice, null (BuildKit's FROM scratch image)
  const bare = goImageConfig({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [] },
    history: [],
  });
  assert.equal(
    encodeJSON(bare).toString(),
    '{"architecture":"amd64","config":{},"os":"linux","rootfs":{"type":"layers","diff_ids":null}}',
  );
  // and kiln reads such a config back as no layers
  assert.deepEqual(parseConfig(encodeJSON(bare)).rootfs.diff_ids, []);
});

test("encodeJSON escapes <, >, &, U+2028 and U+2029 as Go's encoding/json does", () => {
  const doc = { created_by: "RUN a > b && c < d \u2028\u2029 é" };
  const text = encodeJSON(doc).toString();
  assert.equal(
    text,
    '{"created_by":"RUN a \\u003e b \\u0026\\u0026 c \\u003c d \\u2028\\u2029 é"}',
  );
  assert.deepEqual(JSON.parse(text), doc);
});
