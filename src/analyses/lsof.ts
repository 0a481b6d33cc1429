import { z } from 'zod';
import { pidOption, selectPid } from './pidFilter.js';
import { uniqueWarnings } from './providers/kernel.js';
import { openFilesProvider } from './providers/processContext.js';
import { defineAnalysis, type Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'fd', kind: 'int', title: 'FD' },
  { key: 'flags', kind: 'text', title: 'Flags' },
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'inode', kind: 'int', title: 'Inode' },
  { key: 'path', kind: 'text', title: 'Path' },
];

/** Each process's open files. */
export const lsofAnalysis = defineAnalysis({
  name: 'lsof',
  description:
    "list each process's open files (fd, flags, path, inode), sockets and pipes named as /proc/PID/fd names them",
  columns,
  uses: [openFilesProvider],
  options: z.object({ pid: pidOption('the open files') }),
  help: `Reads task->files->fdt: every fd set in open_fds, at most 2^20 per process (a forged max_fds
is cut, with a warning). flags are f_flags in octal, as /proc/PID/fdinfo prints them. Paths are
as /proc/PID/fd links read: a file's path (" (deleted)" once unlinked), socket:[INODE],
pipe:[INODE], anon_inode:NAME, "/memfd:NAME (deleted)". kind: filesystem, socket, pipe,
anon_inode, pseudo (a memfd and other files with no directory entry) or unknown.`,
  async compute(inputs, options) {
    const files = await inputs.get(openFilesProvider);
    const rows = selectPid(files.entries, options.pid).flatMap(({ task, value }) =>
      value.files.map((file) => ({
        pid: task.pid,
        comm: task.comm,
        fd: file.fd,
        flags: `0${file.flags.toString(8)}`,
        kind: file.kind,
        inode: file.inode,
        path: file.path,
      })),
    );
    const warnings = uniqueWarnings(files.warnings);
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
