import type { Row } from '../analyses/types.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';
import type {
  SnapshotKernelHook,
  SnapshotModule,
  SnapshotProcess,
  SnapshotRegion,
  SnapshotSignatureHit,
  SnapshotSocket,
  SnapshotSummary,
  SnapshotSyscall,
} from './snapshot.js';

/** Row kinds, in the order rows are sorted. */
export const DIFF_KINDS = [
  'process',
  'module',
  'syscall',
  'hidden_process',
  'hidden_module',
  'ftrace_hook',
  'kprobe',
  'bpf_program',
  'netfilter_hook',
  'inline_hook',
  'idt_hook',
  'proc_hook',
  'cred_escalation',
  'signature',
  'socket',
  'executable_region',
] as const;
export type DiffKind = (typeof DIFF_KINDS)[number];

/** processes: started/ended/changed; modules: loaded/unloaded; sockets: closed/opened/changed; everything else: appeared/disappeared/changed. Sorted in this order within a subject. */
const DIFF_CHANGES = [
  'ended',
  'started',
  'unloaded',
  'loaded',
  'closed',
  'opened',
  'disappeared',
  'appeared',
  'changed',
] as const;
export type DiffChange = (typeof DIFF_CHANGES)[number];

/** One difference between two snapshots of the same kernel. */
export interface DiffRow extends Row {
  readonly kind: DiffKind;
  readonly change: DiffChange;
  /** The process concerned (the holder, for a signature hit); null for kernel-wide things. */
  readonly pid: number | null;
  /** The module, the syscall (`getdents64`, or `table[index]` when unnamed) or the signature rule; null for processes. */
  readonly name: string | null;
  readonly comm: string | null;
  /** What changed, in words an analyst reads: old → new for changes. */
  readonly detail: string;
}

export interface DiffOptions {
  /**
   * Report kernel threads that started or ended (default false). Kernel threads come and go on
   * their own (kworkers are spawned and retired as work queues need them), so between any two
   * snapshots some do: by default the diff is about user processes, where every change means
   * something happened in the guest.
   */
  readonly includeKernelThreads?: boolean;
}

/**
 * What changed from `before` to `after`: processes started, ended or re-executed, modules loaded
 * and unloaded, syscall table entries retargeted, hidden processes and modules appearing or
 * disappearing, each kind of kernel hook `check` reports appearing or disappearing, and signature hits (when both summaries were taken with rules). Two summaries
 * compare only when they are of the same kernel build: anything else is refused, since every
 * structure would differ. Rows are sorted by kind, then pid, then name, so equal inputs give
 * equal output.
 */
export function diffSnapshots(before: SnapshotSummary, after: SnapshotSummary, options: DiffOptions = {}): DiffRow[] {
  if (before.banner !== after.banner) {
    throw new VmscopeError(
      'USAGE',
      `cannot diff ${before.path} and ${after.path}: they are of different kernels ` +
        `(${JSON.stringify(before.banner.trimEnd())} vs ${JSON.stringify(after.banner.trimEnd())}); a diff compares snapshots of one kernel build`,
    );
  }
  const counted = (process: SnapshotProcess) => options.includeKernelThreads === true || !process.kernelThread;
  const rows = [
    ...processRows(before.processes.filter(counted), after.processes.filter(counted)),
    ...moduleRows('module', before.modules, after.modules),
    ...syscallRows(before.syscalls, after.syscalls),
    // Never filtered: a kernel thread hidden from the task list is as suspicious as any task.
    ...hiddenProcessRows(before.hiddenProcesses, after.hiddenProcesses),
    ...moduleRows('hidden_module', before.hiddenModules, after.hiddenModules),
    ...kernelHookRows(before.kernelHooks, after.kernelHooks),
    ...(before.signatures && after.signatures ? signatureRows(before.signatures, after.signatures) : []),
    ...socketRows(before.sockets, after.sockets),
    ...executableRegionRows(before, after),
  ];
  return rows.sort(compareRows);
}

interface Matched<T> {
  readonly removed: T[];
  readonly added: T[];
  readonly kept: Array<readonly [before: T, after: T]>;
}

/** Items of two snapshots matched by identity: those only before, those only after, and the pairs in both. */
function match<T>(before: readonly T[], after: readonly T[], identity: (item: T) => string): Matched<T> {
  const beforeByKey = new Map(before.map((item) => [identity(item), item]));
  const afterByKey = new Map(after.map((item) => [identity(item), item]));
  const kept: Array<readonly [T, T]> = [];
  for (const [key, item] of beforeByKey) {
    const later = afterByKey.get(key);
    if (later !== undefined) kept.push([item, later]);
  }
  return {
    removed: [...beforeByKey].filter(([key]) => !afterByKey.has(key)).map(([, item]) => item),
    added: [...afterByKey].filter(([key]) => !beforeByKey.has(key)).map(([, item]) => item),
    kept,
  };
}

/**
 * A pid alone names different processes over time (pids are reused), and the start time alone
 * is not unique; together they are what the kernel itself keeps for one process's life.
 */
