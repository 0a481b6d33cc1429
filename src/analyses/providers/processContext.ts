import { readEnvironment, type ProcessEnvironment } from '../../os/linux/environment.js';
import { executablePath } from '../../os/linux/exe.js';
import { readOpenFiles, type ProcessFiles } from '../../os/linux/files.js';
import { findSuspiciousRegions, type ProcessSuspiciousRegions } from '../../os/linux/malfind.js';
import type { ResolvedPath } from '../../os/linux/paths.js';
import { readSockets, type SocketTables } from '../../os/linux/sockets.js';
import type { TaskInfo } from '../../os/linux/tasks.js';
import { readMemoryRegions, type ProcessRegions } from '../../os/linux/vmas.js';
import { defineProvider, type DumpContext } from '../context.js';
import { kernelProvider, readerProvider } from './kernel.js';
import { everyProcessProvider, taskListProvider } from './processes.js';

/**
 * What each process holds (memory regions, open files, environment, executable, suspicious
 * code), read once per context for every process the dump has, hidden ones included (the
 * executable: listed ones): every analysis, `check` and the monitor's summary share one walk.
 */
export interface PerProcess<T> {
  /** Every process (task list order, then hidden ones) with its value. */
  readonly entries: ReadonlyArray<{ readonly task: TaskInfo; readonly value: T }>;
  /** By task_struct address. */
  readonly byTask: ReadonlyMap<bigint, T>;
  /** What could not be read, each naming the process. */
  readonly warnings: readonly string[];
}

/** A process as warnings name it. */
export const processLabel = (task: TaskInfo): string => `pid ${task.pid} (${task.comm})`;

/** The listed processes (cheap), or every process, hidden ones included (carving the whole dump once). */
type ProcessSet = 'listed' | 'every';

async function processesOf(
  context: DumpContext,
  set: ProcessSet,
): Promise<{ processes: readonly TaskInfo[]; warnings: readonly string[] }> {
  if (set === 'every') return context.get(everyProcessProvider);
  const list = await context.get(taskListProvider);
  return { processes: list.tasks, warnings: list.warnings };
}

/** `read` applied to a set of processes (`userOnly`: those with user memory), its problems turned into warnings naming the process. */
async function perProcess<T>(
  context: DumpContext,
  what: string,
  read: (task: TaskInfo) => T,
  problemsOf: (value: T) => readonly string[],
  { set, userOnly }: { set: ProcessSet; userOnly: boolean },
): Promise<PerProcess<T>> {
  const every = await processesOf(context, set);
  const warnings = [...every.warnings];
  const entries = every.processes
    .filter((task) => !userOnly || (!task.kernelThread && task.mm !== 0n))
    .map((task) => {
      const value = read(task);
      for (const problem of problemsOf(value)) warnings.push(`${processLabel(task)}: ${what}: ${problem}`);
      return { task, value };
    });
  return { entries, byTask: new Map(entries.map(({ task, value }) => [task.task, value])), warnings };
}

/** Each user process's memory regions, as /proc/PID/maps lists them. */
export const memoryRegionsProvider = defineProvider<PerProcess<ProcessRegions>>('memory regions', async (context) => {
  const reader = await context.get(readerProvider);
  return perProcess(
    context,
    'maps',
    (task) => readMemoryRegions(reader, task.mm),
    (value) => value.problems,
    { set: 'every', userOnly: true },
  );
});

/** Each process's fd table, as /proc/PID/fd lists it. */
export const openFilesProvider = defineProvider<PerProcess<ProcessFiles>>('open files', async (context) => {
  const reader = await context.get(readerProvider);
  return perProcess(
    context,
    'fd table',
    (task) => readOpenFiles(reader, task),
    (value) => value.problems,
    { set: 'every', userOnly: false },
  );
});

/** Every socket: in any process's fd table (hidden processes included) or in the kernel's TCP/UDP tables. */
export const socketsProvider = defineProvider<SocketTables>('sockets', async (context) => {
  const reader = await context.get(readerProvider);
  const files = await context.get(openFilesProvider);
  return readSockets(
    reader,
    files.entries.map(({ task, value }) => ({ task, files: value.files })),
  );
});

/** Each user process's environment, as /proc/PID/environ holds it. */
export const environmentProvider = defineProvider<PerProcess<ProcessEnvironment>>('environment', async (context) => {
  const kernel = await context.get(kernelProvider);
  const reader = await context.get(readerProvider);
  return perProcess(
    context,
    'environment',
    (task) => readEnvironment(kernel, reader, task),
    (value) => value.problems,
    { set: 'every', userOnly: true },
  );
});

/**
 * Each listed user process's executable (/proc/PID/exe); undefined for one without an executable
 * file. The task list only: pslist shows it, and must not pay for carving the dump.
 */
export const executablesProvider = defineProvider<PerProcess<ResolvedPath | undefined>>(
  'executables',
  async (context) => {
    const reader = await context.get(readerProvider);
    return perProcess(
      context,
      'exe',
      (task) => executablePath(reader, task),
      (value) => value?.problems ?? [],
      { set: 'listed', userOnly: true },
    );
  },
);

/** Each user process's executable memory that no file accounts for or that can be rewritten. */
export const suspiciousRegionsProvider = defineProvider<PerProcess<ProcessSuspiciousRegions>>(
  'suspicious regions',
  async (context) => {
    const kernel = await context.get(kernelProvider);
    const reader = await context.get(readerProvider);
    const regions = await context.get(memoryRegionsProvider);
    const found = await perProcess(
      context,
      'malfind',
      (task) => findSuspiciousRegions(kernel, reader, task, regions.byTask.get(task.task)?.regions ?? []),
      (value) => [...value.problems, ...value.regions.flatMap((region) => region.problems)],
      { set: 'every', userOnly: true },
    );
    return { ...found, warnings: [...regions.warnings, ...found.warnings] };
  },
);
