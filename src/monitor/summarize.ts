import { statSync } from 'node:fs';
import { DumpContext, type ContextOptions } from '../analyses/context.js';
import { readerProvider, uniqueWarnings } from '../analyses/providers/kernel.js';
import {
  allModulesProvider,
  hiddenModulesProvider,
  moduleListProvider,
  syscallReportProvider,
} from '../analyses/providers/modules.js';
import {
  environmentProvider,
  executablesProvider,
  memoryRegionsProvider,
  socketsProvider,
  suspiciousRegionsProvider,
} from '../analyses/providers/processContext.js';
import { processCrossViewProvider, taskListProvider } from '../analyses/providers/processes.js';
import { bpfProvider, kernelHookFindingsProvider } from '../analyses/providers/tampering.js';
import type { Analysis, AnyAnalysisResult } from '../analyses/types.js';
import { yarascanAnalysis } from '../analyses/yarascan.js';
import { filelessKind } from '../os/linux/exe.js';
import { readGuestClock } from '../os/linux/guestClock.js';
import type { KernelReader } from '../os/linux/kernelReader.js';
import type { ModuleInfo } from '../os/linux/modules.js';
import { readArguments } from '../os/linux/processSpace.js';
import type { TaskInfo } from '../os/linux/tasks.js';
import { VM_EXEC } from '../os/linux/vmas.js';
import { isVmscopeError, VmscopeError } from '../util/errors.js';
import { readHostMetadata } from './hostMetadata.js';
import type {
  HostMetadata,
  SnapshotAnalysisFinding,
  SnapshotBpfProgram,
  SnapshotEnvironment,
  SnapshotFileless,
  SnapshotModule,
  SnapshotProcess,
  SnapshotRegion,
  SnapshotSignatureHit,
  SnapshotSocket,
  SnapshotSummary,
  SnapshotSyscall,
} from './snapshot.js';

/** What a summary gathers besides the defaults. */
export interface SummarizeOptions {
  /** YARA rule files to scan the dump with (a policy's `signatures` rules): fills `signatures`; none (or an empty list) leaves it undefined. */
  rulesFiles?: readonly string[];
  /** The host's location (JSON: region, postal_code, timezone), read now: `host`, or `hostProblem` when unreadable. */
  hostMetadataFile?: string;
  /** When the host took the snapshot, when the source knows it; default the dump file's modification time. */
  hostCapturedAt?: Date;
  /** Analyses whose rows are findings (WASI plugins) run on the same dump: fills `analysisFindings`. */
  findingAnalyses?: readonly Analysis[];
}

/**
 * What the monitor keeps of one dump: processes (with argv), hidden processes, modules, hidden
 * modules and the syscall table, read by the same os-level code as pslist, psaux, psxview,
 * hidden-modules and syscalls; inet sockets, executable regions, fileless executables and
 * environments from the providers of sockstat, maps, malfind, pslist's exe and envars; the
 * guest's wall clock, the host's capture time and the host's location. As in those analyses, a broken list
 * hidden-modules and syscalls, the kernel hooks `check` reports (the same provider) and the
 * loaded eBPF programs, plus the guest's wall clock. As in those analyses, a broken list
 * or an unreadable object is a warning, not an error: a summary of a damaged dump still compares.
 */
