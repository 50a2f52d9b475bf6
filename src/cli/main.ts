import { Command } from "commander";
import { isKilnError, messageOf } from "../errors.js";
import { VERSION } from "../version.js";
import { buildCommand } from "./build.js";
import { duCommand, pruneCommand } from "./du.js";
import { imagesCommand, pushCommand } from "./images.js";
import { binfmtCommand, platformsCommand } from "./emulation.js";
import { imagetoolsCommand } from "./imagetools.js";
import { builderCommand } from "./builder.js";
import { historyCommand } from "./history.js";

function program(): Command {
  const root = new Command("kiln")
    .description("Build multi-platform container images from Dockerfiles")
    .version(VERSION, "-v, --version", "print kiln's version")
    .showHelpAfterError()
    .enablePositionalOptions();
  root.addCommand(buildCommand());
  root.addCommand(duCommand());
  root.addCommand(pruneCommand());
  root.addCommand(imagesCommand());
  root.addCommand(pushCommand());
  root.addCommand(platformsCommand());
  root.addCommand(binfmtCommand());
  root.addCommand(imagetoolsCommand());
  root.addCommand(builderCommand());
  root.addCommand(historyCommand());
  return root;
}

/** Runs the CLI; every error leaves as one readable message, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (e) {
    if (isKilnError(e)) {
      process.stderr.write(`error: ${e.message}\n`);
      if (e.hint !== undefined) process.stderr.write(`hint: ${e.hint}\n`);
      return 1;
    }
    process.stderr.write(`error: ${messageOf(e)}\n`);
    if (process.env.KILN_DEBUG) process.stderr.write(`${String((e as Error).stack)}\n`);
    return 1;
  }
}

// not a top-level await: the bundle that runs this is a CommonJS script (scripts/bundle.js)
void main(process.argv).then((code) => {
  process.exitCode = code;
});
