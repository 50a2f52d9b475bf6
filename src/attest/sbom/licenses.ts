/**
 * Package metadata licences → SPDX license expressions. Known SPDX ids (and common spellings
 * of them) pass; anything else becomes a `LicenseRef-…` whose text the document carries in
 * `hasExtractedLicensingInfos`, so every `licenseDeclared` is a valid expression.
 */

/** The SPDX ids packages in images commonly declare. */
const KNOWN = new Set(
  [
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "BlueOak-1.0.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "curl",
    "EPL-1.0",
    "EPL-2.0",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GPL-1.0-or-later",
    "GPL-2.0",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "Libpng",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "OpenSSL",
    "PostgreSQL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Unicode-DFS-2016",
    "Unlicense",
    "Vim",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
    "GPL-2.0-with-classpath-exception",
  ].map((s) => [s.toLowerCase(), s] as const),
);
const KNOWN_IDS = new Map(KNOWN);

const EXCEPTIONS = new Map(
  ["Classpath-exception-2.0", "GCC-exception-3.1", "LLVM-exception", "OpenSSL-exception"].map(
    (s) => [s.toLowerCase(), s] as const,
  ),
);

/** Names people write instead of the id. */
const ALIASES = new Map<string, string>([
  ["mit license", "MIT"],
  ["the mit license", "MIT"],
  ["apache 2.0", "Apache-2.0"],
  ["apache-2", "Apache-2.0"],
  ["apache 2", "Apache-2.0"],
  ["apache2", "Apache-2.0"],
  ["apache license 2.0", "Apache-2.0"],
  ["apache license, version 2.0", "Apache-2.0"],
  ["apache software license", "Apache-2.0"],
  ["isc license", "ISC"],
  ["gplv2", "GPL-2.0-only"],
  ["gplv3", "GPL-3.0-only"],
  ["lgplv2", "LGPL-2.0-only"],
  ["mpl 2.0", "MPL-2.0"],
  ["psf", "PSF-2.0"],
  ["public domain", "LicenseRef-Public-Domain"],
  ["bsd 3-clause", "BSD-3-Clause"],
  ["bsd-3", "BSD-3-Clause"],
  ["bsd 2-clause", "BSD-2-Clause"],
]);

export interface ExtractedLicense {
  licenseId: string;
  extractedText: string;
}

export interface NormalizedLicense {
  expression: string;
  extracted: ExtractedLicense[];
}

function refFor(text: string): ExtractedLicense {
  const id = text
    .replace(/[^A-Za-z0-9.-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
  return { licenseId: `LicenseRef-${id || "unknown"}`, extractedText: text };
}

/** One id as SPDX spells it, or undefined when it is no SPDX id we know. */
function knownId(token: string): string | undefined {
  if (/^LicenseRef-[A-Za-z0-9.-]+$/.test(token)) return token;
  const plus = token.endsWith("+");
  const base = KNOWN_IDS.get((plus ? token.slice(0, -1) : token).toLowerCase());
  return base === undefined ? undefined : plus ? `${base}+` : base;
}

/** Parses `a AND (b OR c) WITH e`; consecutive ids (apk writes "MIT BSD") are joined with AND. */
function asExpression(raw: string): string | undefined {
  const tokens = raw
    .replace(/([()])/g, " $1 ")
    .split(/\s+/)
    .filter((t) => t !== "");
  const out: string[] = [];
  let depth = 0;
  let expectId = true;
  let afterWith = false;
  for (const t of tokens) {
    const upper = t.toUpperCase();
    if (t === "(") {
      if (!expectId) out.push("AND");
      out.push("(");
      depth++;
      expectId = true;
    } else if (t === ")") {
      if (expectId || depth === 0) return undefined;
      out.push(")");
      depth--;
    } else if (upper === "AND" || upper === "OR" || upper === "WITH") {
      if (expectId) return undefined;
      out.push(upper);
      expectId = true;
      afterWith = upper === "WITH";
    } else {
      if (!expectId) out.push("AND");
      const id = afterWith ? EXCEPTIONS.get(t.toLowerCase()) : knownId(t);
      if (id === undefined) return undefined;
      out.push(id);
      expectId = false;
      afterWith = false;
    }
  }
  if (expectId || depth !== 0 || out.length === 0) return undefined;
  return out.join(" ").replace(/\( /g, "(").replace(/ \)/g, ")");
}

/** A licence as metadata states it → an SPDX expression (undefined when nothing is stated). */
export function normalizeLicense(raw: string | undefined): NormalizedLicense | undefined {
  const text = raw?.trim();
  if (!text || text.toUpperCase() === "UNKNOWN") return undefined;
  const alias = ALIASES.get(text.toLowerCase());
  if (alias !== undefined) {
    return alias.startsWith("LicenseRef-")
      ? { expression: alias, extracted: [{ licenseId: alias, extractedText: text }] }
      : { expression: alias, extracted: [] };
  }
  const expr = asExpression(text);
  if (expr !== undefined) return { expression: expr, extracted: [] };
  const ref = refFor(text);
  return { expression: ref.licenseId, extracted: [ref] };
}
