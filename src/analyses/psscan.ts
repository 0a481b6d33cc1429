import type { ExaminedTask } from '../os/linux/taskCarving.js';
import { hex } from '../util/hex.js';
import { carvedTasksProvider } from './providers/processes.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'tgid', kind: 'int', title: 'TGID' },
  { key: 'ppid', kind: 'int', title: 'PPID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'task', kind: 'address', title: 'task_struct' },
  { key: 'physical', kind: 'address', title: 'Physical' },
  { key: 'kernel_thread', kind: 'bool', title: 'Kernel thread' },
  { key: 'state', kind: 'text', title: 'State' },
  { key: 'task_list', kind: 'text', title: 'Task-list links' },
];

function carvedRow({ info, physical, life, taskList }: ExaminedTask): Row {
  return {
    pid: info.pid,
    tgid: info.tgid,
    ppid: info.ppid,
    comm: info.comm,
    task: hex(info.task),
    physical: hex(physical),
    kernel_thread: info.kernelThread,
    state: life,
    task_list: taskList,
  };
}

/** Every task_struct found in physical memory, whatever list it is or is not on. */
export const psscanAnalysis = defineAnalysis({
  name: 'psscan',
  description: 'carve task_structs from physical memory without trusting any kernel list, exited ones included',
  columns,
  uses: [carvedTasksProvider],
  help: `Every task_struct holds the address of its scheduling class (fair_sched_class and the
others) in sched_class: one pass over the whole dump finds those 8-byte values, and each hit
is read as the task_struct around it. A candidate is kept when its pid and tgid are in range,
its comm is a printable NUL-terminated name, its real_parent is itself a task_struct, its mm
is absent or has page tables and its stack is page-aligned.

Rows are in physical order. "task" is the direct-map address (init_task: its symbol).
"state" is alive, zombie, or exited: a reaped task whose memory is not reused yet.
"task_list" tells how the task's own tasks links look: linked (on a list), unlinked (pointing
to itself, as list_del_init leaves it: DKOM), deleted (poisoned by list_del at exit), or
stale (never linked: the per-CPU idle tasks, pid 0). psxview compares this with the lists.`,
  async compute(inputs) {
    return {
      columns,
      rows: (await inputs.get(carvedTasksProvider)).map(carvedRow),
      single: false,
      partial: false,
      warnings: [],
    };
  },
});
