import { z } from 'zod';
import type { MemoryRegion } from '../os/linux/vmas.js';
import type { TaskInfo } from '../os/linux/tasks.js';
import { hex } from '../util/hex.js';
import { pidOption, selectPid } from './pidFilter.js';
import { uniqueWarnings } from './providers/kernel.js';
import { memoryRegionsProvider } from './providers/processContext.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'start', kind: 'address', title: 'Start' },
  { key: 'end', kind: 'address', title: 'End' },
  { key: 'perms', kind: 'text', title: 'Perms' },
  { key: 'offset', kind: 'address', title: 'Offset' },
  { key: 'dev', kind: 'text', title: 'Dev' },
  { key: 'inode', kind: 'int', title: 'Inode' },
  { key: 'path', kind: 'text', title: 'Path' },
];

function regionRow(task: TaskInfo, region: MemoryRegion): Row {
  return {
    pid: task.pid,
    comm: task.comm,
    start: hex(region.start),
    end: hex(region.end),
    perms: region.perms,
    offset: hex(region.offset),
    dev: region.dev,
    inode: region.inode,
    path: region.path,
  };
}

/** Each process's memory regions, as /proc/PID/maps lists them. */
export const mapsAnalysis = defineAnalysis({
  name: 'maps',
  description: "list each process's memory regions as /proc/PID/maps does (start, end, perms, offset, inode, path)",
  columns,
  uses: [memoryRegionsProvider],
  options: z.object({ pid: pidOption('the regions') }),
  help: `Regions come from the process's mm_struct: the maple tree on 6.1 and later, the vm_next list
before (chosen by the kernel's own types, not its version). Paths are rebuilt from the file's
dentry and mount as d_path() does: " (deleted)" for an unlinked file, "/memfd:NAME (deleted)"
for a memfd, [heap], [stack], [vdso] and [vvar] as the kernel names them; plain anonymous memory
has no path. Hidden processes (carved, off the task list) are listed too. A forged tree (a
cycle, a node outside the mm) yields the regions read so far and a warning.`,
  async compute(inputs, options) {
    const regions = await inputs.get(memoryRegionsProvider);
    const rows = selectPid(regions.entries, options.pid).flatMap(({ task, value }) =>
      value.regions.map((region) => regionRow(task, region)),
    );
    const warnings = uniqueWarnings(regions.warnings);
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
