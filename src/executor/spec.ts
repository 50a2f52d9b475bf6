import { join } from "node:path";
import {
  DEFAULT_BINFMT_MOUNT,
  DEFAULT_CONTAINER_PATH,
  EMULATOR_MOUNT_PATH,
} from "../emulation/index.js";
import { DEFAULT_HOSTNAME } from "./etcfiles.js";
import type { ExecSpec, Mount } from "./types.js";
import type { ResolvedUser } from "./user.js";
import { defaultSeccompProfile, type OciSeccomp } from "./seccomp.js";

/** containerd's default capability set, which BuildKit uses for sandboxed RUN. */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
] as const;

/** Every capability by number (linux/capability.h), for `RUN --security=insecure`. */
const ALL_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
] as const;

/** The capabilities in a /proc/PID/status mask (kiln can grant only the ones it has). */
export function capabilitiesIn(mask: bigint): string[] {
  return ALL_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

/**
 * Device nodes an insecure RUN gets, as BuildKit adds them: kmsg, cuse, fuse, kvm, tun,
 * loop-control and the first loop devices.
 */
const INSECURE_DEVICES: OciDevice[] = [
  { path: "/dev/kmsg", type: "c", major: 1, minor: 11 },
  { path: "/dev/cuse", type: "c", major: 10, minor: 203 },
  { path: "/dev/fuse", type: "c", major: 10, minor: 229 },
  { path: "/dev/kvm", type: "c", major: 10, minor: 232 },
  { path: "/dev/net/tun", type: "c", major: 10, minor: 200 },
  { path: "/dev/loop-control", type: "c", major: 10, minor: 237 },
  ...Array.from({ length: 8 }, (_, i): OciDevice => ({
    path: `/dev/loop${i}`,
    type: "b",
    major: 7,
    minor: i,
  })),
];

export interface OciDevice {
  path: string;
  type: "c" | "b";
  major: number;
  minor: number;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** One range of a user namespace's uid or gid map. */
export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

interface OciHook {
  path: string;
  args: string[];
  env: string[];
}

/** The subset of the OCI runtime spec (1.0.2) kiln writes. */
export interface OciSpec {
  ociVersion: string;
  root: { path: string; readonly: boolean };
  hostname: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<"bounding" | "effective" | "permitted", string[]>;
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  mounts: OciMount[];
  hooks?: { createContainer: OciHook[] };
  linux: {
    namespaces: { type: string }[];
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
    maskedPaths: string[];
    readonlyPaths: string[];
    cgroupsPath: string;
    resources: { devices: { allow: boolean; type?: "c" | "b"; access: string }[] };
    devices?: OciDevice[];
    seccomp?: OciSeccomp;
  };
}

export interface RuntimeSpecInput {
  id: string;
  spec: ExecSpec;
  /** Final argv (after emulator wrapping). */
  args: string[];
  user: ResolvedUser;
  /** Host paths of the generated files bind-mounted read-only over /etc/hosts and /etc/resolv.conf. */
  hostsPath: string;
  resolvConfPath: string;
  /** Wrapper mode on a kernel with per-user-namespace binfmt_misc (see emulation/private.ts). */
  privateBinfmt?: PrivateBinfmt;
  /** For an insecure RUN: the capabilities kiln itself has (CapEff of /proc/self/status). */
  ownCapabilities?: bigint;
}

export interface PrivateBinfmt {
  /** The line written to the container's own binfmt_misc `register` file. */
  register: string;
  /** Identity maps of the ids kiln itself has, so file ownership means the same inside. */
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

/**
 * Mounts the container's own binfmt_misc instance and registers the emulator in it. Run by
 * runc as a createContainer hook: inside the container's user and mount namespaces, as root,
 * before pivot_root, so `$1` is a host path into the rootfs and the emulator's host path
 * resolves (the F flag opens it now).
 */
const REGISTER_SCRIPT = 'mount -t binfmt_misc binfmt_misc "$1" && printf %s "$2" > "$1/register"';

function privateBinfmtHook(rootfs: string, register: string): OciHook {
  return {
    path: "/bin/sh",
    args: ["sh", "-c", REGISTER_SCRIPT, "sh", join(rootfs, DEFAULT_BINFMT_MOUNT), register],
    env: [`PATH=${DEFAULT_CONTAINER_PATH}`],
  };
}

/** env with PATH defaulted, as BuildKit does for a RUN without one. */
export function withDefaultPath(env: readonly string[]): string[] {
  return env.some((e) => e.startsWith("PATH="))
    ? [...env]
    : [`PATH=${DEFAULT_CONTAINER_PATH}`, ...env];
}

function userMount(m: Mount): OciMount {
  if (m.type === "bind") {
    return {
      destination: m.target,
      type: "bind",
      source: m.source,
      options: ["rbind", m.readonly ? "ro" : "rw"],
    };
  }
  const options = ["nosuid", "nodev"];
  if (m.size !== undefined) options.push(`size=${m.size}`);
  if (m.mode !== undefined) options.push(`mode=${m.mode.toString(8).padStart(4, "0")}`);
  return { destination: m.target, type: "tmpfs", source: "tmpfs", options };
}

/** The OCI runtime config for one RUN: containerd's defaults as BuildKit adjusts them. */
export function buildRuntimeSpec(input: RuntimeSpecInput): OciSpec {
  const { spec, privateBinfmt } = input;
  const insecure = spec.security === "insecure";
  const caps = insecure ? capabilitiesIn(input.ownCapabilities ?? 0n) : [...DEFAULT_CAPABILITIES];
  // an insecure RUN may write to /sys and its cgroups, as in BuildKit
  const sysOptions = (o: string[]): string[] => (insecure ? o.filter((x) => x !== "ro") : o);
  const roBind = (source: string, destination: string): OciMount => ({
    destination,
    type: "bind",
    source,
    options: ["rbind", "ro", "nosuid", "nodev", "noexec"],
  });
  const mounts: OciMount[] = [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
      destination: "/dev/mqueue",
      type: "mqueue",
      source: "mqueue",
      options: ["nosuid", "noexec", "nodev"],
    },
    // The kernel mounts sysfs only for the user namespace owning the network namespace: a
    // container with its own user namespace but the host's network gets the host's /sys,
    // read-only all the way down.
    privateBinfmt !== undefined && spec.network === "host"
      ? {
          destination: "/sys",
          type: "bind",
          source: "/sys",
          options: ["rbind", "nosuid", "noexec", "nodev", "rro"],
        }
      : {
          destination: "/sys",
          type: "sysfs",
          source: "sysfs",
          options: sysOptions(["nosuid", "noexec", "nodev", "ro"]),
        },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: sysOptions(["ro", "nosuid", "noexec", "nodev"]),
    },
    roBind(input.resolvConfPath, "/etc/resolv.conf"),
    roBind(input.hostsPath, "/etc/hosts"),
    ...spec.mounts.map(userMount),
  ];
  if (spec.emulator) {
    mounts.push({
      destination: EMULATOR_MOUNT_PATH,
      type: "bind",
      source: spec.emulator.hostPath,
      options: ["rbind", "ro"],
    });
  }
  const namespaces = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (spec.network === "none") namespaces.push({ type: "network" });
  if (privateBinfmt !== undefined) namespaces.push({ type: "user" });
  const oci: OciSpec = {
    ociVersion: "1.0.2",
    root: { path: spec.rootfs, readonly: spec.readonlyRootfs ?? false },
    hostname: spec.hostname ?? DEFAULT_HOSTNAME,
    process: {
      terminal: false,
      user: input.user,
      args: input.args,
      env: withDefaultPath(spec.env),
      cwd: spec.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: false,
    },
    mounts,
    linux: {
      namespaces,
      maskedPaths: insecure
        ? []
        : [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
          ],
      readonlyPaths: insecure
        ? []
        : ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
      cgroupsPath: `/kiln/${input.id}`,
      resources: {
        devices: insecure
          ? [
              { allow: true, type: "c", access: "rwm" },
              { allow: true, type: "b", access: "rwm" },
            ]
          : [{ allow: false, access: "rwm" }],
      },
      // in a user namespace (private binfmt) the kernel refuses mknod: no extra devices there
      ...(insecure && privateBinfmt === undefined ? { devices: INSECURE_DEVICES } : {}),
      ...(insecure ? {} : { seccomp: defaultSeccompProfile(caps) }),
    },
  };
  if (privateBinfmt === undefined) return oci;
  return {
    ...oci,
    hooks: { createContainer: [privateBinfmtHook(spec.rootfs, privateBinfmt.register)] },
    linux: {
      ...oci.linux,
      uidMappings: privateBinfmt.uidMappings,
      gidMappings: privateBinfmt.gidMappings,
    },
  };
}
