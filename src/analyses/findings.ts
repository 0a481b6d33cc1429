import type { HiddenModules } from './providers/modules.js';
import type { ProcessCrossView } from './providers/processes.js';
import type { SyscallReport } from '../os/linux/syscalls.js';
import { moduleOwnerName } from '../os/linux/codeOwners.js';
import { isModuleName } from '../os/linux/modules.js';
import { hex } from '../util/hex.js';

export type Severity = 'critical' | 'high' | 'medium';

/** One thing wrong with the guest's kernel, as `check`, batch summaries and policies see it. */
export interface Finding {
  readonly kind: string;
  readonly severity: Severity;
  /** What was tampered with: a process, a module, a table entry, a function. */
  readonly subject: string;
  /** The evidence, in one line. */
  readonly detail: string;
}

/** The views that can see a task the task list does not. */
const WITNESSES = ['pid_hash', 'children', 'psscan'] as const;

const text = (value: string | number | undefined) => (value === undefined ? '-' : String(value));

/** Live processes missing from the task list but seen by another view (DKOM). */
export function hiddenProcessFindings(view: ProcessCrossView): Finding[] {
  return view.sightings
    .filter(({ task, hidden }) => hidden && task.info.pid !== 0 && task.info.pid === task.info.tgid)
    .sort((a, b) => a.task.info.pid - b.task.info.pid || a.task.physical - b.task.physical)
    .map(({ task, sources }) => ({
      kind: 'hidden_process',
      severity: 'high',
      subject: `pid ${task.info.pid} ${task.info.comm}`,
      detail: `task_struct ${hex(task.info.task)} is missing from the task list but found by ${WITNESSES.filter((source) => sources.has(source)).join(', ')}`,
    }));
}

/** Modules found outside the module list. */
export function hiddenModuleFindings({ hidden }: HiddenModules): Finding[] {
  return hidden.map(({ module, foundBy }) => {
    const oddities = [
      ...(isModuleName(module.name) ? [] : [`its name ${JSON.stringify(module.name)} is no module name`]),
      ...(module.stateName === undefined ? [`its state ${module.state} is no module_state`] : []),
    ];
    return {
      kind: 'hidden_module',
      severity: 'critical',
      subject: moduleOwnerName(module),
      detail: `struct module ${hex(module.address)} (base ${hex(module.base)}, ${module.size} bytes) is not on the module list; found by ${foundBy.join(',')}${oddities.map((oddity) => `; ${oddity}`).join('')}`,
    };
  });
}

/** Syscall table entries and dispatcher jumps that do not lead to the kernel's own handler. */
export function syscallFindings({ checks }: SyscallReport): Finding[] {
  return checks
    .filter((check) => check.hooked)
    .map((check) => ({
      kind: check.kind === 'dispatcher' ? 'dispatcher_hook' : 'syscall_hook',
      severity: 'critical',
      subject: `${check.table}[${check.index}] ${text(check.name)}`,
      detail: `points to ${hex(check.address)} (${text(check.symbol)}), owned by ${check.owner}`,
    }));
}
