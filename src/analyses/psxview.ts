import { hex } from '../util/hex.js';
import { processCrossViewProvider, TASK_SOURCES, type TaskSighting } from './providers/processes.js';
import { defineAnalysis, type Column, type Row } from './types.js';

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

function viewRow({ task, sources, hidden }: TaskSighting): Row {
  return {
    pid: task.info.pid,
    comm: task.info.comm,
    task: hex(task.info.task),
    ...Object.fromEntries(TASK_SOURCES.map((source) => [source, sources.has(source)])),
    state: task.life,
    hidden,
  };
}

/** Every process found by any view, with which views found it and whether it is hidden from the task list. */
export const psxviewAnalysis = defineAnalysis({
  name: 'psxview',
  description:
    'cross-view of processes: task list, pid namespace, children lists and memory carving, flagging tasks hidden from the task list',
  columns,
  uses: [processCrossViewProvider],
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
  async compute(inputs) {
    const { sightings, warnings } = await inputs.get(processCrossViewProvider);
    // Processes only: the idle tasks (pid 0) are on no list by design, and only thread-group
    // leaders are on the task list, so a process hidden from it shows through its leader.
    const rows = sightings
      .filter(({ task }) => task.info.pid !== 0 && task.info.pid === task.info.tgid)
      .sort((a, b) => a.task.info.pid - b.task.info.pid || a.task.physical - b.task.physical)
      .map(viewRow);
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
