import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { filePath, type ResolvedPath } from './paths.js';
import type { TaskInfo } from './tasks.js';

/**
 * What /proc/PID/exe links to: the path of `mm->exe_file`, or undefined for a kernel thread
 * or a process without an executable file (`path` '' with a problem when it is unreadable).
 */
export function executablePath(reader: KernelReader, task: TaskInfo): ResolvedPath | undefined {
  if (task.kernelThread || task.mm === 0n) return undefined;
  let file: bigint;
  try {
    file = reader.pointerField(task.mm, 'mm_struct', 'exe_file');
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return {
      path: '',
      kind: 'unknown',
      deleted: false,
      problems: [`mm_struct ${hex(task.mm)} is unreadable: ${error.message}`],
    };
  }
  return file === 0n ? undefined : filePath(reader, file);
}

/** How a process runs without an executable on disk, judged from the kernel's own view of the file. */
export type FilelessKind = 'memfd' | 'pseudo_file' | 'deleted_file';

/**
 * A memfd (memfd_create names its file "memfd:NAME") or another pseudo file never linked into
 * a directory, or a file unlinked since exec; undefined for an executable still on disk.
 */
export function filelessKind(executable: ResolvedPath): FilelessKind | undefined {
  if (executable.kind === 'pseudo') return executable.path.startsWith('/memfd:') ? 'memfd' : 'pseudo_file';
  if (executable.kind === 'filesystem' && executable.deleted) return 'deleted_file';
  return undefined;
}
