import { MAX_ARGV_BYTES, readArguments } from '../os/linux/processSpace.js';
import { kernelProvider, readerProvider } from './providers/kernel.js';
import { executablesProvider } from './providers/processContext.js';
import { taskListProvider } from './providers/processes.js';
import { exeColumn, executableByGroup } from './pslist.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'ppid', kind: 'int', title: 'PPID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  exeColumn,
  { key: 'argv', kind: 'list', title: 'Arguments', separator: ' ' },
];

/** Each listed process with its argv, read from the process's own memory. */
export const psauxAnalysis = defineAnalysis({
  name: 'psaux',
  description:
    "list the processes of the task list with their command-line arguments, read from each process's own memory",
  columns,
  uses: [kernelProvider, readerProvider, taskListProvider, executablesProvider],
  help: `argv is mm->arg_start..arg_end read through the process's own page tables (mm->pgd), split
at NULs, as /proc/PID/cmdline shows it; a process that rewrote its argv shows what it wrote.
At most ${MAX_ARGV_BYTES / 1024} KiB are read per process. Pages that are swapped out or missing from the
dump end the argv early: the result is partial, with a warning naming the pid.
Kernel threads have no user memory and show as [comm]. exe is /proc/PID/exe (see pslist).`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const reader = await inputs.get(readerProvider);
    const list = await inputs.get(taskListProvider);
    const warnings = [...list.warnings];
    const exe = await executableByGroup(inputs.get(executablesProvider), warnings);
    const rows: Row[] = list.tasks.map((task) => {
      const { argv, problems } = readArguments(kernel, reader, task);
      for (const problem of problems) warnings.push(`pid ${task.pid} (${task.comm}): ${problem}`);
      return { pid: task.pid, ppid: task.ppid, comm: task.comm, exe: exe.get(task.tgid) ?? null, argv };
    });
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
