import { availableParallelism } from 'node:os';
import { isDecodedImage } from '../../image/decodedImage.js';
import { DEFAULT_MAX_LIST_STEPS, type KernelReader } from '../../os/linux/kernelReader.js';
import { walkPidNamespace, type PidTask } from '../../os/linux/pidNamespace.js';
import { buildReverseMap, type ReverseMap } from '../../os/linux/reverseMap.js';
import { TaskCarver, type ExaminedTask } from '../../os/linux/taskCarving.js';
import { optional, walkTaskList, type TaskInfo } from '../../os/linux/tasks.js';
import { hex } from '../../util/hex.js';
import { defineProvider } from '../context.js';
import { readerProvider } from './kernel.js';

/** The task list as every process analysis sees it: leaders in list order, and what went wrong walking it. */
export interface TaskList {
  readonly tasks: readonly TaskInfo[];
  readonly warnings: readonly string[];
}

export const taskListProvider = defineProvider<TaskList>('task list', async (context) => {
  const reader = await context.get(readerProvider);
  const walk = walkTaskList(reader, reader.profile.requireSymbol('init_task'));
  return { tasks: walk.tasks, warnings: walk.problems.map((problem) => `task list: ${problem.detail}`) };
});

/** A carver over this dump's kernel: checks any address for being a task_struct. */
export const taskCarverProvider = defineProvider('task carver', async (context) =>
  TaskCarver.create(context.kernel, await context.get(readerProvider)),
);

/**
 * Every task_struct carved from physical memory: one pass over the whole dump, made once. When
 * the dump's memory is decoded (kdump, AVML, a migration stream), holds a lot to decode
 * (parallelCarveMinBytes stored) and there are search threads (the CLI's), the pass runs on them
 * and this thread is free for the analysis's other work until the hits come back: decoding GiBs of
 * pages is CPU work worth a core. A stored dump is read faster here than a thread starts and
 * competes with this one (measured on two cores: check 0.85-0.92 s here, 0.96-0.98 s on a thread),
 * and so is a small decoded one (DEFAULT_PARALLEL_CARVE_MIN_BYTES).
 */
export const carvedTasksProvider = defineProvider<readonly ExaminedTask[]>('carved tasks', async (context) => {
  const onProgress = context.progress('carving task_structs');
  const parallel = context.parallelNeedleSearch;
  const storedBytes = context.identity?.size ?? 0;
  if (!parallel || !isDecodedImage(context.image) || storedBytes < context.parallelCarveMinBytes)
    return (await context.get(taskCarverProvider)).carve(onProgress);
  // The threads start while this thread finds the kernel and its profile, where the needles come from.
  const carver = context.get(taskCarverProvider);
  const needles = carver.then((found) => found.needles);
  needles.catch(() => {}); // the carver's failure is reported through the search, or through `await carver`
  const hits = await parallel({
    path: context.path,
    identity: context.identity,
    needles,
    wordAligned: true,
    // One core stays with this thread: it goes on with the analysis (check's other checks) meanwhile.
    threads: Math.max(1, (context.defaultThreads ?? availableParallelism()) - 1),
    onProgress,
  });
  return (await carver).tasksAt(hits);
});

/** The tasks of the initial pid namespace (its IDR), what /proc reads. */
export interface PidNamespaceTasks {
  readonly tasks: readonly PidTask[];
  readonly warnings: readonly string[];
}

export const pidNamespaceProvider = defineProvider<PidNamespaceTasks>('pid namespace', async (context) => {
  const reader = await context.get(readerProvider);
  const pids = walkPidNamespace(reader, reader.profile.requireSymbol('init_pid_ns'));
  return { tasks: pids.found, warnings: pids.problems.map((problem) => `pid namespace: ${problem.detail}`) };
});

/** The independent ways of finding a task. */
export const TASK_SOURCES = ['pslist', 'pid_hash', 'children', 'psscan'] as const;
export type TaskSource = (typeof TASK_SOURCES)[number];

/** One task_struct (by physical address, so aliases meet), the sources that found it, and the verdict. */
export interface TaskSighting {
  readonly task: ExaminedTask;
  readonly sources: ReadonlySet<TaskSource>;
  /** Alive (not reaped) and missing from the task list: hidden by DKOM. */
  readonly hidden: boolean;
}

export interface ProcessCrossView {
  /** Every task any source found, processes and threads, in no particular order. */
  readonly sightings: readonly TaskSighting[];
  readonly warnings: readonly string[];
}

/**
 * A task found by another view but missing from the task list is hidden when it is not dead:
 * a reaped task is off every list by design. Found by psscan alone, it must also show that it
 * was taken off a list (links unlinked, deleted, or on some other ring): stale links copied
 * from its parent mean it never joined one (a fork caught half-way, or one that failed).
 */
