import type { TaskInfo } from '../os/linux/tasks.js';
import { processColumns, processRow } from './pslist.js';
import { taskListProvider } from './providers/processes.js';
import { defineAnalysis, type Column, type Row } from './types.js';

/** Deeper than any real process tree; a forged chain of parents stops being indented here. */
export const MAX_TREE_DEPTH = 256;

const columns: readonly Column[] = [
  { key: 'depth', kind: 'int', title: 'Depth' },
  ...processColumns.map((column) => (column.key === 'comm' ? { ...column, indentByDepth: true } : column)),
];

/**
 * Order tasks as a tree by parent (ppid = real_parent's tgid), each parent before its children,
 * children by pid. Tasks whose parent is not listed are roots. Every task is placed exactly
 * once, so parent cycles cannot loop: a task still unplaced after the roots' subtrees (its
 * ancestors form a cycle, or it lies below MAX_TREE_DEPTH) becomes a root, with a warning.
 */
export function treeOrder(tasks: readonly TaskInfo[], warnings: string[]): Array<{ task: TaskInfo; depth: number }> {
  const pids = new Set(tasks.map((task) => task.pid));
  const isRoot = (task: TaskInfo) => task.ppid === task.pid || !pids.has(task.ppid);
  const children = new Map<number, TaskInfo[]>();
  for (const task of tasks) {
    if (isRoot(task)) continue;
    const siblings = children.get(task.ppid) ?? [];
    siblings.push(task);
    children.set(task.ppid, siblings);
  }
  for (const siblings of children.values()) siblings.sort((a, b) => a.pid - b.pid);

  const ordered: Array<{ task: TaskInfo; depth: number }> = [];
  const placed = new Set<TaskInfo>();
  const placeSubtree = (root: TaskInfo) => {
    const stack = [{ task: root, depth: 0 }];
    for (let next = stack.pop(); next; next = stack.pop()) {
      if (placed.has(next.task)) continue;
      placed.add(next.task);
      ordered.push(next);
      if (next.depth >= MAX_TREE_DEPTH) continue;
      const below = children.get(next.task.pid) ?? [];
      // Pushed in reverse so the lowest pid is placed first.
      for (let i = below.length - 1; i >= 0; i--) stack.push({ task: below[i]!, depth: next.depth + 1 });
    }
  };
  for (const task of tasks) if (isRoot(task)) placeSubtree(task);
  for (const task of tasks) {
    if (placed.has(task)) continue;
    warnings.push(
      `pid ${task.pid} is not below a root within ${MAX_TREE_DEPTH} levels (its parents form a cycle or a chain too deep): shown as a root`,
    );
    placeSubtree(task);
  }
  return ordered;
}

/** The processes of the task list as a tree by parent; each row carries its depth. */
export const pstreeAnalysis = defineAnalysis({
  name: 'pstree',
  description: "show the processes of the task list as a tree by parent (real_parent), with each row's depth",
  columns,
  uses: [taskListProvider],
  help: `Rows come in tree order: a parent, then its children by pid, each one level deeper.
Processes whose parent is not on the task list (init and kthreadd, whose parent is the
swapper, or the children of a hidden process) are roots at depth 0. Parents that form a
cycle, or a chain deeper than ${MAX_TREE_DEPTH}, cannot hang the walk: such processes are shown
as roots, with a warning.`,
  async compute(inputs) {
    const list = await inputs.get(taskListProvider);
    const warnings = [...list.warnings];
    const rows: Row[] = treeOrder(list.tasks, warnings).map(({ task, depth }) => ({ depth, ...processRow(task) }));
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
