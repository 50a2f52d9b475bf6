// Bundles the compiled CLI and daemon (dist/cli/main.js, dist/daemon/main.js) into one file
// each (dist/kiln.mjs, dist/kilnd.mjs): start-up then reads and compiles one module instead
// of resolving ~150. Native modules stay outside (src/xattr.ts loads the xattr one on use).
// bin/kiln and bin/kilnd run a bundle only while it is newer than the tsc output it came from.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
for (const [entry, out] of [
  ["dist/cli/main.js", "dist/kiln.mjs"],
  ["dist/daemon/main.js", "dist/kilnd.mjs"],
]) {
  await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    // native modules stay outside (they locate their .node files next to themselves)
    external: ["@napi-rs/xattr", "better-sqlite3"],
    // commander and the other CommonJS dependencies call require() for node built-ins
    banner: {
      js: 'import { createRequire as __kilnRequire } from "node:module"; const require = __kilnRequire(import.meta.url);',
    },
    logLevel: "warning",
  });
}
