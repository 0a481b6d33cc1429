import { statSync } from 'node:fs';
import { DumpContext, type ContextOptions } from '../analyses/context.js';
import { kernelModules } from '../analyses/hiddenModules.js';
import { processList } from '../analyses/pslist.js';
import { psxview } from '../analyses/psxview.js';
import { yarascan } from '../analyses/yarascan.js';
import type { KernelReader } from '../os/linux/kernelReader.js';
import type { ModuleInfo } from '../os/linux/modules.js';
import { readArguments } from '../os/linux/processSpace.js';
import { checkSyscalls } from '../os/linux/syscalls.js';
import { optional, readTask, type TaskInfo } from '../os/linux/tasks.js';
import type { Profile } from '../symbols/profile.js';
import { VmscopeError } from '../util/errors.js';
import { parseHex } from '../util/hex.js';
import type { SnapshotModule, SnapshotProcess, SnapshotSignatureHit, SnapshotSummary, SnapshotSyscall } from './snapshot.js';

/** What a summary gathers besides the defaults. */
export interface SummarizeOptions {
  /** YARA rule files to scan the dump with (a policy's `signatures` rules): fills `signatures`; none (or an empty list) leaves it undefined. */
  rulesFiles?: readonly string[];
}

/**
 * Before 2000 a guest clock was never set (no RTC: it counts from 1970 at boot), and a value past
 * 2200 is no clock at all: either way the file's mtime says more about when the dump was taken.
 */
const EARLIEST_PLAUSIBLE_CLOCK = Date.UTC(2000, 0, 1) / 1000;
const LATEST_PLAUSIBLE_CLOCK = Date.UTC(2200, 0, 1) / 1000;

/**
 * What the monitor keeps of one dump: processes (with argv), hidden processes, modules, hidden
 * modules and the syscall table, read by the same os-level code as pslist, psaux, psxview,
 * hidden-modules and syscalls, plus the guest's wall clock. As in those analyses, a broken list
 * or an unreadable object is a warning, not an error: a summary of a damaged dump still compares.
 */
export async function summarizeSnapshot(context: DumpContext, options: SummarizeOptions = {}): Promise<SnapshotSummary> {
  const { kernel } = context;
  const warnings: string[] = [...kernel.warnings];

  const listed = await processList(context);
  warnings.push(...listed.warnings);
  const processes = listed.tasks.map((task) => snapshotProcess(context, listed.reader, task, warnings));
  const hiddenProcesses = await findHiddenProcesses(context, listed.reader, warnings);

  const modules = await kernelModules(context);
  warnings.push(...modules.warnings);
  const hiddenModules = modules.hidden.map((found) => found.module);
  const syscalls = checkSyscalls(modules.reader, [...modules.modules, ...hiddenModules]);
  warnings.push(...syscalls.problems);

  const clock = guestClock(listed.reader) ?? fileClock(context.path, warnings);
  return {
    path: context.path,
    banner: kernel.banner,
    capturedAt: clock.at,
    capturedAtSource: clock.source,
    // No rules, no scan: empty signatures would claim a scan that found nothing.
    ...(options.rulesFiles?.length ? { signatures: await signatureHits(context, options.rulesFiles, warnings) } : {}),
    processes,
    hiddenProcesses,
    modules: modules.modules.map(snapshotModule),
    hiddenModules: hiddenModules.map(snapshotModule),
    syscalls: syscalls.checks.map(
      (check): SnapshotSyscall => ({
        table: check.table,
        index: check.index,
        name: check.name ?? null,
        value: check.address,
        symbol: check.symbol ?? null,
        hooked: check.hooked,
      }),
    ),
    // Several sources report the same broken link (psxview walks the task list again).
    warnings: [...new Set(warnings)],
  };
}

/**
 * A task as the summary keeps it. argv read only in part (a page swapped out or missing from the
 * dump) is kept as null, unknown, rather than as a shorter argv that diff would take for a change.
 */
function snapshotProcess(context: DumpContext, reader: KernelReader, task: TaskInfo, warnings: string[]): SnapshotProcess {
  let cmdline: string[] | null = null;
  if (!task.kernelThread && task.mm !== 0n) {
    const { argv, problems } = readArguments(context.kernel, reader, task);
    for (const problem of problems) warnings.push(`pid ${task.pid} (${task.comm}): ${problem}`);
    if (problems.length === 0) cmdline = argv;
  }
  return { pid: task.pid, ppid: task.ppid, comm: task.comm, cmdline, startTime: task.startTime, kernelThread: task.kernelThread };
}

/** Opens the dump, summarizes it and closes it: what the monitor keeps of a snapshot is the summary alone. */
export async function summarizeDump(path: string, contextOptions: ContextOptions = {}, options: SummarizeOptions = {}): Promise<SnapshotSummary> {
  const context = new DumpContext(path, contextOptions);
  try {
    return await summarizeSnapshot(context, options);
  } finally {
    context.close();
  }
}

