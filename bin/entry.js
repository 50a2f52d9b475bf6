// Runs one of kiln's compiled programs: the one-file CommonJS bundle dist/<name>.cjs while it is
// newer than the tsc output it was made from (it loads faster), else that output.
//
// The bundle is compiled with a V8 code cache kept next to it (<bundle>.<kind>.v8cache):
// compiling ~900 KB of JavaScript is a large part of a no-op build's start-up, and Node 20 has
// no module compile cache of its own. The cache is written at exit when it was missing or V8
// refused it (another Node, another bundle); it is only an optimisation, so a read-only install
// runs without one. It holds what the run that wrote it compiled, so each kind of command (the
// entry point's choice) has its own: a build runs much code that `--version` never does.
//
// bin/ is CommonJS (bin/package.json): Node's ES module loader costs ~40 ms of start-up here,
// and nothing on the bundle's path needs it.
"use strict";
const { existsSync, readFileSync, renameSync, statSync, writeFileSync } = require("node:fs");
const { createRequire } = require("node:module");
const { dirname, join } = require("node:path");
const { pathToFileURL } = require("node:url");
const { Script } = require("node:vm");

const root = join(__dirname, "..");

// bin/kiln moves NODE_EXTRA_CA_CERTS aside: Node would read the file and build its whole root
// store before any code runs (~35 ms here), for commands that make no HTTPS request. It is put
// back for the programs kiln starts and for kiln's HTTPS agents, which apply it when first made
// (src/registry/http.ts).
const deferredCa = process.env.KILN_NODE_EXTRA_CA_CERTS;
if (deferredCa !== undefined) {
  delete process.env.KILN_NODE_EXTRA_CA_CERTS;
  if (deferredCa !== "") process.env.NODE_EXTRA_CA_CERTS = deferredCa;
}

/**
 * name: the bundle (dist/<name>.cjs); main: the tsc output it bundles, relative to dist/; kind:
 * the kind of command, which names its code cache.
 */
function runEntry(name, main, kind) {
  const tscMain = join(root, "dist", main);
  const bundle = join(root, "dist", `${name}.cjs`);
  const mtime = (f) => statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? -1;
  if (!existsSync(tscMain)) {
    process.stderr.write(
      `error: ${name} is not built (${tscMain} is missing)\nhint: run 'npm run build' in ${root}\n`,
    );
    process.exit(1);
  }
  if (mtime(bundle) < mtime(tscMain)) {
    // the tsc output is ES modules; an import that fails reports itself as an uncaught rejection
    void import(pathToFileURL(tscMain).href);
    return;
  }
  runBundle(bundle, `${bundle}.${kind}.v8cache`);
}

function runBundle(bundle, cacheFile) {
  const cachedData = existsSync(cacheFile) ? readFileSync(cacheFile) : undefined;
  // the module wrapper CommonJS uses, so the bundle sees require, module, __filename
  const source = `(function (exports, require, module, __filename, __dirname) { ${readFileSync(bundle, "utf8")}\n})`;
  const script = new Script(source, { filename: bundle, cachedData });
  if (cachedData === undefined || script.cachedDataRejected === true) {
    process.once("exit", () => {
      const tmp = `${cacheFile}.${process.pid}`;
      try {
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile);
      } catch {
        // no cache this time (e.g. a read-only install): start-up is slower, nothing else
      }
    });
  }
  const module = { exports: {} };
  script
    .runInThisContext()
    .call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle));
}

module.exports = { runEntry };
