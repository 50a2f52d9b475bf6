/** `kiln builder create|ls|inspect|use|rm`: named sets of kilnd nodes for `kiln build --builder`. */
import { resolve } from "node:path";
import { Command } from "commander";
import { KilnError } from "../errors.js";
import {
  NodeClient,
  findBuilder,
  loadBuilders,
  saveBuilders,
  type BuilderNode,
} from "../client/index.js";
import { parseAddress } from "../daemon/index.js";
import { formatAll, parsePlatformList } from "../platform/index.js";

const collect = (v: string, prev: string[]): string[] => [...prev, v];
const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface CreateFlags {
  name?: string;
  node?: string;
  platform: string[];
  append?: boolean;
  use?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
}

export function builderCommand(): Command {
  const cmd = new Command("builder").description("Manage builders: sets of kilnd nodes");
  cmd
    .command("create")
    .description("Create a builder, or add a node to one with --append")
    .argument("<endpoint>", "the node's kilnd address: unix:///path.sock or tcp://HOST:PORT")
    .option("--name <name>", "builder name (default: kiln0, kiln1, …)")
    .option("--node <name>", "node name (default: <builder><index>)")
    .option("--platform <list>", "platforms this node builds natively (repeatable)", collect, [])
    .option("--append", "add the node to an existing builder")
    .option("--use", "select the builder for kiln build")
    .option("--tlscacert <file>", "CA that signed the node's certificate")
    .option("--tlscert <file>", "client certificate for mutual TLS")
    .option("--tlskey <file>", "client key for mutual TLS")
    .action(async (endpoint: string, flags: CreateFlags) => {
      await create(endpoint, flags);
    });
  cmd
    .command("ls")
    .description("List builders and their nodes")
    .action(async () => {
      const f = await loadBuilders();
      out("NAME/NODE\tENDPOINT\tPLATFORMS");
      out(`default${f.current === undefined ? " *" : ""}\tembedded\t(this host)`);
      for (const b of f.builders) {
        out(`${b.name}${f.current === b.name ? " *" : ""}`);
        for (const n of b.nodes)
          out(`  \\_ ${n.name}\t${n.endpoint}\t${n.platforms.join(",") || "-"}`);
      }
    });
  cmd
    .command("inspect")
    .description("Contact each node: status, version, native and emulated platforms, load")
    .argument("[name]", "builder (default: the one selected with use)")
    .action(async (name: string | undefined) => {
      const f = await loadBuilders();
      const chosen = name ?? f.current;
      if (chosen === undefined || chosen === "default") {
        out("Name: default\nDriver: embedded (kiln builds in-process; no daemon)");
        return;
      }
      const b = findBuilder(f, chosen);
      out(`Name: ${b.name}\nNodes:`);
      for (const n of b.nodes) {
        out(`  Name: ${n.name}\n  Endpoint: ${n.endpoint}${n.tls ? " (mutual TLS)" : ""}`);
        if (n.platforms.length) out(`  Configured platforms: ${n.platforms.join(", ")}`);
        try {
          const info = await new NodeClient(n).info();
          out(`  Status: running\n  Node: ${info.name}\n  Version: ${info.version}`);
          if (info.configured.length) out(`  Node platforms: ${info.configured.join(", ")}`);
          out(`  Native: ${info.native.join(", ") || "-"}`);
          out(`  Emulated: ${info.emulated.join(", ") || "-"}`);
          out(`  Load: ${info.load}`);
        } catch (e) {
          out(`  Status: unreachable (${e instanceof Error ? e.message : String(e)})`);
        }
        out("");
      }
    });
  cmd
    .command("use")
    .description("Select the builder kiln build uses (default: the embedded engine)")
    .argument("<name>")
    .action(async (name: string) => {
      const f = await loadBuilders();
      if (name === "default") delete f.current;
      else f.current = findBuilder(f, name).name;
      await saveBuilders(f);
    });
  cmd
    .command("rm")
    .description("Remove a builder (the nodes keep running)")
    .argument("<name>")
    .action(async (name: string) => {
      const f = await loadBuilders();
      findBuilder(f, name);
      f.builders = f.builders.filter((b) => b.name !== name);
      if (f.current === name) delete f.current;
      await saveBuilders(f);
    });
  return cmd;
}

async function create(endpoint: string, flags: CreateFlags): Promise<void> {
  const addr = parseAddress(endpoint);
  const tlsFlags = [flags.tlscacert, flags.tlscert, flags.tlskey];
  if (tlsFlags.some((x) => x !== undefined) && !tlsFlags.every((x) => x !== undefined)) {
    throw new KilnError("E_FLAG", "--tlscacert, --tlscert and --tlskey go together", {
      hint: "mutual TLS needs the CA, the client certificate and its key",
    });
  }
  const f = await loadBuilders();
  let builder =
    flags.name === undefined ? undefined : f.builders.find((b) => b.name === flags.name);
  if (flags.append) {
    if (flags.name === undefined) {
      throw new KilnError("E_FLAG", "--append needs --name", {
        hint: "name the builder to add the node to",
      });
    }
    builder = findBuilder(f, flags.name);
  } else if (builder !== undefined) {
    throw new KilnError("E_BUILDER_EXISTS", `builder ${builder.name} exists`, {
      hint: "add a node to it with --append, or remove it first with kiln builder rm",
    });
  } else {
    let name = flags.name;
    for (let i = 0; name === undefined; i++)
      if (!f.builders.some((b) => b.name === `kiln${i}`)) name = `kiln${i}`;
    builder = { name, nodes: [] };
    f.builders.push(builder);
  }
  const nodeName = flags.node ?? `${builder.name}${builder.nodes.length}`;
  if (builder.nodes.some((n) => n.name === nodeName)) {
    throw new KilnError(
      "E_BUILDER_EXISTS",
      `builder ${builder.name} already has a node ${nodeName}`,
      {
        hint: "pick another --node name",
      },
    );
  }
  const node: BuilderNode = {
    name: nodeName,
    endpoint,
    platforms: parsePlatformList(flags.platform).map(formatAll),
  };
  if (flags.tlscacert && flags.tlscert && flags.tlskey) {
    node.tls = {
      ca: resolve(flags.tlscacert),
      cert: resolve(flags.tlscert),
      key: resolve(flags.tlskey),
    };
  } else if (addr.kind === "tcp") {
    process.stderr.write(
      `WARNING: node ${nodeName} is reached over plain TCP: builds travel unencrypted and secrets will not be sent to it.\n` +
        "WARNING: use --tlscacert/--tlscert/--tlskey (mutual TLS) for anything but a closed test network.\n",
    );
  }
  builder.nodes.push(node);
  if (flags.use) f.current = builder.name;
  await saveBuilders(f);
  out(builder.name);
}
