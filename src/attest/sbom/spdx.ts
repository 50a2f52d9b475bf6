/**
 * An SPDX 2.3 JSON document of the packages the scanner found: one root package for what was
 * scanned (the image, or the build context / a stage), which CONTAINS every found package;
 * each package carries its purl as a PACKAGE-MANAGER external reference and its licence as
 * an SPDX expression when the metadata states one.
 */
import { createHash } from "node:crypto";
import { VERSION } from "../../version.js";
import type { FoundPackage } from "./catalogers.js";
import { normalizeLicense, type ExtractedLicense } from "./licenses.js";

export const SPDX_PREDICATE = "https://spdx.dev/Document";

const SOURCE_INFO: Record<FoundPackage["ecosystem"], string> = {
  deb: "acquired package info from DPKG DB",
  apk: "acquired package info from APK DB",
  npm: "acquired package info from installed node module manifest file",
  python: "acquired package info from installed python package manifest file",
  go: "acquired package info from go module information",
};

const PURPOSE: Record<FoundPackage["ecosystem"], string> = {
  deb: "OPERATING_SYSTEM",
  apk: "OPERATING_SYSTEM",
  npm: "LIBRARY",
  python: "LIBRARY",
  go: "LIBRARY",
};

function shortHash(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 16);
}

function spdxId(kind: string, name: string, hash: string): string {
  const safe = name.replace(/[^A-Za-z0-9.-]+/g, "-").slice(0, 64);
  return `SPDXRef-${kind}-${safe}-${hash}`;
}

export interface SpdxOptions {
  /** what was scanned: the image name, or `context` / a stage name */
  name: string;
  /** SOURCE_DATE_EPOCH or now */
  created: Date;
}

/** The SPDX document; its namespace is derived from its content so equal scans give equal bytes. */
export function spdxDocument(
  packages: readonly FoundPackage[],
  o: SpdxOptions,
): Record<string, unknown> {
  const rootId = spdxId("DocumentRoot", o.name, shortHash(o.name));
  const extracted = new Map<string, ExtractedLicense>();
  const spdxPackages: Record<string, unknown>[] = [
    {
      name: o.name,
      SPDXID: rootId,
      downloadLocation: "NOASSERTION",
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: "NOASSERTION",
      copyrightText: "NOASSERTION",
      primaryPackagePurpose: "CONTAINER",
    },
  ];
  const relationships: Record<string, unknown>[] = [
    {
      spdxElementId: "SPDXRef-DOCUMENT",
      relationshipType: "DESCRIBES",
      relatedSpdxElement: rootId,
    },
  ];
  const ids = new Set<string>([rootId]);
  for (const p of packages) {
    let id = spdxId("Package", `${p.ecosystem}-${p.name}`, shortHash(p.purl, p.location));
    for (let n = 2; ids.has(id); n++) id = `${id}-${n}`;
    ids.add(id);
    const license = normalizeLicense(p.license);
    for (const e of license?.extracted ?? []) extracted.set(e.licenseId, e);
    const pkg: Record<string, unknown> = {
      name: p.name,
      SPDXID: id,
      versionInfo: p.version,
      downloadLocation: "NOASSERTION",
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: license?.expression ?? "NOASSERTION",
      copyrightText: "NOASSERTION",
      sourceInfo: `${SOURCE_INFO[p.ecosystem]}: ${p.location}`,
      externalRefs: [
        { referenceCategory: "PACKAGE-MANAGER", referenceType: "purl", referenceLocator: p.purl },
      ],
      primaryPackagePurpose: PURPOSE[p.ecosystem],
    };
    if (p.description) pkg.summary = p.description;
    spdxPackages.push(pkg);
    relationships.push({
      spdxElementId: rootId,
      relationshipType: "CONTAINS",
      relatedSpdxElement: id,
    });
  }
  const doc: Record<string, unknown> = {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: o.name,
    documentNamespace: "",
    creationInfo: {
      created: o.created.toISOString().replace(/\.\d{3}Z$/, "Z"),
      creators: [`Tool: kiln-${VERSION}`],
    },
    packages: spdxPackages,
    relationships,
  };
  if (extracted.size > 0) {
    doc.hasExtractedLicensingInfos = [...extracted.values()].map((e) => ({
      licenseId: e.licenseId,
      extractedText: e.extractedText,
    }));
  }
  doc.documentNamespace = `https://kiln.invalid/spdx/${encodeURIComponent(o.name)}-${shortHash(JSON.stringify(doc))}`;
  return doc;
}
