import { DEFAULT_MAX_LIST_STEPS, type KernelReader } from '../os/linux/kernelReader.js';
import { walkPidNamespace } from '../os/linux/pidNamespace.js';
import type { ExaminedTask, TaskCarver } from '../os/linux/taskCarving.js';
import { optional } from '../os/linux/tasks.js';
import { hex } from '../util/hex.js';
import type { DumpContext } from './context.js';
import { processList } from './pslist.js';
import { carvedTasks, taskCarver } from './psscan.js';
import type { Analysis, AnalysisResult, Column, Row } from './types.js';

/** The independent ways of finding a task, each a boolean column. */
const SOURCES = ['pslist', 'pid_hash', 'children', 'psscan'] as const;
type Source = (typeof SOURCES)[number];

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'task', kind: 'address', title: 'task_struct' },
  { key: 'pslist', kind: 'bool', title: 'pslist' },
  { key: 'pid_hash', kind: 'bool', title: 'pid_hash' },
  { key: 'children', kind: 'bool', title: 'children' },
  { key: 'psscan', kind: 'bool', title: 'psscan' },
  { key: 'state', kind: 'text', title: 'State' },
  { key: 'hidden', kind: 'bool', title: 'Hidden' },
];

/** One task_struct (by physical address, so aliases meet) and the sources that found it. */
interface Sighting {
  readonly task: ExaminedTask;
  readonly sources: Set<Source>;
}

/**
 * A task found by another view but missing from the task list is hidden when it is not dead:
 * a reaped task is off every list by design. Found by psscan alone, it must also show that it
 * was taken off a list (links unlinked, deleted, or on some other ring): stale links copied
 * from its parent mean it never joined one (a fork caught half-way, or one that failed).
 */
function isHidden({ task, sources }: Sighting): boolean {
  if (sources.has('pslist') || task.life === 'exited') return false;
  return sources.has('pid_hash') || sources.has('children') || task.taskList !== 'stale';
}

class CrossView {
  readonly sightings = new Map<number, Sighting>();
  readonly warnings: string[] = [];

  constructor(
    private readonly reader: KernelReader,
    private readonly carver: TaskCarver,
  ) {}

  note(task: ExaminedTask, source: Source): void {
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

function viewRow({ task, sources }: Sighting, hidden: boolean): Row {
  return {
    pid: task.info.pid,
    comm: task.info.comm,
    task: hex(task.info.task),
    ...Object.fromEntries(SOURCES.map((source) => [source, sources.has(source)])),
    state: task.life,
    hidden,
  };
}

/** Every process found by any view, with which views found it and whether it is hidden from the task list. */
export async function psxview(context: DumpContext): Promise<AnalysisResult> {
  const { reader, carver } = await taskCarver(context);
  const view = new CrossView(reader, carver);
  const { profile } = reader;

  const listed = await processList(context);
  view.warnings.push(...listed.warnings);
  for (const info of listed.tasks) {
    const task = optional(() => carver.examine(info));
    if (task) view.note(task, 'pslist');
    else view.warnings.push(`task list: task_struct ${hex(info.task)} (pid ${info.pid}) is unreadable`);
  }

  const pids = walkPidNamespace(reader, profile.requireSymbol('init_pid_ns'));
  view.warnings.push(...pids.problems.map((problem) => `pid namespace: ${problem.detail}`));
  for (const { pid, task: address } of pids.found) {
    const task = view.plausibleTask(address, `pid namespace, pid ${pid}`);
    if (task) view.note(task, 'pid_hash');
  }

  for (const task of await carvedTasks(context)) view.note(task, 'psscan');

  const living = [...view.sightings.values()].filter(({ task }) => task.life !== 'exited').map(({ task }) => task.info.task);
  view.walkChildren([profile.requireSymbol('init_task'), ...living]);

  // Processes only: the idle tasks (pid 0) are on no list by design, and only thread-group
  // leaders are on the task list, so a process hidden from it shows through its leader.
  const rows = [...view.sightings.values()]
    .filter(({ task }) => task.info.pid !== 0 && task.info.pid === task.info.tgid)
    .sort((a, b) => a.task.info.pid - b.task.info.pid || a.task.physical - b.task.physical)
    .map((sighting) => viewRow(sighting, isHidden(sighting)));
  return { columns, rows, single: false, partial: view.warnings.length > 0, warnings: view.warnings };
}

export const psxviewAnalysis: Analysis = {
  name: 'psxview',
  description: 'cross-view of processes: task list, pid namespace, children lists and memory carving, flagging tasks hidden from the task list',
  columns,
  requires: ['kernel', 'profile'],
  help: `One row per process (thread-group leader) found by any of four views:
  pslist    the task list (init_task.tasks), what ps walks and DKOM unlinks from;
  pid_hash  the pid namespace (init_pid_ns's IDR of struct pid), what /proc reads;
  children  every task's children list, from init_task and every task found otherwise;
  psscan    task_structs carved from physical memory (see psscan).
"hidden" marks a task that is not dead but missing from the task list: found in the pid
namespace or a children list, or carved with links that show it was taken off a list.
Exited tasks (reaped, memory not yet reused) are listed with state "exited" and are never
hidden. The per-CPU idle tasks (pid 0) are on no list by design and are not shown, nor are
threads: only leaders are on the task list, so a hidden process shows through its leader.`,
  run: (context) => psxview(context),
};
