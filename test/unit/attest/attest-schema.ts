/**
 * Validation of attestations against the in-toto Statement, SLSA provenance and SPDX 2.3
 * JSON schemas kept in test/fixtures/schemas (see its LICENSE.md).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import addFormatsModule from "ajv-formats";

const dir = join(import.meta.dirname, "../../fixtures/schemas");
const ajv = new Ajv({ strict: false, allErrors: true });
(addFormatsModule as unknown as (a: Ajv) => void)(ajv);

export type AttestSchema = "statement" | "slsa-v1" | "slsa-v0.2" | "spdx-2.3";

const files: Record<AttestSchema, string> = {
  statement: "in-toto-statement-v1.schema.json",
  "slsa-v1": "slsa-provenance-v1.schema.json",
  "slsa-v0.2": "slsa-provenance-v0.2.schema.json",
  "spdx-2.3": "spdx-2.3.schema.json",
};

const validators = new Map(
  Object.entries(files).map(([name, file]) => [
    name,
    ajv.compile(JSON.parse(readFileSync(join(dir, file), "utf8")) as object),
  ]),
);

/** The schema errors as text, or "" when `doc` is valid. */
export function attestSchemaErrors(name: AttestSchema, doc: unknown): string {
  const v = validators.get(name)!;
  return v(doc) ? "" : ajv.errorsText(v.errors, { separator: "\n" });
}

/** Validates a statement and its predicate by the predicate type. */
export function statementErrors(stmt: { predicateType?: string; predicate?: unknown }): string {
  const errors = [attestSchemaErrors("statement", stmt)];
  const predicateSchema: Record<string, AttestSchema> = {
    "https://slsa.dev/provenance/v1": "slsa-v1",
    "https://slsa.dev/provenance/v0.2": "slsa-v0.2",
    "https://spdx.dev/Document": "spdx-2.3",
  };
  const p = predicateSchema[stmt.predicateType ?? ""];
  errors.push(
    p === undefined
      ? `unknown predicate type ${stmt.predicateType}`
      : attestSchemaErrors(p, stmt.predicate),
  );
  return errors.filter((e) => e !== "").join("\n");
}
