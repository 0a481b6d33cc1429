import { checkFindings } from '../analyses/check.js';
import type { DumpContext } from '../analyses/context.js';
import { kernelProvider, readerProvider, uniqueWarnings } from '../analyses/providers/kernel.js';
import { suspiciousRegionsProvider } from '../analyses/providers/processContext.js';
import { processCrossViewProvider } from '../analyses/providers/processes.js';
import { kernelLogProvider } from '../analyses/providers/tampering.js';
import type { CellValue } from '../analyses/types.js';
import { yarascanAnalysis } from '../analyses/yarascan.js';
import type { WatchAlert } from '../monitor/watch.js';
import { diffSnapshots, type DiffOptions } from '../monitor/diff.js';
import type { SnapshotProcess, SnapshotSummary } from '../monitor/snapshot.js';
import { summarizeSnapshot } from '../monitor/summarize.js';
import { processAddressSpace } from '../os/linux/processSpace.js';
import { optional } from '../os/linux/tasks.js';
import { hex } from '../util/hex.js';
import type {
  CarvedTask,
  DiffReport,
  DumpReport,
  MemoryMark,
  ReportAlert,
  ReportFinding,
  ReportMemoryMap,
  ReportSignatureHit,
  SnapshotHeader,
  TimelineEvent,
} from './model.js';

/** Nanoseconds since boot as the report's seconds. */
const seconds = (nanoseconds: bigint) => Number(nanoseconds) / 1e9;

/** What a dump's context adds to its summary: findings, carving, the log, where things lie in physical memory. */
interface DumpExtras {
  readonly format: string | null;
  readonly bytes: number | null;
  readonly findings: readonly ReportFinding[] | null;
  readonly alerts: readonly ReportAlert[] | null;
  readonly signatures: readonly ReportSignatureHit[] | null;
  readonly carvedTasks: readonly CarvedTask[];
  readonly memory: ReportMemoryMap | null;
  readonly kernelLog: ReadonlyArray<{ readonly seconds: number; readonly text: string }>;
  /** Beyond the summary's own. */
  readonly warnings: readonly string[];
}

/**
 * The report of one dump: the monitor's summary (processes with argv, sockets, modules, regions,
 * environments), `check`'s findings, carved tasks, the kernel log, and, with rules, every hit
 * with its owner; everything from providers, computed once in `context`.
 */
export async function buildDumpReport(
  context: DumpContext,
  options: { readonly rulesFile?: string } = {},
): Promise<DumpReport> {
  const summary = await summarizeSnapshot(context);
  const check = await checkFindings((provider) => context.get(provider));
  const view = await context.get(processCrossViewProvider);
  const log = await context.get(kernelLogProvider);
  const warnings = [...check.problems, ...log.problems];
  const signatures = options.rulesFile ? await signatureHits(context, options.rulesFile, warnings) : null;
  const carvedTasks = view.sightings
    .filter(({ sources }) => sources.has('psscan'))
    .sort((a, b) => a.task.physical - b.task.physical)
    .map(({ task, hidden }) => ({
      pid: task.info.pid,
      comm: task.info.comm,
      physical: hex(task.physical),
      life: task.life,
      hidden,
    }));
  const marks: MemoryMark[] = [
    ...(signatures ?? []).flatMap((hit): MemoryMark[] =>
      hit.physical === null
        ? []
        : [{ kind: 'signature', physical: Number(hit.physical), label: `${hit.rule} ${hit.string ?? ''}` }],
    ),
    ...carvedTasks.map((task): MemoryMark => ({
      kind: 'carved_task',
      physical: Number(task.physical),
      label: `task_struct pid ${task.pid} ${task.comm}${task.hidden ? ' (hidden)' : ''}`,
    })),
    ...(await injectedMarks(context)),
  ];
  return dumpReport(summary, {
    format: context.image.format,
    bytes: context.image.totalBytes,
    findings: check.findings,
    alerts: null,
    signatures,
    carvedTasks,
    memory: { ranges: context.image.ranges.map((range) => [range.start, range.end] as const), marks },
    kernelLog: log.records.map((record) => ({ seconds: seconds(record.timestampNs), text: record.text })),
    warnings,
  });
}

/** The report of a snapshot a watch alerted on: its summary (the dump may be gone) and the alerts it raised. */
export function buildSnapshotReport(summary: SnapshotSummary, alerts: readonly WatchAlert[]): DumpReport {
  return dumpReport(summary, {
    format: null,
    bytes: null,
    findings: null,
    alerts: alerts.map(({ type, kind, rule, severity, pid, comm, detail }) => ({
      type,
      kind,
      rule,
      severity,
      pid,
      comm,
      detail,
    })),
    signatures:
      summary.signatures?.map((hit) => ({
        ...hit,
        physical: null,
        owner: hit.pid === null ? 'kernel or unowned' : 'process',
        virtual: null,
      })) ?? null,
    carvedTasks: [],
    memory: null,
    kernelLog: [],
    warnings: [],
  });
}