const processIdentity = (process: SnapshotProcess) => `${process.pid}:${process.startTime}`;

function processRow(
  kind: 'process' | 'hidden_process',
  change: DiffChange,
  process: SnapshotProcess,
  detail = describeProcess(process),
): DiffRow {
  return { kind, change, pid: process.pid, name: null, comm: process.comm, detail };
}

function describeProcess(process: SnapshotProcess): string {
  const started = `started ${(Number(process.startTime) / 1e9).toFixed(3)} s after boot`;
  const kernelThread = process.kernelThread ? ', kernel thread' : '';
  return `${started}, ppid ${process.ppid}${kernelThread}: ${commandLine(process)}`;
}

/** argv as ps shows it; `[comm]` for a kernel thread, `?` when unreadable. */
function commandLine(process: SnapshotProcess): string {
  if (process.cmdline) return process.cmdline.join(' ');
  return process.kernelThread ? `[${process.comm}]` : '?';
}

function processRows(before: readonly SnapshotProcess[], after: readonly SnapshotProcess[]): DiffRow[] {
  const { removed, added, kept } = match(before, after, processIdentity);
  const changed = kept.flatMap(([old, now]) => {
    const changes: string[] = [];
    // exec() keeps the pid and start time but gives a new comm and argv. An unreadable argv
    // (null) is unknown, not empty: only two readable ones are compared.
    if (old.comm !== now.comm) changes.push(`comm ${old.comm} → ${now.comm}`);
    if (old.cmdline && now.cmdline && !sameStrings(old.cmdline, now.cmdline))
      changes.push(`cmdline ${commandLine(old)} → ${commandLine(now)}`);
    return changes.length > 0 ? [processRow('process', 'changed', now, changes.join('; '))] : [];
  });
  return [
    ...removed.map((process) => processRow('process', 'ended', process)),
    ...added.map((process) => processRow('process', 'started', process)),
    ...changed,
  ];
}

function hiddenProcessRows(before: readonly SnapshotProcess[], after: readonly SnapshotProcess[]): DiffRow[] {
  const { removed, added } = match(before, after, processIdentity);
  return [
    ...removed.map((process) => processRow('hidden_process', 'disappeared', process)),
    ...added.map((process) => processRow('hidden_process', 'appeared', process)),
  ];
}

/**
 * Modules match by name: their addresses are randomized at every load, so two boots of one
 * kernel (or a reload) put the same module elsewhere, and a module name is unique in a kernel.
 */
function moduleRows(
  kind: 'module' | 'hidden_module',
  before: readonly SnapshotModule[],
  after: readonly SnapshotModule[],
): DiffRow[] {
  const { removed, added } = match(before, after, (module) => module.name);
  const [gone, came]: [DiffChange, DiffChange] =
    kind === 'module' ? ['unloaded', 'loaded'] : ['disappeared', 'appeared'];
  const row = (change: DiffChange, module: SnapshotModule): DiffRow => ({
    kind,
    change,
    pid: null,
    name: module.name,
    comm: null,
    detail: `struct module ${hex(module.address)}`,
  });
  return [...removed.map((module) => row(gone, module)), ...added.map((module) => row(came, module))];
}

/**
 * Where an entry points, as comparable across snapshots: its symbol when it has one (KASLR moves
 * every address between boots of the same kernel, not what they resolve to), its address otherwise.
 */
const syscallTarget = (syscall: SnapshotSyscall) =>
  `${syscall.symbol ?? hex(syscall.value)}${syscall.hooked ? ' (hooked)' : ''}`;

function describeSyscallTarget(syscall: SnapshotSyscall): string {
  return `${syscall.symbol ?? '?'} (${hex(syscall.value)}${syscall.hooked ? ', hooked' : ''})`;
}

function syscallRows(before: readonly SnapshotSyscall[], after: readonly SnapshotSyscall[]): DiffRow[] {
  const { removed, added, kept } = match(before, after, (syscall) => `${syscall.table}[${syscall.index}]`);
  const row = (change: DiffChange, syscall: SnapshotSyscall, detail: string): DiffRow => ({
    kind: 'syscall',
    change,
    pid: null,
    name: syscall.name ?? `${syscall.table}[${syscall.index}]`,
    comm: null,
    detail: `${syscall.table}[${syscall.index}]: ${detail}`,
  });
  return [
    ...removed.map((syscall) => row('disappeared', syscall, describeSyscallTarget(syscall))),
    ...added.map((syscall) => row('appeared', syscall, describeSyscallTarget(syscall))),
    ...kept
      .filter(([old, now]) => syscallTarget(old) !== syscallTarget(now))
      .map(([old, now]) => row('changed', now, `${describeSyscallTarget(old)} → ${describeSyscallTarget(now)}`)),
  ];
}

const isDiffKind = (kind: string): kind is DiffKind => (DIFF_KINDS as readonly string[]).includes(kind);

/**
 * Kernel hooks match by kind and subject (the hooked function, vector, table field, program or
 * process): addresses move with KASLR between boots, what was hooked does not.
 */