export async function summarizeSnapshot(
  context: DumpContext,
  options: SummarizeOptions = {},
): Promise<SnapshotSummary> {
  const { kernel } = context;
  const reader = await context.get(readerProvider);
  const listed = await context.get(taskListProvider);
  const view = await context.get(processCrossViewProvider);
  const modules = await context.get(moduleListProvider);
  const hidden = await context.get(hiddenModulesProvider);
  const syscalls = await context.get(syscallReportProvider);
  const hooks = await context.get(kernelHookFindingsProvider);
  const bpf = await context.get(bpfProvider);
  const warnings: string[] = [
    ...kernel.warnings,
    ...listed.warnings,
    ...view.warnings,
    ...(await context.get(allModulesProvider)).warnings,
    ...syscalls.problems,
    ...hooks.problems,
  ];

  const processes = listed.tasks.map((task) => snapshotProcess(context, reader, task, warnings));
  // Processes psxview judges hidden (alive but off the task list): leaders only, as it shows them.
  const hiddenProcesses = view.sightings
    .filter(({ task, hidden: isHidden }) => isHidden && task.info.pid !== 0 && task.info.pid === task.info.tgid)
    .sort((a, b) => a.task.info.pid - b.task.info.pid || a.task.physical - b.task.physical)
    .map(({ task }) => snapshotProcess(context, reader, task.info, warnings));
  const hiddenModules = hidden.hidden.map((found) => found.module);

  const guestTime = readGuestClock(reader);
  const clock: CaptureClock = guestTime ? { at: guestTime, source: 'guest-clock' } : fileClock(context.path, warnings);
  const processState = await summarizeProcessState(context, warnings);
  return {
    path: context.path,
    banner: kernel.banner,
    capturedAt: clock.at,
    capturedAtSource: clock.source,
    // No rules, no scan: empty signatures would claim a scan that found nothing.
    ...(options.rulesFiles?.length ? { signatures: await signatureHits(context, options.rulesFiles, warnings) } : {}),
    ...(options.findingAnalyses?.length
      ? { analysisFindings: await analysisFindings(context, options.findingAnalyses, warnings) }
      : {}),
    processes,
    hiddenProcesses,
    modules: modules.modules.map(snapshotModule),
    hiddenModules: hiddenModules.map(snapshotModule),
    syscalls: syscalls.checks.map((check): SnapshotSyscall => ({
      table: check.table,
      index: check.index,
      name: check.name ?? null,
      value: check.address,
      symbol: check.symbol ?? null,
      hooked: check.hooked,
    })),
    ...processState,
    guestClock: guestTime ?? null,
    hostCapturedAt: options.hostCapturedAt ?? fileModified(context.path),
    ...hostLocation(options.hostMetadataFile),
    kernelHooks: hooks.findings.map(({ kind, subject, owner, detail }) => ({ kind, subject, owner, detail })),
    bpfPrograms: bpf.programs.map((program): SnapshotBpfProgram => ({
      id: program.id,
      name: program.name,
      type: program.typeName ?? String(program.type),
      helpers: [...new Set(program.calls.map((call) => call.name))],
      holders: [...new Set(program.holders.map((holder) => holder.comm))],
    })),
    // Several providers report the same broken link (the cross-view walks the task list again).
    warnings: uniqueWarnings(warnings),
  };
}

/**
 * A task as the summary keeps it. argv read only in part (a page swapped out or missing from the
 * dump) is kept as null, unknown, rather than as a shorter argv that diff would take for a change.
 */
function snapshotProcess(
  context: DumpContext,
  reader: KernelReader,
  task: TaskInfo,
  warnings: string[],
): SnapshotProcess {
  let cmdline: string[] | null = null;
  if (!task.kernelThread && task.mm !== 0n) {
    const { argv, problems } = readArguments(context.kernel, reader, task);
    for (const problem of problems) warnings.push(`pid ${task.pid} (${task.comm}): ${problem}`);
    if (problems.length === 0) cmdline = argv;
  }
  return {
    pid: task.pid,
    ppid: task.ppid,
    comm: task.comm,
    cmdline,
    startTime: task.startTime,
    kernelThread: task.kernelThread,
  };
}

/** Opens the dump, summarizes it and closes it: what the monitor keeps of a snapshot is the summary alone. */
export async function summarizeDump(
  path: string,
  contextOptions: ContextOptions = {},
  options: SummarizeOptions = {},
): Promise<SnapshotSummary> {
  const context = new DumpContext(path, contextOptions);
  try {
    return await summarizeSnapshot(context, options);
  } finally {
    context.close();
  }
}

/** The findings of each analysis; one that fails is a warning and is left out of `ran` (its rule is then not judged). */
async function analysisFindings(
  context: DumpContext,
  analyses: readonly Analysis[],
  warnings: string[],
): Promise<NonNullable<SnapshotSummary['analysisFindings']>> {
  const ran: string[] = [];
  const findings: SnapshotAnalysisFinding[] = [];
  for (const analysis of analyses) {
    let result: AnyAnalysisResult;
    try {
      result = await analysis.run(context);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      warnings.push(`${analysis.name}: ${error.describe()}`);
      continue;
    }
    ran.push(analysis.name);
    warnings.push(...result.warnings);
    for (const row of result.rows) {
      findings.push({
        analysis: analysis.name,
        kind: textOf(row['kind']),
        severity: textOf(row['severity']),
        subject: textOf(row['subject']),
        detail: textOf(row['detail']),
        pid: typeof row['pid'] === 'number' ? row['pid'] : null,
      });
    }
  }
  return { ran, findings };
}

