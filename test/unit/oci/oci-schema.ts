/**
 * Validate documents against the image-spec's own JSON schemas. They are draft-04 and refer to
 * each other by file name relative to their `id`; ajv 8 reads them once every schema gets an `$id`
 * under one base (so `defs.json` etc. resolve as siblings) and nested draft-04 `id`s are dropped.
 */
import { readFileSync, readdirSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";

const dir = "/work/shared/oci-image-spec-schemas";
const base = "https://schemas.kiln.test/";

function normalise(node: unknown, top: boolean): unknown {
  if (Array.isArray(node)) return node.map((n) => normalise(n, false));
  if (typeof node !== "object" || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$schema" || (k === "id" && typeof v === "string" && !top)) continue;
    if (k === "id" && top) continue;
    out[k] = k === "properties" ? normaliseProps(v) : normalise(v, false);
  }
  return out;
}

// Property names are data, not keywords: a property literally called "id" must survive.
function normaliseProps(props: unknown): unknown {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(props as Record<string, unknown>))
    out[k] = normalise(v, false);
  return out;
}

const ajv = new Ajv({ strict: false, allErrors: true });
(addFormatsModule as unknown as (a: Ajv) => void)(ajv);
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
  const schema = normalise(JSON.parse(readFileSync(`${dir}/${file}`, "utf8")), true) as Record<
    string,
    unknown
  >;
  ajv.addSchema({ ...schema, $id: base + file });
}

function validator(file: string): ValidateFunction {
  const v = ajv.getSchema(base + file);
  if (v === undefined) throw new Error(`schema ${file} not loaded`);
  return v;
}

export type SchemaName = "manifest" | "index" | "config" | "layout" | "descriptor";

const files: Record<SchemaName, string> = {
  manifest: "image-manifest-schema.json",
  index: "image-index-schema.json",
  config: "config-schema.json",
  layout: "image-layout-schema.json",
  descriptor: "content-descriptor.json",
};

/** Returns the schema errors as text, or "" when the document is valid. */
export function schemaErrors(name: SchemaName, doc: unknown): string {
  const v = validator(files[name]);
  if (v(doc)) return "";
  return ajv.errorsText(v.errors);
}
