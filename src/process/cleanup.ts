/**
 * Process-wide registry of cleanups (unmount, `runc delete`, remove temp dirs) that must run
 * even when kiln is interrupted. On the first SIGINT/SIGTERM every registered cleanup runs
 * (newest first), then the signal is re-raised with its default action so the exit status is
 * the conventional one. A second signal during cleanup exits at once. What a SIGKILL leaves
 * behind is removed by the owners' stale-state sweeps at the next start.
 */

type Cleanup = () => Promise<void> | void;

const cleanups = new Map<symbol, { name: string; fn: Cleanup }>();
const SIGNALS = ["SIGINT", "SIGTERM"] as const;
let installed = false;
let cleaning = false;

function onSignal(sig: NodeJS.Signals): void {
  if (cleaning) {
    process.exit(sig === "SIGINT" ? 130 : 143);
  }
  cleaning = true;
  void runCleanups().finally(() => {
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    installed = false;
    process.kill(process.pid, sig);
  });
}

/** Register a cleanup; returns the function that unregisters it (call it once done normally). */
export function onCleanup(name: string, fn: Cleanup): () => void {
  if (!installed) {
    for (const s of SIGNALS) process.on(s, onSignal);
    installed = true;
  }
  const key = Symbol(name);
  cleanups.set(key, { name, fn });
  return () => {
    cleanups.delete(key);
  };
}

/** Run and forget every registered cleanup, newest first; failures are reported, not thrown. */
export async function runCleanups(): Promise<void> {
  const pending = [...cleanups.entries()].reverse();
  cleanups.clear();
  for (const [, { name, fn }] of pending) {
    try {
      await fn();
    } catch (e) {
      process.stderr.write(
        `kiln: cleanup of ${name} failed: ${e instanceof Error ? e.message : String(e)}\n`,
      );
    }
  }
}

/** Number of pending cleanups (for tests and diagnostics). */
export function pendingCleanups(): number {
  return cleanups.size;
}
