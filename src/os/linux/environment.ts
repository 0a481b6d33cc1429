import type { LinuxKernel } from './discovery.js';
import type { KernelReader } from './kernelReader.js';
import { readUserStrings } from './processSpace.js';
import type { TaskInfo } from './tasks.js';

/** The most environment bytes read per process: as for argv, the kernel's own limit is far lower, a forged env_end is not. */
export const MAX_ENVIRONMENT_BYTES = 128 * 1024;

export interface ProcessEnvironment {
  /** `NAME=value` strings in the order /proc/PID/environ holds them. */
  readonly variables: string[];
  /** What kept the environment from being read whole; empty when complete. */
  readonly problems: string[];
}

/**
 * A process's environment as /proc/PID/environ shows it: `mm->env_start..env_end` of its own
 * pages, split at NULs. What the process later changed in place is what is shown, as there.
 * Kernel threads have none.
 */
export function readEnvironment(
  kernel: LinuxKernel,
  reader: KernelReader,
  task: TaskInfo,
  maxBytes = MAX_ENVIRONMENT_BYTES,
): ProcessEnvironment {
  if (task.kernelThread || task.mm === 0n) return { variables: [], problems: [] };
  const { strings, problems } = readUserStrings(
    kernel,
    reader,
    task.mm,
    { start: 'env_start', end: 'env_end', what: 'environment' },
    maxBytes,
  );
  return { variables: strings, problems };
}
