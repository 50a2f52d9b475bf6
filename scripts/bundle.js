// Bundles the compiled CLI and daemon (dist/cli/main.js, dist/daemon/main.js) into one file
// each (dist/kiln.cjs, dist/kilnd.cjs): start-up then reads and compiles one script instead of
// resolving ~150 modules. CommonJS, because bin/entry.js compiles it with a V8 code cache
// (vm.Script), which Node 20 offers for scripts only. Native modules stay outside (src/xattr.ts
// loads the xattr one on use). bin/kiln and bin/kilnd run a bundle only while it is newer than
// the tsc output it came from.
import { build } from "esbuild";
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
for (const [entry, out] of [
  ["dist/cli/main.js", "dist/kiln.cjs"],
  ["dist/daemon/main.js", "dist/kilnd.cjs"],
]) {
  // a cache made for the previous bundle would only be refused
  await rm(`${root}/${out}.v8cache`, { force: true });
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
    logLevel: "warning",
  });
}
