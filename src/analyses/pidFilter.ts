import { z } from 'zod';
import type { TaskInfo } from '../os/linux/tasks.js';
import { option } from './types.js';

/** `--pid N`: limit a per-process analysis to one process. */
export const pidOption = (what: string) =>
  option(z.coerce.number().int().min(0).optional(), {
    description: `show ${what} of this process only`,
    placeholder: 'pid',
  });

/** The entries of the process `pid` asks for, or all of them. */
export function selectPid<Entry extends { readonly task: TaskInfo }>(
  entries: readonly Entry[],
  pid: number | undefined,
): readonly Entry[] {
  return pid === undefined ? entries : entries.filter(({ task }) => task.pid === pid);
}
