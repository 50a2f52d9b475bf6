/**
 * The seccomp filter of a sandboxed RUN: the semantics of containerd's default profile
 * (contrib/seccomp), which BuildKit applies to every RUN that is not `--security=insecure`.
 * Everything not allowed fails with EPERM; a few syscalls are allowed only with one argument
 * shape, some only for the architecture or when a capability is granted.
 *
 * Architectures: the filter lists the host's native ABIs only. An emulated RUN is a host
 * QEMU process: the kernel sees the host's syscalls (QEMU translates the guest's), so the
 * guest's architecture never reaches the filter.
 */
import { release } from "node:os";

export type SeccompAction = "SCMP_ACT_ALLOW" | "SCMP_ACT_ERRNO";

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: "SCMP_CMP_EQ" | "SCMP_CMP_LT" | "SCMP_CMP_GT" | "SCMP_CMP_MASKED_EQ";
}

export interface SeccompRule {
  names: string[];
  action: SeccompAction;
  args?: SeccompArg[];
  /** errno for SCMP_ACT_ERRNO (runc's default: EPERM) */
  errnoRet?: number;
}

/** linux.seccomp of the OCI runtime spec. */
export interface OciSeccomp {
  /** runc answers a denied syscall with EPERM */
  defaultAction: "SCMP_ACT_ERRNO";
  architectures: string[];
  syscalls: SeccompRule[];
}

const words = (s: string): string[] => s.trim().split(/\s+/);

/**
 * Allowed for everyone. Names the local libseccomp does not know (newer kernels) are ignored
 * by runc, so the list may run ahead of the machine.
 */
const ALWAYS = words(`
  accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
  chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
  clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
  copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
  epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
  exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
  fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
  flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
  ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
  getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
  getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
  getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
  getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
  getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
  io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
  io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
  lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
  lremovexattr lseek lsetxattr lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat
  lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat
  mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
  mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
  mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
  nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe
  pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv
  preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
  readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
  remap_file_pages removexattr removexattrat rename renameat renameat2 restart_syscall rmdir
  rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
  rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
  sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
  sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
  sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
  semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
  setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
  setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
  setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
  setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
  sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount
  statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
  timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
  timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
  tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat
  utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`);

/** Tracing a process of the same container: safe from Linux 4.8 on (seccomp is checked after ptrace). */
const PTRACE = words("process_vm_readv process_vm_writev ptrace");

/** Per host architecture (Node's process.arch): the ABIs the filter covers and extra syscalls. */
const ARCHES: Record<string, { abis: string[]; extra: string[] }> = {
  x64: {
    abis: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    extra: words("arch_prctl modify_ldt"),
  },
  ia32: { abis: [], extra: ["modify_ldt"] },
  arm64: {
    abis: ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
    extra: words(
      "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
  },
  arm: {
    abis: [],
    extra: words(
      "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
  },
  s390x: {
    abis: ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"],
    extra: words("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
  },
  ppc64: { abis: [], extra: words("sync_file_range2 swapcontext") },
  riscv64: { abis: ["SCMP_ARCH_RISCV64"], extra: words("riscv_flush_icache riscv_hwprobe") },
  loong64: { abis: ["SCMP_ARCH_LOONGARCH64"], extra: [] },
  mips64el: {
    abis: ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32"],
    extra: [],
  },
};

/** Syscalls a granted capability makes safe to allow. */
const BY_CAPABILITY: Record<string, string[]> = {
  CAP_DAC_READ_SEARCH: ["open_by_handle_at"],
  CAP_SYS_ADMIN: words(`
    bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
    mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
    sethostname setns syslog umount umount2 unshare
  `),
  CAP_SYS_BOOT: ["reboot"],
  CAP_SYS_CHROOT: ["chroot"],
  CAP_SYS_MODULE: words("delete_module init_module finit_module"),
  CAP_SYS_PACCT: ["acct"],
  CAP_SYS_PTRACE: words(
    "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
  ),
  CAP_SYS_RAWIO: words("iopl ioperm"),
  CAP_SYS_TIME: words("settimeofday stime clock_settime clock_settime64"),
  CAP_SYS_TTY_CONFIG: ["vhangup"],
  CAP_SYS_NICE: words("get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
  CAP_SYSLOG: ["syslog"],
  CAP_BPF: ["bpf"],
  CAP_PERFMON: ["perf_event_open"],
};

const AF_ALG = 38;
const AF_VSOCK = 40;
/** personality(2) values that only select the Linux ABI, 32-bit address space or a query. */
const PERSONALITIES = [0x0, 0x0008, 0x20000, 0x20008, 0xffffffff];
/** CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP: no new namespaces without CAP_SYS_ADMIN. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const ENOSYS = 38;

const allow = (names: string[], args?: SeccompArg[]): SeccompRule => ({
  names,
  action: "SCMP_ACT_ALLOW",
  ...(args ? { args } : {}),
});

function kernelAtLeast(kernel: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = kernel.split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}

/**
 * The default profile for a container with these (bounding) capabilities on this host.
 * `arch` and `kernel` default to this machine's.
 */
export function defaultSeccompProfile(
  capabilities: readonly string[],
  host: { arch?: string; kernel?: string } = {},
): OciSeccomp {
  const arch = ARCHES[host.arch ?? process.arch];
  const rules: SeccompRule[] = [
    allow(ALWAYS),
    // socket(2) for every address family but AF_ALG and AF_VSOCK: three single-condition
    // rules, because runc ORs several conditions on one argument
    allow(["socket"], [{ index: 0, op: "SCMP_CMP_LT", value: AF_ALG }]),
    allow(["socket"], [{ index: 0, op: "SCMP_CMP_EQ", value: AF_ALG + 1 }]),
    allow(["socket"], [{ index: 0, op: "SCMP_CMP_GT", value: AF_VSOCK }]),
    ...PERSONALITIES.map((value) =>
      allow(["personality"], [{ index: 0, op: "SCMP_CMP_EQ", value }]),
    ),
  ];
  if (kernelAtLeast(host.kernel ?? release(), 4, 8)) rules.push(allow(PTRACE));
  if (arch && arch.extra.length > 0) rules.push(allow(arch.extra));
  for (const cap of capabilities) {
    const names = BY_CAPABILITY[cap];
    if (names) rules.push(allow(names));
  }
  if (!capabilities.includes("CAP_SYS_ADMIN")) {
    // s390 passes clone's flags as the second argument
    const flagsArg = (host.arch ?? process.arch) === "s390x" ? 1 : 0;
    rules.push(
      allow(
        ["clone"],
        [{ index: flagsArg, op: "SCMP_CMP_MASKED_EQ", value: CLONE_NAMESPACE_FLAGS, valueTwo: 0 }],
      ),
      // clone3's flags live in memory seccomp cannot read: ENOSYS makes libcs fall back to clone
      { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS },
    );
  }
  return { defaultAction: "SCMP_ACT_ERRNO", architectures: arch?.abis ?? [], syscalls: rules };
}
