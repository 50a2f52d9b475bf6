// `kiln history`'s surface: docs/cli.md documents every subcommand and flag the CLI has.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { historyCommand } from "../../../src/cli/history.js";
import { repoRoot } from "../../fixtures/exec.js";

test("docs/cli.md documents every kiln history subcommand and its flags", async () => {
  const doc = await readFile(join(repoRoot, "docs", "cli.md"), "utf8");
  const section = doc.slice(doc.indexOf("## `kiln history`"), doc.indexOf("## Environment"));
  const subcommands = historyCommand().commands;
  assert.ok(subcommands.length >= 9);
  for (const sub of subcommands) {
    assert.ok(section.includes(`\`kiln history ${sub.name()}`), `kiln history ${sub.name()}`);
    for (const o of sub.options) {
      const named = [o.long, o.short].filter((f) => f !== undefined);
      assert.ok(
        named.some((f) => new RegExp(`${f}(?![\\w-])`).test(section)),
        `kiln history ${sub.name()} ${o.flags}`,
      );
    }
  }
});
