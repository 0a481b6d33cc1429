import type { DumpContext } from './context.js';
import { hiddenModulesAnalysis } from './hiddenModules.js';
import { psxviewAnalysis } from './psxview.js';
import { syscallsAnalysis } from './syscalls.js';
import type { Analysis, AnalysisResult, Column, Row } from './types.js';

export type FindingKind = 'hidden_process' | 'hidden_module' | 'syscall_hook' | 'dispatcher_hook';
export type Severity = 'critical' | 'high' | 'medium';

const columns: readonly Column[] = [
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'severity', kind: 'text', title: 'Severity' },
  { key: 'subject', kind: 'text', title: 'Subject' },
  { key: 'detail', kind: 'text', title: 'Detail' },
];

interface Finding extends Row {
  readonly kind: FindingKind;
  readonly severity: Severity;
  readonly subject: string;
  readonly detail: string;
}

const text = (value: unknown) => (value === null || value === undefined ? '-' : String(value));

function hiddenProcesses(rows: readonly Row[]): Finding[] {
  return rows
    .filter((row) => row.hidden === true)
    .map((row) => {
      const seenBy = ['pid_hash', 'children', 'psscan'].filter((source) => row[source] === true);
      return {
        kind: 'hidden_process',
        severity: 'high',
        subject: `pid ${text(row.pid)} ${text(row.comm)}`,
        detail: `task_struct ${text(row.task)} is missing from the task list but found by ${seenBy.join(', ')}`,
      };
    });
}

function hiddenModules(rows: readonly Row[]): Finding[] {
  return rows.map((row) => ({
    kind: 'hidden_module',
    severity: 'critical',
    subject: text(row.name),
    detail: `struct module ${text(row.struct_module)} (base ${text(row.base)}, ${text(row.size)} bytes) is not on the module list; found by ${text(row.found_by)}`,
  }));
}

function syscallHooks(rows: readonly Row[]): Finding[] {
  return rows
    .filter((row) => row.hooked === true)
    .map((row) => {
      const dispatcher = row.kind === 'dispatcher';
      return {
        kind: dispatcher ? 'dispatcher_hook' : 'syscall_hook',
        severity: 'critical',
        subject: `${text(row.table)}[${text(row.index)}] ${text(row.name)}`,
        detail: `points to ${text(row.address)} (${text(row.symbol)}), owned by ${text(row.owner)}`,
      };
    });
}

/**
 * `check`: the integrity verdict in one command. Runs psxview, hidden-modules and syscalls and
 * keeps only what is wrong, one row per finding; a clean guest prints nothing and exits 0.
 */
export async function check(context: DumpContext): Promise<AnalysisResult> {
  const [processes, modules, syscalls] = [
    await psxviewAnalysis.run(context, {}),
    await hiddenModulesAnalysis.run(context, {}),
    await syscallsAnalysis.run(context, {}),
  ];
  const findings = [...hiddenProcesses(processes.rows), ...hiddenModules(modules.rows), ...syscallHooks(syscalls.rows)];
  return {
    columns,
    rows: findings,
    single: false,
    partial: processes.partial || modules.partial || syscalls.partial,
    warnings: [...processes.warnings, ...modules.warnings, ...syscalls.warnings],
    exitCode: findings.length > 0 ? 1 : undefined,
  };
}

export const checkAnalysis: Analysis = {
  name: 'check',
  description: 'find tampering: hidden processes, hidden modules, hooked syscall table entries and dispatcher (one row per finding)',
  columns,
  requires: ['kernel', 'profile'],
  help: `Runs psxview, hidden-modules and syscalls and prints only findings:
  hidden_process   a live task missing from the task list (DKOM)
  hidden_module    a struct module missing from the module list
  syscall_hook     a sys_call_table entry that is not the kernel's own handler
  dispatcher_hook  a call target in x64_sys_call() that is not a syscall handler
Exit code 1 when there is any finding, 0 when the guest looks clean.`,
  run: (context) => check(context),
};