function isHidden(task: ExaminedTask, sources: ReadonlySet<TaskSource>): boolean {
  if (sources.has('pslist') || task.life === 'exited') return false;
  return sources.has('pid_hash') || sources.has('children') || task.taskList !== 'stale';
}

class CrossView {
  readonly sightings = new Map<number, { task: ExaminedTask; sources: Set<TaskSource> }>();
  readonly warnings: string[] = [];

  constructor(
    private readonly reader: KernelReader,
    private readonly carver: TaskCarver,
  ) {}

  note(task: ExaminedTask, source: TaskSource): void {
    const known = this.sightings.get(task.physical);
    if (known) known.sources.add(source);
    else this.sightings.set(task.physical, { task, sources: new Set([source]) });
  }

  /** The task at `address` as a list named it, or undefined (with a warning) when it cannot be one. */
  plausibleTask(address: bigint, where: string): ExaminedTask | undefined {
    const task = this.carver.inspect(address);
    if (typeof task !== 'string') return task;
    this.warnings.push(`${where}: ${hex(address)} is not a task_struct: ${task}`);
    return undefined;
  }

  /**
   * Every task reachable through `children` lists (linked by `sibling`) from `roots` and from
   * what it finds in turn, so the descendants of a task no other view knows are found too.
   */
  walkChildren(roots: readonly bigint[]): void {
    const { reader } = this;
    const childrenOffset = reader.offset('task_struct', 'children');
    const siblingOffset = reader.offset('task_struct', 'sibling');
    const visited = new Set(roots);
    const pending = [...visited];
    for (let parent = pending.pop(); parent !== undefined; parent = pending.pop()) {
      const walk = reader.walkList(parent + childrenOffset, siblingOffset);
      if (walk.problem) this.warnings.push(`children of ${hex(parent)}: ${walk.problem.detail}`);
      for (const child of walk.entries) {
        const task = this.plausibleTask(child, `children of ${hex(parent)}`);
        if (!task) continue;
        this.note(task, 'children');
        if (visited.has(child)) continue;
        if (visited.size >= DEFAULT_MAX_LIST_STEPS) {
          this.warnings.push(`children: stopped after ${DEFAULT_MAX_LIST_STEPS} tasks`);
          return;
        }
        visited.add(child);
        pending.push(child);
      }
    }
  }
}

/** Every task found by the task list, the pid namespace, children lists or carving, joined by physical address. */
export const processCrossViewProvider = defineProvider<ProcessCrossView>('process cross-view', async (context) => {
  const reader = await context.get(readerProvider);
  const carver = await context.get(taskCarverProvider);
  const view = new CrossView(reader, carver);
  const listed = await context.get(taskListProvider);
  for (const info of listed.tasks) {
    const task = optional(() => carver.examine(info));
    if (task) view.note(task, 'pslist');
    else view.warnings.push(`task list: task_struct ${hex(info.task)} (pid ${info.pid}) is unreadable`);
  }
  const pids = await context.get(pidNamespaceProvider);
  for (const { pid, task: address } of pids.tasks) {
    const task = view.plausibleTask(address, `pid namespace, pid ${pid}`);
    if (task) view.note(task, 'pid_hash');
  }
  for (const task of await context.get(carvedTasksProvider)) view.note(task, 'psscan');
  const living = [...view.sightings.values()]
    .filter(({ task }) => task.life !== 'exited')
    .map(({ task }) => task.info.task);
  view.walkChildren([reader.profile.requireSymbol('init_task'), ...living]);
  const sightings = [...view.sightings.values()].map(({ task, sources }) => ({
    task,
    sources,
    hidden: isHidden(task, sources),
  }));
  return { sightings, warnings: [...listed.warnings, ...pids.warnings, ...view.warnings] };
});

/** Thread-group leaders on the task list, then live ones carved from memory but missing from it (DKOM). */
export interface EveryProcess {
  readonly processes: readonly TaskInfo[];
  readonly warnings: readonly string[];
}

export const everyProcessProvider = defineProvider<EveryProcess>('every process', async (context) => {
  const list = await context.get(taskListProvider);
  const listed = new Set(list.tasks.map((task) => task.task));
  const hidden = (await context.get(carvedTasksProvider))
    .filter(({ info, life }) => life === 'alive' && info.pid === info.tgid && !listed.has(info.task))
    .map(({ info }) => info);
  return { processes: [...list.tasks, ...hidden], warnings: list.warnings };
});

/** Which process (at which virtual address), or the kernel, maps each physical page: hidden processes included. */
export const reverseMapProvider = defineProvider<ReverseMap>('reverse map', async (context) => {
  const { processes } = await context.get(everyProcessProvider);
  return buildReverseMap(context.kernel, await context.get(readerProvider), processes);
});
