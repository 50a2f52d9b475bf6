/**
 * Plays the scripted build through `createRenderer("auto", process.stdout)` in real time, for
 * test/integration/progress-tty.test.ts, which runs this under a pseudo-terminal.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createRenderer, type ProgressEvent } from "../../../src/progress/index.js";
import { script, T0 } from "./script.js";

const renderer = createRenderer("auto", process.stdout);
const start = Date.now();
// Shift the script's times to now, so the live timers show real elapsed time.
const shift = (ev: ProgressEvent): ProgressEvent => {
  const moved: Record<string, unknown> = { ...ev };
  for (const k of ["started", "completed", "timestamp"]) {
    if (typeof moved[k] === "number") moved[k] = moved[k] - T0 + start;
  }
  return moved as unknown as ProgressEvent;
};
for (const [at, ev] of script) {
  const wait = at - T0 + start - Date.now();
  if (wait > 0) await sleep(wait);
  renderer.write(shift(ev));
}
await renderer.close();
