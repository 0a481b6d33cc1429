import { z } from 'zod';
import type { TaskCredentials } from '../os/linux/creds.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { credentialsProvider } from './providers/tampering.js';
import { defineAnalysis, option, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'tgid', kind: 'int', title: 'TGID' },
  { key: 'comm', kind: 'text', title: 'Comm' },
  { key: 'uid', kind: 'int', title: 'UID' },
  { key: 'euid', kind: 'int', title: 'EUID' },
  { key: 'gid', kind: 'int', title: 'GID' },
  { key: 'egid', kind: 'int', title: 'EGID' },
  { key: 'cap_effective', kind: 'address', title: 'CapEff' },
  { key: 'cred', kind: 'address', title: 'cred' },
  { key: 'real_cred', kind: 'address', title: 'real_cred' },
  { key: 'kernel_thread', kind: 'bool', title: 'Kernel thread' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

function credentialRow(task: TaskCredentials): Row {
  return {
    pid: task.pid,
    tgid: task.tgid,
    comm: task.comm,
    uid: task.ids?.uid ?? null,
    euid: task.ids?.euid ?? null,
    gid: task.ids?.gid ?? null,
    egid: task.ids?.egid ?? null,
    cap_effective: task.capabilities ? hex(task.capabilities.effective) : null,
    cred: hex(task.cred),
    real_cred: hex(task.realCred),
    kernel_thread: task.kernelThread,
    suspicious: task.suspicious,
    evidence: task.evidence,
  };
}

/** Every task's ids, capabilities and cred pointers, and who shares whose. */
export const credsAnalysis = defineAnalysis({
  name: 'creds',
  description: "list every task's uid/gid/euid, effective capabilities and cred pointers; flag stolen credentials",
  columns,
  uses: [kernelProvider, credentialsProvider],
  options: z.object({
    pid: option(z.coerce.number().int().nonnegative().optional(), {
      description: 'only the tasks of this process (its thread group)',
      placeholder: 'pid',
    }),
  }),
  help: `Reads cred and real_cred of init_task, every task on the task list and every task of the
initial pid namespace (threads and unlinked tasks too). fork and exec always give a task its own
credentials, so a user process whose cred or real_cred is init_task's or a kernel thread's, or
another thread group's, got them by pointer: privilege theft, marked suspicious.`,
  async compute(inputs, options) {
    const kernel = await inputs.get(kernelProvider);
    const report = await inputs.get(credentialsProvider);
    const tasks = report.tasks.filter((task) => options.pid === undefined || task.tgid === options.pid);
    return readerTable(columns, tasks.map(credentialRow), kernel, report.problems);
  },
});
