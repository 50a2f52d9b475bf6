/**
 * mount(2) and umount2(2) for kiln, made by one long-lived Perl process: Node cannot make
 * these system calls, and the `mount`/`umount` programs cost ~13 ms a pair here (a fork and
 * exec each, then libmount reading the mount table), where the calls themselves take ~1 ms. A
 * RUN or COPY mounts and unmounts once, on its step's critical path.
 *
 * The protocol is one line per call on the helper's stdin, the fields hex-encoded (no byte of
 * a path can break a line), and one line back: `0`, or the errno and its message.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { KilnError } from "../errors.js";
import { holdsKilnOpen } from "./brief.js";

/** Linux's MNT_DETACH: unmount lazily, once the last user is gone. */
export const MNT_DETACH = 2;

/** A call that has not answered after this long is stuck in the kernel: the helper is killed. */
const CALL_TIMEOUT_MS = 60_000;

/**
 * mount and umount2 system call numbers by Node's name of the CPU (Linux never renumbers a
 * system call); elsewhere Perl's syscall.ph is asked (~20 ms to load).
 */
const SYSCALLS: Record<string, [number, number]> = {
  x64: [165, 166],
  arm64: [40, 39],
  riscv64: [40, 39],
  arm: [21, 52],
  ppc64: [21, 52],
  s390x: [21, 52],
};

// Every field is hex-encoded (the flags are the hex of their decimal text).
const HELPER = String.raw`
my ($SYS_mount, $SYS_umount2) = @ARGV;
if ($SYS_mount eq "") { require "syscall.ph"; ($SYS_mount, $SYS_umount2) = (&SYS_mount, &SYS_umount2); }
$| = 1;
while (my $line = <STDIN>) {
  chomp $line;
  my ($op, @f) = split /\t/, $line, -1;
  my $r = -1;
  if ($op eq "mount") {
    my ($dir, $source, $target, $type, $flags, $data) = map { pack "H*", $_ } @f;
    if (chdir $dir) {
      $r = syscall($SYS_mount + 0, $source, $target, $type, $flags + 0, $data);
      my $errno = $!;
      chdir "/";
      $! = $errno;
    }
  } elsif ($op eq "umount") {
    my ($target, $flags) = map { pack "H*", $_ } @f;
    $r = syscall($SYS_umount2 + 0, $target, $flags + 0);
  } else {
    $! = 22;
  }
  print $r == 0 ? "0\n" : ($! + 0) . "\t$!\n";
}
`;

/** What a failed call says: its errno and the message for it. */
export interface SyscallFailure {
  errno: number;
  message: string;
}

interface Call {
  line: string;
  resolve: (failure: SyscallFailure | undefined) => void;
  reject: (e: unknown) => void;
}

class Mounter {
  private readonly child: ChildProcess;
  private readonly queue: Call[] = [];
  private output = "";
  private timer: NodeJS.Timeout | undefined;
  dead: KilnError | undefined;

  constructor() {
    const numbers = SYSCALLS[process.arch]?.map(String) ?? ["", ""];
    // detached: its own process group, so a Ctrl-C at the terminal leaves it to unmount what
    // kiln cleans up on the way out; it exits when kiln's end of its stdin closes
    this.child = spawn("perl", ["-e", HELPER, ...numbers], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    let stderr = "";
    this.child.stderr!.on("data", (c: Buffer) => {
      stderr = (stderr + c.toString("utf8")).slice(-4096);
    });
    this.child.stdin!.on("error", () => undefined);
    this.child.stdout!.on("data", (c: Buffer) => {
      this.onOutput(c.toString("utf8"));
    });
    this.child.once("error", (e) => {
      this.fail(
        new KilnError("E_PROCESS_SPAWN", `cannot start perl for mount(2): ${e.message}`, {
          hint: "install perl (apt-get install perl)",
        }),
      );
    });
    this.child.once("close", () => {
      const why = stderr.trim();
      this.fail(
        new KilnError(
          "E_PROCESS_FAILED",
          `the perl process making mount(2) calls ended${why ? `: ${why}` : ""}`,
          {
            hint: /syscall\.ph/.test(why)
              ? "install perl's full package (apt-get install perl): it has syscall.ph"
              : undefined,
          },
        ),
      );
    });
    holdsKilnOpen(this.child, false);
  }

  call(fields: readonly string[]): Promise<SyscallFailure | undefined> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.queue.push({ line: `${fields.join("\t")}\n`, resolve, reject });
      if (this.queue.length === 1) this.send();
    });
  }

  private send(): void {
    const next = this.queue[0];
    holdsKilnOpen(this.child, next !== undefined);
    if (next === undefined) return;
    this.child.stdin!.write(next.line);
    this.timer = setTimeout(() => {
      this.child.kill("SIGKILL");
      this.fail(
        new KilnError(
          "E_PROCESS_TIMEOUT",
          `a mount(2) call did not return in ${CALL_TIMEOUT_MS} ms`,
          {
            hint: "The kernel is stuck on a mount; check the system (mounts, disk) and retry.",
          },
        ),
      );
    }, CALL_TIMEOUT_MS);
  }

  private onOutput(text: string): void {
    this.output += text;
    for (let nl = this.output.indexOf("\n"); nl >= 0; nl = this.output.indexOf("\n")) {
      const answer = this.output.slice(0, nl);
      this.output = this.output.slice(nl + 1);
      clearTimeout(this.timer);
      const call = this.queue.shift();
      if (call === undefined) continue;
      const tab = answer.indexOf("\t");
      call.resolve(
        answer === "0"
          ? undefined
          : { errno: Number(answer.slice(0, tab)), message: answer.slice(tab + 1) },
      );
      this.send();
    }
  }

  private fail(e: KilnError): void {
    if (this.dead) return;
    this.dead = e;
    clearTimeout(this.timer);
    for (const call of this.queue.splice(0)) call.reject(e);
  }
}

let mounter: Mounter | undefined;

function helper(): Mounter {
  if (mounter === undefined || mounter.dead) mounter = new Mounter();
  return mounter;
}

/** Starts the helper ahead of the first mount (its start then overlaps other work). */
export function prepareMountHelper(): void {
  helper();
}

function call(fields: readonly string[]): Promise<SyscallFailure | undefined> {
  return helper().call(fields);
}

const hex = (s: string | number): string => Buffer.from(String(s)).toString("hex");

/**
 * mount(2): mounts `source` of `fstype` at `target` with `data` as its options; relative paths
 * in them resolve against `cwd`. Resolves with the failure, if any (the caller words it).
 */
export function mountSyscall(o: {
  source: string;
  target: string;
  fstype: string;
  data: string;
  cwd: string;
  flags?: number;
}): Promise<SyscallFailure | undefined> {
  return call([
    "mount",
    hex(o.cwd),
    hex(o.source),
    hex(o.target),
    hex(o.fstype),
    hex(o.flags ?? 0),
    hex(o.data),
  ]);
}

/** umount2(2) of `target` with `flags` (MNT_DETACH); resolves with the failure, if any. */
export function unmountSyscall(target: string, flags = 0): Promise<SyscallFailure | undefined> {
  return call(["umount", hex(target), hex(flags)]);
}
