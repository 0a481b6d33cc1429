import { hiddenModuleFindings, hiddenProcessFindings, syscallFindings, type Finding } from './findings.js';
import { processStateFindings, processStateProviders } from './processFindings.js';
import { kernelProvider, uniqueWarnings } from './providers/kernel.js';
import { allModulesProvider, hiddenModulesProvider, syscallReportProvider } from './providers/modules.js';
import { processCrossViewProvider } from './providers/processes.js';
import { defineAnalysis, type Column, type Row } from './types.js';

export type { Finding, Severity } from './findings.js';

const columns: readonly Column[] = [
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'severity', kind: 'text', title: 'Severity' },
  { key: 'subject', kind: 'text', title: 'Subject' },
  { key: 'detail', kind: 'text', title: 'Detail' },
];

/**
 * `check`: the integrity verdict in one command, from the typed results of the providers
 * (the process cross-view, the hidden-module search, the syscall tables), never from other
 * analyses' rows; a clean guest prints nothing and exits 0.
 */
export const checkAnalysis = defineAnalysis({
  name: 'check',
  description:
    'find tampering: hidden processes, hidden modules, hooked syscall table entries and dispatcher, injected code, fileless processes (one row per finding)',
  columns,
  uses: [
    kernelProvider,
    processCrossViewProvider,
    hiddenModulesProvider,
    allModulesProvider,
    syscallReportProvider,
    ...processStateProviders,
  ],
  rows: 'findings',
  help: `Prints only findings:
  hidden_process   a live task missing from the task list (DKOM)
  hidden_module    a struct module missing from the module list
  syscall_hook     a sys_call_table entry that is not the kernel's own handler
  dispatcher_hook  a call target in x64_sys_call() that is not a syscall handler
  injected_code    executable memory backed by no file in a user process (see malfind)
  fileless_process a user process running from a memfd or a deleted file
Exit code 1 when there is any finding, 0 when the guest looks clean.`,
  async compute(inputs) {
    const processes = await inputs.get(processCrossViewProvider);
    const hidden = await inputs.get(hiddenModulesProvider);
    const modules = await inputs.get(allModulesProvider);
    const syscalls = await inputs.get(syscallReportProvider);
    const processState = await processStateFindings((provider) => inputs.get(provider));
    const findings: Finding[] = [
      ...hiddenProcessFindings(processes),
      ...hiddenModuleFindings(hidden),
      ...syscallFindings(syscalls),
      ...processState.findings,
    ];
    const problems = uniqueWarnings(processes.warnings, modules.warnings, syscalls.problems, processState.problems);
    return {
      columns,
      rows: findings as unknown as Row[],
      single: false,
      partial: problems.length > 0,
      warnings: uniqueWarnings((await inputs.get(kernelProvider)).warnings, problems),
      exitCode: findings.length > 0 ? 1 : undefined,
    };
  },
});
