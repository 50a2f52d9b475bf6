/**
 * The external programs this folder uses (zstd, mknod): argv, stderr capture, exit handling.
 * Node 20 has neither zstd nor mknod(2).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { pipeline } from "node:stream/promises";
import type { KilnError } from "../errors.js";

type Failure = (detail: string, cause?: unknown) => KilnError;

function describeExit(cmd: string, code: number | null, signal: string | null, stderr: string) {
  const how = code === null ? `killed by ${signal}` : `exit status ${code}`;
  return `${cmd} failed (${how})${stderr === "" ? "" : `: ${stderr.trim()}`}`;
}

/** Run a program to completion; failures become the caller's KilnError. */
export async function run(cmd: string, args: string[], fail: Failure): Promise<void> {
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  try {
    const [code, signal] = (await once(child, "close")) as [number | null, string | null];
    if (code !== 0) throw fail(describeExit(cmd, code, signal, stderr));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") throw fail(`${cmd} is not installed`, e);
    throw e;
  }
}

/**
 * Stream `input` through a filter program (stdin → stdout). The program's exit status is
 * checked after its output ends, so a truncated or corrupt input surfaces as an error.
 */
export async function* filterThrough(
  cmd: string,
  args: string[],
  input: AsyncIterable<Uint8Array>,
  fail: Failure,
): AsyncGenerator<Buffer> {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const closed = once(child, "close") as Promise<[number | null, string | null]>;
  closed.catch(() => undefined); // spawn errors are reported through `closed` below
  let feedError: unknown;
  const feeding = pipeline(input, child.stdin).catch((e: unknown) => {
    feedError = e;
    child.kill();
  });
  try {
    for await (const c of child.stdout) yield c as Buffer;
    await feeding;
    let code: number | null;
    let signal: string | null;
    try {
      [code, signal] = await closed;
    } catch (e) {
      throw fail(`${cmd} could not be started`, e);
    }
    const pipeBroken = (feedError as { code?: string } | undefined)?.code === "EPIPE";
    if (feedError !== undefined && !pipeBroken) throw feedError as Error;
    if (code !== 0) throw fail(describeExit(cmd, code, signal, stderr));
    if (feedError !== undefined) throw fail(`${cmd} stopped reading its input`, feedError);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  }
}
