/**
 * How each platform's RUN steps execute on this host: natively, through the kernel's binfmt
 * handlers, or wrapped in a QEMU user-mode emulator — decided once per build from a probe —
 * and how a failed step is explained (exec format errors especially).
 */
import { KilnError } from "../errors.js";
import type { Vertex } from "../graph/index.js";
import { defaultPlatform, formatAll, only } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import {
  explainExecFailure,
  isExecFormatError,
  planExecution,
  probeSupported,
  type ExecutionPlan,
  type SupportedPlatforms,
} from "../emulation/index.js";

export interface StepFailure {
  vertex: Vertex;
  platform: Platform;
  args: string[];
  exitCode: number;
  /** the last lines the step printed */
  output: string[];
  rootfs: string;
  plan: ExecutionPlan;
  pathEnv?: string;
}

export class ExecutionPlanner {
  private readonly plans = new Map<string, Promise<ExecutionPlan>>();
  private probed: Promise<SupportedPlatforms> | undefined;
  /** the normalized host platform: the build platform of every conversion */
  readonly native: Platform = defaultPlatform();

  /** recordFile: where successful probes are kept across builds (see probeSupported) */
  constructor(private readonly opts: { ignoreBinfmt: boolean; recordFile?: string }) {}

  /** Probes on first use only: a fully cached build runs no step and pays for no probe. */
  supported(): Promise<SupportedPlatforms> {
    this.probed ??= probeSupported({
      ignoreBinfmt: this.opts.ignoreBinfmt,
      recordFile: this.opts.recordFile,
    });
    return this.probed;
  }

  /** True when the CPU itself cannot run the platform (binfmt or a wrapper emulates it). */
  needsEmulation(p: Platform): boolean {
    return !only(this.native).match(p);
  }

  /**
   * Starts deciding how `p` runs (a probe process when it is emulated) without waiting: called
   * when a step of `p` starts work, so its first RUN finds the answer ready. A failure is kept
   * for the `plan` call that uses it.
   */
  prepare(p: Platform): void {
    if (this.needsEmulation(p)) this.plan(p).catch(() => undefined);
  }

  plan(p: Platform): Promise<ExecutionPlan> {
    const key = formatAll(p);
    let plan = this.plans.get(key);
    if (!plan) {
      // a plan needs only its own architecture probed (one process; none when native)
      const probed = probeSupported({
        ignoreBinfmt: this.opts.ignoreBinfmt,
        architectures: [p.architecture],
        recordFile: this.opts.recordFile,
      });
      plan = probed.then((s) => planExecution(p, s));
      this.plans.set(key, plan);
    }
    return plan;
  }

  async explainFailure(f: StepFailure): Promise<KilnError> {
    const text = f.output.join("\n");
    if (isExecFormatError(text)) {
      const e = await explainExecFailure({
        platform: f.platform,
        argv0: f.args[0] ?? "",
        mode: f.plan.mode,
        emulator: f.plan.emulator,
        supported: await this.supported(),
        exitCode: f.exitCode,
        stderr: text,
        rootfs: f.rootfs,
        pathEnv: f.pathEnv,
      });
      return new KilnError("E_EXEC_FORMAT", `${f.vertex.name}: ${e.message}`, { hint: e.hint });
    }
    return new KilnError(
      "E_RUN_FAILED",
      `${f.vertex.name}: process ${JSON.stringify(f.args.join(" "))} did not complete successfully: exit code: ${f.exitCode}`,
    );
  }
}