function dumpReport(summary: SnapshotSummary, extras: DumpExtras): DumpReport {
  const fileless = new Map(summary.filelessProcesses.map((process) => [process.pid, process.exe]));
  const injected = new Map<number, number>();
  for (const region of summary.executableRegions)
    if (region.injected) injected.set(region.pid, (injected.get(region.pid) ?? 0) + 1);
  const process = (task: SnapshotProcess, hidden: boolean) => ({
    pid: task.pid,
    ppid: task.ppid,
    comm: task.comm,
    cmdline: task.cmdline,
    startSeconds: seconds(task.startTime),
    kernelThread: task.kernelThread,
    hidden,
    fileless: fileless.get(task.pid) ?? null,
    injectedRegions: injected.get(task.pid) ?? 0,
  });
  const modules = [
    ...summary.modules.map((module) => ({ name: module.name, address: hex(module.address), hidden: false })),
    ...summary.hiddenModules.map((module) => ({ name: module.name, address: hex(module.address), hidden: true })),
  ];
  return {
    type: 'dump',
    generatedAt: new Date().toISOString(),
    source: { path: summary.path, format: extras.format, bytes: extras.bytes },
    kernel: {
      banner: summary.banner.trimEnd(),
      capturedAt: summary.capturedAt.toISOString(),
      capturedAtSource: summary.capturedAtSource,
    },
    findings: extras.findings,
    alerts: extras.alerts,
    processes: [
      ...summary.processes.map((task) => process(task, false)),
      ...summary.hiddenProcesses.map((task) => process(task, true)),
    ],
    environments: summary.environments.map(({ pid, variables }) => ({ pid, variables })),
    sockets: summary.sockets.map((socket) => ({
      pid: socket.pid,
      comm: socket.comm,
      proto: socket.proto,
      local: `${socket.localAddress}:${socket.localPort}`,
      remote: socket.remotePort === 0 ? '' : `${socket.remoteAddress}:${socket.remotePort}`,
      state: socket.state,
      inode: socket.inode,
    })),
    modules,
    signatures: extras.signatures,
    carvedTasks: extras.carvedTasks,
    memory: extras.memory,
    timeline: timeline(summary, extras.kernelLog, new Set(modules.map((module) => module.name))),
    warnings: uniqueWarnings(extras.warnings, summary.warnings),
  };
}

/** A kernel log line a module printed (`name: …`): the log is where a module's load time is. */
const MODULE_MESSAGE = /^([\w-]+): /;

/** Process starts and the kernel log, in time order; log lines a module printed are that module's events. */
function timeline(
  summary: SnapshotSummary,
  kernelLog: DumpExtras['kernelLog'],
  moduleNames: ReadonlySet<string>,
): TimelineEvent[] {
  const starts = [...summary.processes, ...summary.hiddenProcesses].map((process): TimelineEvent => ({
    seconds: seconds(process.startTime),
    kind: 'process_start',
    text: `pid ${process.pid} ${process.comm} started (ppid ${process.ppid})`,
  }));
  const log = kernelLog.map((record): TimelineEvent => ({
    seconds: record.seconds,
    kind: moduleNames.has(MODULE_MESSAGE.exec(record.text)?.[1] ?? '') ? 'module' : 'kernel_log',
    text: record.text,
  }));
  return [...starts, ...log].sort((a, b) => a.seconds - b.seconds);
}

/** A yarascan cell as text: its cells are strings, hex strings or null. */
const text = (value: CellValue | undefined) =>
  value === null || value === undefined ? null : typeof value === 'string' ? value : JSON.stringify(value);

/** Every rule hit with its owner, physical and virtual address (yarascan's physical scan). */
async function signatureHits(
  context: DumpContext,
  rulesFile: string,
  warnings: string[],
): Promise<ReportSignatureHit[]> {
  const scan = await yarascanAnalysis.run(context, { rules: rulesFile });
  warnings.push(...scan.warnings);
  return Array.from(scan.rows, (row) => ({
    rule: text(row.rule) ?? '',
    string: text(row.string),
    physical: text(row.physical),
    owner: text(row.owner) ?? 'unknown',
    pid: typeof row.pid === 'number' ? row.pid : null,
    comm: text(row.comm),
    virtual: text(row.virtual),
  }));
}

/** Where each injected region (executable memory backed by no file) starts in physical memory, when mapped. */
async function injectedMarks(context: DumpContext): Promise<MemoryMark[]> {
  const kernel = await context.get(kernelProvider);
  const reader = await context.get(readerProvider);
  const suspicious = await context.get(suspiciousRegionsProvider);
  return suspicious.entries.flatMap(({ task, value }) => {
    const regions = value.regions.filter((region) => region.region.file === 0n);
    if (regions.length === 0) return [];
    const space = optional(() => processAddressSpace(kernel, reader, task.mm));
    return regions.flatMap((region): MemoryMark[] => {
      const physical = space?.tryTranslate(region.start)?.physical;
      return physical === undefined
        ? []
        : [
            {
              kind: 'injected_code',
              physical,
              label: `pid ${task.pid} ${task.comm} ${region.perms} ${hex(region.start)}`,
            },
          ];
    });
  });
}

const header = (summary: SnapshotSummary): SnapshotHeader => ({
  path: summary.path,
  banner: summary.banner.trimEnd(),
  capturedAt: summary.capturedAt.toISOString(),
});

/** The report of what changed from `before` to `after` (the monitor's diff). */
export function buildDiffReport(
  before: SnapshotSummary,
  after: SnapshotSummary,
  options: DiffOptions = {},
): DiffReport {
  return {
    type: 'diff',
    generatedAt: new Date().toISOString(),
    before: header(before),
    after: header(after),
    rows: diffSnapshots(before, after, options).map(({ kind, change, pid, name, comm, detail }) => ({
      kind,
      change,
      pid,
      name,
      comm,
      detail,
    })),
    warnings: [
      ...before.warnings.map((warning) => `${before.path}: ${warning}`),
      ...after.warnings.map((warning) => `${after.path}: ${warning}`),
    ],
  };
}
