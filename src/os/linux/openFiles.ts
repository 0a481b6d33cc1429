import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';

/** fs.nr_open's ceiling is 2^30, but no real process has a table this large; a bigger one is forged. */
export const MAX_OPEN_FDS = 1 << 20;

export interface OpenFile {
  readonly fd: number;
  /** The struct file. */
  readonly file: bigint;
}

export interface OpenFileTable {
  /** The files_struct (shared by the threads of a process, and by processes cloned with CLONE_FILES). */
  readonly table: bigint;
  readonly files: OpenFile[];
  readonly problem: string | undefined;
}

/**
 * The open files of a task, from `task->files->fdt`: the fd array of `max_fds` slots, each a
 * struct file or NULL. A task without a table (an exited task) has none; a table claiming more
 * than MAX_OPEN_FDS slots is refused.
 */
export function openFiles(reader: KernelReader, task: bigint): OpenFileTable {
  let table = 0n;
  try {
    table = reader.pointerField(task, 'task_struct', 'files');
    if (table === 0n) return { table, files: [], problem: undefined };
    const fdt = reader.pointerField(table, 'files_struct', 'fdt');
    const slots = reader.u32Field(fdt, 'fdtable', 'max_fds');
    if (slots > MAX_OPEN_FDS)
      return { table, files: [], problem: `files_struct ${hex(table)} claims ${slots} file descriptors: not read` };
    const array = reader.bytes(reader.pointerField(fdt, 'fdtable', 'fd'), slots * 8);
    const view = new DataView(array.buffer);
    const files: OpenFile[] = [];
    for (let fd = 0; fd < slots; fd++) {
      const file = view.getBigUint64(fd * 8, true);
      if (file !== 0n) files.push({ fd, file });
    }
    return { table, files, problem: undefined };
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { table, files: [], problem: `the file table of task ${hex(task)} is unreadable: ${error.message}` };
  }
}
