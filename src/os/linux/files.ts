import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { filePath, inodeIdentity, type PathKind } from './paths.js';
import { StructBytes } from './structBytes.js';
import type { TaskInfo } from './tasks.js';

/** fs.nr_open's default (1 << 20): no fd table is larger unless raised, and a forged max_fds of 2^31 must not be walked. */
export const MAX_FDS = 1 << 20;

/** A real table holds no dangling file pointers; this many means the bitmap or array is not a table. */
const MAX_UNREADABLE_FILES = 64;

/** One line of /proc/PID/fd (with what ls -l shows it pointing to). */
export interface OpenFile {
  readonly fd: number;
  /** Address of the `struct file`. */
  readonly file: bigint;
  /** f_flags: O_RDONLY/O_WRONLY/O_RDWR, O_APPEND, O_NONBLOCK, … as open(2) received them. */
  readonly flags: number;
  /** `/dev/null`, `socket:[10868]`, `pipe:[42]`, `anon_inode:bpf-prog`, `/memfd:x (deleted)`, … */
  readonly path: string;
  /** A file in the directory tree, a socket, a pipe, an anonymous inode (bpf, perf, eventfd), a pseudo file (memfd). */
  readonly kind: PathKind;
  /** The kernel prints " (deleted)" after its path. */
  readonly deleted: boolean;
  readonly inode: number;
  readonly dev: string;
  /** f_op: which file_operations serve the file (socket_file_ops for sockets). */
  readonly operations: bigint;
  /** private_data: the `struct socket` of a socket file, the pipe of a pipe. */
  readonly privateData: bigint;
}

export interface ProcessFiles {
  readonly files: OpenFile[];
  /** Why the table may be incomplete or an entry's details missing; empty when whole. */
  readonly problems: string[];
}

/**
 * The open files of a process (its `files->fdt`): each fd whose bit is set in open_fds, in fd
 * order, with its path as /proc/PID/fd names it. max_fds is bounded by MAX_FDS; an unreadable
 * bitmap word, fd slot or file is a problem and the rest is still read.
 */
export function readOpenFiles(reader: KernelReader, task: TaskInfo, maxFds = MAX_FDS): ProcessFiles {
  const problems: string[] = [];
  const files: OpenFile[] = [];
  let fdt: StructBytes;
  try {
    const table = reader.pointerField(task.task, 'task_struct', 'files');
    if (table === 0n) return { files, problems };
    fdt = StructBytes.read(reader, 'fdtable', reader.pointerField(table, 'files_struct', 'fdt'));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { files, problems: [`fd table of task ${hex(task.task)} is unreadable: ${error.message}`] };
  }
  let count = fdt.u32('max_fds');
  if (count > maxFds) {
    problems.push(`fd table ${hex(fdt.address)} claims max_fds ${count}; read only the first ${maxFds}`);
    count = maxFds;
  }
  const openFds = fdt.u64('open_fds');
  const slots = fdt.u64('fd');
  let unreadable = 0;
  for (let word = 0; word * 64 < count; word++) {
    let bits: bigint;
    try {
      bits = reader.u64(openFds + BigInt(word * 8));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`open_fds bitmap ${hex(openFds)} is unreadable from fd ${word * 64}: ${error.message}`);
      break;
    }
    for (let bit = 0; bits !== 0n && word * 64 + bit < count; bit++, bits >>= 1n) {
      if ((bits & 1n) === 0n) continue;
      const fd = word * 64 + bit;
      let file: bigint;
      try {
        file = reader.u64(slots + BigInt(fd * 8));
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        problems.push(`fd array ${hex(slots)} is unreadable from fd ${fd}: ${error.message}`);
        return { files, problems };
      }
      if (file === 0n) continue;
      try {
        files.push(readOpenFile(reader, fd, file, problems));
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        problems.push(`fd ${fd}: file ${hex(file)} is unreadable: ${error.message}`);
        if (++unreadable >= MAX_UNREADABLE_FILES) {
          problems.push(`${unreadable} fds point to unreadable files: the table is forged or corrupt, walk stopped`);
          return { files, problems };
        }
      }
    }
  }
  return { files, problems };
}

function readOpenFile(reader: KernelReader, fd: number, file: bigint, problems: string[]): OpenFile {
  const bytes = StructBytes.read(reader, 'file', file);
  const resolved = filePath(reader, file);
  problems.push(...resolved.problems.map((problem) => `fd ${fd}: ${problem}`));
  let identity = { inode: 0, dev: '00:00' };
  try {
    identity = inodeIdentity(reader, bytes.u64('f_inode'));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`fd ${fd}: inode of file ${hex(file)} is unreadable: ${error.message}`);
  }
  return {
    fd,
    file,
    flags: bytes.u32('f_flags'),
    path: resolved.path,
    kind: resolved.kind,
    deleted: resolved.deleted,
    ...identity,
    operations: bytes.u64('f_op'),
    privateData: bytes.u64('private_data'),
  };
}
