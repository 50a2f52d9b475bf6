// Bundles the compiled CLI and daemon (dist/cli/main.js, dist/daemon/main.js) into one file
// each (dist/kiln.cjs, dist/kilnd.cjs), and the worker thread that unpacks large layers
// (dist/apply-worker.cjs): start-up then reads and compiles one script instead of resolving
// ~150 modules. CommonJS, because bin/entry.js compiles it with a V8 code cache
// (vm.Script), which Node 20 offers for scripts only. Native modules stay outside (src/xattr.ts
// loads the xattr one on use). bin/kiln and bin/kilnd run a bundle only while it is newer than
// the tsc output it came from.
import { build } from "esbuild";
import { readdir, rm } from "node:fs/promises";
import { basename } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * Node built-ins that many commands never use (a no-op build makes no HTTPS request, compresses
 * nothing, starts no process): each is a module of getters that loads it on first use, instead
 * of a require() when the bundle starts (~10 ms of start-up here for these five).
 */
const LAZY_BUILTINS = [
  "node:child_process",
  "node:https",
  "node:readline",
  "node:tls",
  "node:zlib",
];
const lazyBuiltins = {
  name: "lazy-builtins",
  setup(b) {
    const names = new RegExp(`^(${LAZY_BUILTINS.join("|")})$`);
    b.onResolve({ filter: names }, (args) =>
      // the getter module's own require stays a plain one
      args.namespace === "lazy-builtin"
        ? { path: args.path, external: true }
        : { path: args.path, namespace: "lazy-builtin" },
    );
    b.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => ({
      loader: "js",
      contents: [
        "let m;",
        `const keys = ${JSON.stringify(Object.keys(createRequire(import.meta.url)(args.path)))};`,
        "for (const k of keys)",
        `  Object.defineProperty(module.exports, k, { enumerable: true, get: () => (m ??= require(${JSON.stringify(args.path)}))[k] });`,
      ].join("\n"),
    }));
  },
};
for (const [entry, out] of [
  ["dist/cli/main.js", "dist/kiln.cjs"],
  ["dist/daemon/main.js", "dist/kilnd.cjs"],
  // the worker thread that unpacks large layers (src/archive/apply-thread.ts finds it here)
  ["dist/archive/apply-worker.js", "dist/apply-worker.cjs"],
]) {
  // caches made for the previous bundle would only be refused
  const name = basename(out);
  for (const f of await readdir(`${root}/dist`))
    if (f.startsWith(`${name}.`) && f.endsWith(".v8cache"))
      await rm(`${root}/dist/${f}`, { force: true });
  await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    // native modules stay outside (they locate their .node files next to themselves)
    external: ["@napi-rs/xattr", "better-sqlite3"],
    // what import.meta.url says in an ES module, for the code that locates files next to itself
    define: { "import.meta.url": "__kilnModuleUrl" },
    banner: { js: 'const __kilnModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
    // smaller to read, hash (the code cache check) and compile; names stay for messages
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [lazyBuiltins],
    logLevel: "warning",
  });
}