function kernelHookRows(before: readonly SnapshotKernelHook[], after: readonly SnapshotKernelHook[]): DiffRow[] {
  const { removed, added } = match(before, after, (hook) => `${hook.kind}\0${hook.subject}`);
  const row = (change: DiffChange, hook: SnapshotKernelHook): DiffRow[] =>
    isDiffKind(hook.kind)
      ? [
          {
            kind: hook.kind,
            change,
            pid: null,
            name: hook.subject,
            comm: null,
            detail: `${hook.subject}, owned by ${hook.owner}: ${hook.detail}`,
          },
        ]
      : [];
  return [...removed.flatMap((hook) => row('disappeared', hook)), ...added.flatMap((hook) => row('appeared', hook))];
}

function signatureRows(before: readonly SnapshotSignatureHit[], after: readonly SnapshotSignatureHit[]): DiffRow[] {
  const { removed, added } = match(before, after, (hit) => JSON.stringify([hit.rule, hit.string, hit.pid]));
  const row = (change: DiffChange, hit: SnapshotSignatureHit): DiffRow => ({
    kind: 'signature',
    change,
    pid: hit.pid,
    name: hit.rule,
    comm: hit.comm,
    detail: `${hit.rule} ${hit.string} in ${hit.pid === null ? 'kernel or unowned memory' : `pid ${hit.pid} (${hit.comm ?? '?'})`}`,
  });
  return [...removed.map((hit) => row('disappeared', hit)), ...added.map((hit) => row('appeared', hit))];
}

/** A socket is the same while its holder, protocol, endpoints and inode are: a state change (ESTABLISHED → CLOSE_WAIT) is a change of it. */
const socketIdentity = (socket: SnapshotSocket) =>
  JSON.stringify([
    socket.pid,
    socket.proto,
    socket.localAddress,
    socket.localPort,
    socket.remoteAddress,
    socket.remotePort,
    socket.inode,
  ]);

function describeSocket(socket: SnapshotSocket): string {
  const remote = socket.remotePort === 0 ? '' : ` ↔ ${socket.remoteAddress}:${socket.remotePort}`;
  const holder = socket.pid === null ? 'no process' : `pid ${socket.pid} (${socket.comm ?? '?'})`;
  return `${socket.proto} ${socket.localAddress}:${socket.localPort}${remote} ${socket.state}, inode ${socket.inode}, held by ${holder}`;
}

/** Inet sockets opened and closed, and those whose state changed. */
function socketRows(before: readonly SnapshotSocket[], after: readonly SnapshotSocket[]): DiffRow[] {
  const { removed, added, kept } = match(before, after, socketIdentity);
  const row = (change: DiffChange, socket: SnapshotSocket, detail = describeSocket(socket)): DiffRow => ({
    kind: 'socket',
    change,
    pid: socket.pid,
    name: `${socket.proto}/${socket.localPort}`,
    comm: socket.comm,
    detail,
  });
  return [
    ...removed.map((socket) => row('closed', socket)),
    ...added.map((socket) => row('opened', socket)),
    ...kept
      .filter(([old, now]) => old.state !== now.state)
      .map(([old, now]) => row('changed', now, `${describeSocket(now)}: state ${old.state} → ${now.state}`)),
  ];
}

/**
 * Executable regions that appeared in a process present in both snapshots (a new process's
 * regions are its start, already reported): code loaded or injected since the last snapshot.
 */
function executableRegionRows(before: SnapshotSummary, after: SnapshotSummary): DiffRow[] {
  const owner = (region: SnapshotRegion) => `${region.pid}:${region.startTime}`;
  const owners = new Set(before.executableRegions.map(owner));
  const regionIdentity = (region: SnapshotRegion) =>
    JSON.stringify([owner(region), String(region.start), String(region.end), region.perms, region.path]);
  const { added } = match(
    before.executableRegions,
    after.executableRegions.filter((region) => owners.has(owner(region))),
    regionIdentity,
  );
  return added.map((region) => ({
    kind: 'executable_region',
    change: 'appeared',
    pid: region.pid,
    name: `${hex(region.start)}-${hex(region.end)}`,
    comm: region.comm,
    detail: `${region.perms} ${hex(region.start)}-${hex(region.end)} ${region.path || (region.injected ? 'anonymous (injected code?)' : 'anonymous')}`,
  }));
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

/** Kind, then pid (kernel-wide rows first), then name, then change, then detail: a total order. */
function compareRows(a: DiffRow, b: DiffRow): number {
  return (
    DIFF_KINDS.indexOf(a.kind) - DIFF_KINDS.indexOf(b.kind) ||
    (a.pid ?? -1) - (b.pid ?? -1) ||
    compareText(a.name ?? '', b.name ?? '') ||
    DIFF_CHANGES.indexOf(a.change) - DIFF_CHANGES.indexOf(b.change) ||
    compareText(a.detail, b.detail)
  );
}

/** Code-unit order, not locale order: the same on every machine. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