/** A text cell of a row (yarascan's rule, string and comm are strings). */
const textOf = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** Who holds each rule's hits, once per (rule, string, holder): a physical yarascan per rule file. */
async function signatureHits(
  context: DumpContext,
  rulesFiles: readonly string[],
  warnings: string[],
): Promise<SnapshotSignatureHit[]> {
  const hits = new Map<string, SnapshotSignatureHit>();
  for (const rules of rulesFiles) {
    const scan = await yarascanAnalysis.run(context, { rules });
    warnings.push(...scan.warnings);
    for (const row of scan.rows) {
      const pid = typeof row.pid === 'number' ? row.pid : null;
      const hit = {
        rule: textOf(row.rule),
        string: textOf(row.string),
        pid,
        comm: pid === null ? null : textOf(row.comm),
      };
      hits.set(`${hit.rule}\0${hit.string}\0${pid}`, hit);
    }
  }
  return [...hits.values()];
}

function snapshotModule(module: ModuleInfo): SnapshotModule {
  return { name: module.name, address: module.address };
}

interface CaptureClock {
  readonly at: Date;
  readonly source: SnapshotSummary['capturedAtSource'];
}

/** The warning of a summary whose capture time is the file's mtime. */
export const CLOCK_FALLBACK_WARNING = `the guest's clock (the core timekeeper's xtime_sec) is unreadable or implausible: capture time is the file's modification time`;

function fileClock(path: string, warnings: string[]): CaptureClock {
  warnings.push(CLOCK_FALLBACK_WARNING);
  return { at: fileModified(path), source: 'file-mtime' };
}

function fileModified(path: string): Date {
  try {
    return statSync(path).mtime;
  } catch (error) {
    throw new VmscopeError('UNREADABLE_FILE', `cannot read the modification time: ${(error as Error).message}`, path);
  }
}

/** The host metadata file read now (a migrated guest is seen at its next snapshot); its problem kept, never thrown: a geo fence fails closed on it. */
function hostLocation(file: string | undefined): { host: HostMetadata | null; hostProblem: string | null } {
  if (file === undefined) return { host: null, hostProblem: null };
  try {
    return { host: readHostMetadata(file), hostProblem: null };
  } catch (error) {
    if (!isVmscopeError(error)) throw error;
    return { host: null, hostProblem: error.describe() };
  }
}

type ProcessState = Pick<SnapshotSummary, 'sockets' | 'executableRegions' | 'filelessProcesses' | 'environments'>;

/** Inet sockets, executable regions, fileless executables and environments: what network and process-state rules judge. */
async function summarizeProcessState(context: DumpContext, warnings: string[]): Promise<ProcessState> {
  const tables = await context.get(socketsProvider);
  const regions = await context.get(memoryRegionsProvider);
  const suspicious = await context.get(suspiciousRegionsProvider);
  const executables = await context.get(executablesProvider);
  const environment = await context.get(environmentProvider);
  warnings.push(
    ...tables.problems,
    ...regions.warnings,
    ...suspicious.warnings,
    ...executables.warnings,
    ...environment.warnings,
  );
  const sockets = tables.sockets
    .filter((socket) => socket.family === 'AF_INET' || socket.family === 'AF_INET6')
    .map((socket): SnapshotSocket => ({
      pid: socket.pid,
      comm: socket.comm,
      proto: socket.proto,
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      state: socket.state,
      inode: socket.inode,
    }));
  const executableRegions = regions.entries.flatMap(({ task, value }) => {
    const injected = new Set(
      (suspicious.byTask.get(task.task)?.regions ?? [])
        .filter(({ region }) => region.file === 0n)
        .map(({ region }) => region.vma),
    );
    return value.regions
      .filter((region) => (region.flags & VM_EXEC) !== 0n)
      .map((region): SnapshotRegion => ({
        pid: task.pid,
        comm: task.comm,
        startTime: task.startTime,
        start: region.start,
        end: region.end,
        perms: region.perms,
        path: region.path,
        injected: injected.has(region.vma),
      }));
  });
  const filelessProcesses = executables.entries.flatMap(({ task, value }): SnapshotFileless[] => {
    const kind = value && filelessKind(value);
    return kind ? [{ pid: task.pid, comm: task.comm, startTime: task.startTime, exe: value.path, kind }] : [];
  });
  const environments = environment.entries.map(({ task, value }): SnapshotEnvironment => ({
    pid: task.pid,
    comm: task.comm,
    startTime: task.startTime,
    variables: value.variables,
  }));
  return { sockets, executableRegions, filelessProcesses, environments };
}

/**
 * Whether some process, module or syscall may be missing from the summary: any warning but the
 * clock's, since a capture time taken from the file's mtime loses nothing a diff compares.
 */
export function isPartialSummary(summary: SnapshotSummary): boolean {
  return summary.warnings.some((warning) => warning !== CLOCK_FALLBACK_WARNING);
}
