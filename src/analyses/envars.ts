import { z } from 'zod';
import { MAX_ENVIRONMENT_BYTES } from '../os/linux/environment.js';
import { pidOption, selectPid } from './pidFilter.js';
import { uniqueWarnings } from './providers/kernel.js';
import { environmentProvider } from './providers/processContext.js';
import { defineAnalysis, type Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'value', kind: 'text', title: 'Value' },
];

/** `NAME=value` split at the first `=`; a string without one (a process may write anything there) keeps a null value. */
function variable(text: string): { name: string; value: string | null } {
  const equals = text.indexOf('=');
  return equals < 0 ? { name: text, value: null } : { name: text.slice(0, equals), value: text.slice(equals + 1) };
}

/** Each process's environment, read from its own pages. */
export const envarsAnalysis = defineAnalysis({
  name: 'envars',
  description: "list each process's environment variables, read from the process's own memory",
  columns,
  uses: [environmentProvider],
  options: z.object({ pid: pidOption('the environment') }),
  help: `The environment is mm->env_start..env_end read through the process's own page tables and split
at NULs, as /proc/PID/environ shows it: what the process later changed in place is what is
shown. At most ${MAX_ENVIRONMENT_BYTES / 1024} KiB per process. One row per variable; a string without "=" has a
null value. Pages missing from the dump end a process's environment early, with a warning.`,
  async compute(inputs, options) {
    const environment = await inputs.get(environmentProvider);
    const rows = selectPid(environment.entries, options.pid).flatMap(({ task, value }) =>
      value.variables.map((text) => ({ pid: task.pid, comm: task.comm, ...variable(text) })),
    );
    const warnings = uniqueWarnings(environment.warnings);
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
