/**
 * What the monitor knows about one snapshot of a guest: the facts diff and policy judge, read
 * once from the dump so that a watch loop keeps summaries, never dumps.
 */

export interface SnapshotProcess {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** argv as the process's memory holds it; null when unreadable (swapped out, kernel thread). */
  readonly cmdline: readonly string[] | null;
  /** task_struct.start_time (ns since boot): with the pid, what makes a process "the same" across snapshots. */
  readonly startTime: bigint;
  readonly kernelThread: boolean;
}

export interface SnapshotModule {
  readonly name: string;
  /** Virtual address of the module's struct module. */
  readonly address: bigint;
}

export interface SnapshotSyscall {
  /**
   * The table's symbol (`sys_call_table`, `ia32_sys_call_table`, …), or the dispatcher function
   * for a jump in its code (`x64_sys_call`): with `index`, what identifies an entry, since the
   * same index means another syscall in each table.
   */
  readonly table: string;
  readonly index: number;
  /** The syscall's name (e.g. `getdents64`) from the kernel's own handler for that number, when known. */
  readonly name: string | null;
  /** The handler address the table holds. */
  readonly value: bigint;
  /** The symbol at that address, or null when it points outside the kernel's symbols. */
  readonly symbol: string | null;
  /** The entry points where the kernel's own dispatch says it must not. */
  readonly hooked: boolean;
}

/** A signature hit as the monitor keeps it: who holds it, not where. */
export interface SnapshotSignatureHit {
  readonly rule: string;
  readonly string: string;
  /** null for kernel or unowned memory. */
  readonly pid: number | null;
  readonly comm: string | null;
}

/** A finding of an analysis run with the summary (a WASI plugin's), under that analysis's name. */
export interface SnapshotAnalysisFinding {
  readonly analysis: string;
  readonly kind: string;
  readonly severity: string;
  readonly subject: string;
  readonly detail: string;
  readonly pid: number | null;
}

/** An inet socket (TCP, UDP, over IPv4 or IPv6) as the monitor keeps it; unix sockets are left out (they come and go with every local connection). */
export interface SnapshotSocket {
  /** The holding process; null for a socket only the kernel's tables hold. */
  readonly pid: number | null;
  readonly comm: string | null;
  /** `tcp`, `tcp6`, `udp`, `udp6`, … */
  readonly proto: string;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** As ss names it: LISTEN, ESTABLISHED, UNCONN, … */
  readonly state: string;
  readonly inode: number;
}

/** An executable memory region of a user process. */
export interface SnapshotRegion {
  readonly pid: number;
  readonly comm: string;
  readonly startTime: bigint;
  readonly start: bigint;
  readonly end: bigint;
  readonly perms: string;
  /** The mapped file's path, `[vdso]`, or '' for anonymous memory. */
  readonly path: string;
  /** Executable memory backed by no file (malfind's injected code; the vDSO excluded). */
  readonly injected: boolean;
}

/** A user process running from a memfd, a pseudo file or a deleted file. */
export interface SnapshotFileless {
  readonly pid: number;
  readonly comm: string;
  readonly startTime: bigint;
  readonly exe: string;
  readonly kind: 'memfd' | 'pseudo_file' | 'deleted_file';
}

/** A user process's environment (`NAME=value` strings). */
export interface SnapshotEnvironment {
  readonly pid: number;
  readonly comm: string;
  readonly startTime: bigint;
  readonly variables: readonly string[];
}

/** Where the host that ran the guest was when the snapshot was taken (the monitor's `--host-metadata` file). */
export interface HostMetadata {
  readonly region?: string;
  readonly postal_code?: string;
  readonly timezone?: string;
}

/**
 * A kernel hook `check` reports (ftrace, kprobe, eBPF, netfilter, inline, IDT, /proc hook or
 * stolen credentials), as its finding says it: the summary and `check` share one code path.
 */
export interface SnapshotKernelHook {
  /** The finding kind: `ftrace_hook`, `kprobe`, `bpf_program`, `netfilter_hook`, `inline_hook`, `idt_hook`, `proc_hook`, `cred_escalation`. */
  readonly kind: string;
  /** What was hooked: a function, `vector 128`, `tcp4_seq_ops.show`, `pid 131 lab_escalated`, a program. */
  readonly subject: string;
  /** `kernel`, a module, a process, or `unknown`. */
  readonly owner: string;
  readonly detail: string;
}

/** A loaded eBPF program, as a policy's allow list judges it. */
export interface SnapshotBpfProgram {
  readonly id: number;
  readonly name: string;
  /** `kprobe`, `socket_filter`, ... (the kernel's BPF_PROG_TYPE_ name, lowercase). */
  readonly type: string;
  /** Helpers it calls, by their bpf_func_id name (`probe_write_user`). */
  readonly helpers: readonly string[];
  /** Commands of the processes holding it open. */
  readonly holders: readonly string[];
}

export interface SnapshotSummary {
  /** The dump the summary was read from. */
  readonly path: string;
  /** The kernel's linux_banner: two snapshots compare only when these are equal. */
  readonly banner: string;
  /** The guest's wall-clock time at capture (from the kernel's timekeeper), or the file's mtime when unreadable. */
  readonly capturedAt: Date;
  readonly capturedAtSource: 'guest-clock' | 'file-mtime';
  /** Processes on the kernel's task list (thread-group leaders). */
  readonly processes: readonly SnapshotProcess[];
  /** Tasks carved from memory but missing from the task list. */
  readonly hiddenProcesses: readonly SnapshotProcess[];
  readonly modules: readonly SnapshotModule[];
  readonly hiddenModules: readonly SnapshotModule[];
  readonly syscalls: readonly SnapshotSyscall[];
  /** Inet sockets held by any process (hidden ones included) or in the kernel's TCP/UDP tables. */
  readonly sockets: readonly SnapshotSocket[];
  /** Executable regions of every user process (hidden ones included). */
  readonly executableRegions: readonly SnapshotRegion[];
  readonly filelessProcesses: readonly SnapshotFileless[];
  readonly environments: readonly SnapshotEnvironment[];
  /** The guest's own wall clock (the kernel's timekeeper); null when unreadable or implausible. */
  readonly guestClock: Date | null;
  /** When the host took the snapshot: the source's capture time, else the dump file's modification time. */
  readonly hostCapturedAt: Date;
  /** The host's location at capture; null when the monitor was given none or could not read it (see hostProblem). */
  readonly host: HostMetadata | null;
  /** Why `host` is null when host metadata was asked for. */
  readonly hostProblem: string | null;
  /** What `check` reports of the kernel hooks and stolen credentials. */
  readonly kernelHooks: readonly SnapshotKernelHook[];
  readonly bpfPrograms: readonly SnapshotBpfProgram[];
  /** Present when the summary was taken with rules. */
  readonly signatures?: readonly SnapshotSignatureHit[];
  /** Present when the summary was taken with finding analyses (plugins): which ran, and their findings. */
  readonly analysisFindings?: {
    readonly ran: readonly string[];
    readonly findings: readonly SnapshotAnalysisFinding[];
  };
  /** Everything that made the summary partial (unreadable structures), and the fallback to the file's mtime for `capturedAt`. */
  readonly warnings: readonly string[];
}
