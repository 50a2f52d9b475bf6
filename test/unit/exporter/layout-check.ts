// Checks an OCI image layout the way an independent reader would: every document kiln wrote
// (oci-layout, index.json, indexes, manifests, configs) against the image-spec JSON schemas,
// and every blob against the digest and size its descriptor gives.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { schemaErrors, type SchemaName } from "../oci/oci-schema.js";
import { statementErrors } from "../attest/attest-schema.js";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface LayoutSummary {
  index: { manifests: Descriptor[] };
  /** every index/manifest/config document, by digest */
  documents: Map<string, Record<string, unknown>>;
  /** how many documents were checked against a schema */
  validated: number;
}

const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

/** Throws with the schema's complaints when a document does not validate. */
export function assertSchema(name: SchemaName, doc: unknown, what: string): void {
  const errors = schemaErrors(name, doc);
  assert.equal(errors, "", `${what} does not validate against the ${name} schema: ${errors}`);
}

export async function checkLayout(dir: string): Promise<LayoutSummary> {
  const layout: unknown = JSON.parse(await readFile(join(dir, "oci-layout"), "utf8"));
  assertSchema("layout", layout, "oci-layout");
  const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8")) as {
    manifests: Descriptor[];
  };
  assertSchema("index", index, "index.json");
  let validated = 2;
  const documents = new Map<string, Record<string, unknown>>();
  const blob = async (d: Descriptor): Promise<Buffer> => {
    const bytes = await readFile(join(dir, "blobs", "sha256", d.digest.slice("sha256:".length)));
    assert.equal(bytes.length, d.size, `size of ${d.digest}`);
    assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, d.digest);
    return bytes;
  };
  const visit = async (d: Descriptor): Promise<void> => {
    assertSchema("descriptor", d, `descriptor of ${d.digest}`);
    const doc = JSON.parse((await blob(d)).toString("utf8")) as Record<string, unknown>;
    documents.set(d.digest, doc);
    validated++;
    if (INDEX_TYPES.has(d.mediaType)) {
      assertSchema("index", doc, `index ${d.digest}`);
      for (const child of doc.manifests as Descriptor[]) await visit(child);
      return;
    }
    assertSchema("manifest", doc, `manifest ${d.digest}`);
    const config = doc.config as Descriptor;
    if (config.mediaType === "application/vnd.oci.empty.v1+json") {
      // an attestation manifest: the empty config, layers are in-toto statements
      assert.equal((await blob(config)).toString(), "{}");
      for (const layer of doc.layers as Descriptor[]) {
        const stmt = JSON.parse((await blob(layer)).toString("utf8")) as Record<string, unknown>;
        assert.equal(statementErrors(stmt), "", `statement ${layer.digest}`);
        documents.set(layer.digest, stmt);
        validated++;
      }
      return;
    }
    const configDoc = JSON.parse((await blob(config)).toString("utf8")) as Record<string, unknown>;
    assertSchema("config", configDoc, `config ${config.digest}`);
    documents.set(config.digest, configDoc);
    validated++;
    for (const layer of doc.layers as Descriptor[]) await blob(layer);
  };
  for (const d of index.manifests) await visit(d);
  return { index, documents, validated };
}
