/**
 * Attestations of local and tar outputs, as BuildKit's local exporter writes them: one
 * in-toto statement file per attestation (`provenance.json`, `sbom.spdx.json`) beside the
 * result's files, whose subjects are every regular file of the result by sha256.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { opendir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { KilnError } from "../errors.js";
import { fileSubject, statementOf, type Attestation, type Subject } from "./storage.js";

async function fileSubjects(root: string): Promise<Subject[]> {
  const out: Subject[] = [];
  const stack = [""];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const dirs: string[] = [];
    for await (const e of await opendir(join(root, rel))) {
      const path = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) dirs.push(path);
      else if (e.isFile()) {
        const h = createHash("sha256");
        await pipeline(createReadStream(join(root, path)), h);
        out.push(fileSubject(path, `sha256:${h.digest("hex")}`));
      }
    }
    stack.push(...dirs.sort().reverse());
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Writes the non-inline-only attestations into `dir` (mode 0600, mtime clamped by the caller). */
export async function writeAttestationFiles(
  dir: string,
  attestations: readonly Attestation[],
): Promise<void> {
  const files = attestations.filter((a) => !a.inlineOnly);
  if (files.length === 0) return;
  const subject = await fileSubjects(dir);
  const names = new Set<string>();
  for (const a of files) {
    const name = basename(a.path);
    if (names.has(name)) {
      throw new KilnError("E_OUTPUT", `duplicate attestation path name ${name}`, {
        hint: "give each attestation its own filename=",
      });
    }
    names.add(name);
    const body = JSON.stringify(statementOf(a, subject), null, 2);
    await writeFile(join(dir, name), body, { mode: 0o600 });
  }
}