/** Who holds each rule's hits, once per (rule, string, holder): a physical yarascan per rule file. */
async function signatureHits(context: DumpContext, rulesFiles: readonly string[], warnings: string[]): Promise<SnapshotSignatureHit[]> {
  const hits = new Map<string, SnapshotSignatureHit>();
  for (const rules of rulesFiles) {
    const scan = await yarascan(context, { rules });
    warnings.push(...scan.warnings);
    for (const row of scan.rows) {
      const pid = typeof row.pid === 'number' ? row.pid : null;
      const hit = { rule: String(row.rule), string: String(row.string), pid, comm: pid === null ? null : String(row.comm) };
      hits.set(`${hit.rule}\0${hit.string}\0${pid}`, hit);
    }
  }
  return [...hits.values()];
}

/** The processes psxview judges hidden (alive but off the task list), read again as tasks for their start time and argv. */
async function findHiddenProcesses(context: DumpContext, reader: KernelReader, warnings: string[]): Promise<SnapshotProcess[]> {
  const view = await psxview(context);
  warnings.push(...view.warnings);
  const hidden: SnapshotProcess[] = [];
  for (const row of view.rows) {
    if (row.hidden !== true || typeof row.task !== 'string') continue;
    const task = optional(() => readTask(reader, parseHex(row.task as string)));
    if (task) hidden.push(snapshotProcess(context, reader, task, warnings));
    else warnings.push(`hidden process ${String(row.pid)}: task_struct ${row.task} is unreadable`);
  }
  return hidden;
}

function snapshotModule(module: ModuleInfo): SnapshotModule {
  return { name: module.name, address: module.address };
}

interface CaptureClock {
  readonly at: Date;
  readonly source: SnapshotSummary['capturedAtSource'];
}

/**
 * The guest's wall clock when it stopped: `tk_core.timekeeper.xtime_sec`, the CLOCK_REALTIME
 * seconds the kernel advances on every tick. Undefined when the kernel's symbols or types do not
 * describe it, or when it holds no plausible date.
 */
function guestClock(reader: KernelReader): CaptureClock | undefined {
  const { profile } = reader;
  const tkCore = profile.symbol('tk_core');
  const timekeeperOffset = timekeeperInTkCore(profile);
  if (tkCore === undefined || timekeeperOffset === undefined || !profile.hasField('timekeeper', 'xtime_sec')) return undefined;
  const seconds = optional(() => reader.u64(tkCore + BigInt(timekeeperOffset) + reader.offset('timekeeper', 'xtime_sec')));
  if (seconds === undefined || seconds < EARLIEST_PLAUSIBLE_CLOCK || seconds > LATEST_PLAUSIBLE_CLOCK) return undefined;
  return { at: new Date(Number(seconds) * 1000), source: 'guest-clock' };
}

/**
 * Where struct timekeeper sits in tk_core. Since 6.13 tk_core is a `struct tk_data`; before, it
 * is declared with an anonymous `struct { seqcount_raw_spinlock_t seq; struct timekeeper
 * timekeeper; }`, which BTF keeps unnamed: it is found by those two members. The offset comes
 * from the profile either way (the sequence counter's size depends on the kernel's lockdep
 * configuration), and is undefined when the candidates disagree.
 */
function timekeeperInTkCore(profile: Profile): number | undefined {
  const named = profile.type('tk_data')?.fields.timekeeper;
  if (named) return named.offset;
  const offsets = new Set<number>();
  for (const type of Object.values(profile.types.user_types)) {
    const { seq, timekeeper } = type.fields;
    if (seq && timekeeper?.type.kind === 'struct' && timekeeper.type.name === 'timekeeper') offsets.add(timekeeper.offset);
  }
  return offsets.size === 1 ? [...offsets][0] : undefined;
}

/** The warning of a summary whose capture time is the file's mtime. */
export const CLOCK_FALLBACK_WARNING = `the guest's clock (tk_core.timekeeper.xtime_sec) is unreadable or implausible: capture time is the file's modification time`;

function fileClock(path: string, warnings: string[]): CaptureClock {
  warnings.push(CLOCK_FALLBACK_WARNING);
  try {
    return { at: statSync(path).mtime, source: 'file-mtime' };
  } catch (error) {
    throw new VmscopeError('UNREADABLE_FILE', `cannot read the modification time: ${(error as Error).message}`, path);
  }
}


/**
 * Whether some process, module or syscall may be missing from the summary: any warning but the
 * clock's, since a capture time taken from the file's mtime loses nothing a diff compares.
 */
export function isPartialSummary(summary: SnapshotSummary): boolean {
  return summary.warnings.some((warning) => warning !== CLOCK_FALLBACK_WARNING);
}
