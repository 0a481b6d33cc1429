import { hiddenModuleFindings, hiddenProcessFindings, syscallFindings, type Finding } from './findings.js';
import { processStateFindings, processStateProviders } from './processFindings.js';
import { kernelProvider, uniqueWarnings } from './providers/kernel.js';
import { allModulesProvider, hiddenModulesProvider, syscallReportProvider } from './providers/modules.js';
import { carvedTasksProvider, processCrossViewProvider, taskCarverProvider } from './providers/processes.js';
import { kernelHookFindingsProvider } from './providers/tampering.js';
import type { Provider } from './context.js';
import { defineAnalysis, type Column, type Row } from './types.js';

export type { Finding, Severity } from './findings.js';

const columns: readonly Column[] = [
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'severity', kind: 'text', title: 'Severity' },
  { key: 'subject', kind: 'text', title: 'Subject' },
  { key: 'owner', kind: 'text', title: 'Owner' },
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
    'find tampering: hidden processes and modules, syscall, ftrace, kprobe, netfilter, inline, IDT and /proc hooks, dangerous eBPF, stolen credentials, injected code, fileless processes (one row per finding)',
  columns,
  uses: [
    kernelProvider,
    taskCarverProvider,
    carvedTasksProvider,
    processCrossViewProvider,
    hiddenModulesProvider,
    allModulesProvider,
    syscallReportProvider,
    ...processStateProviders,
    kernelHookFindingsProvider,
  ],
  rows: 'findings',
  help: `Prints only findings:
  hidden_process   a live task missing from the task list (DKOM)
  hidden_module    a struct module missing from the module list
  syscall_hook     a sys_call_table entry that is not the kernel's own handler
  dispatcher_hook  a call target in x64_sys_call() that is not a syscall handler
  injected_code    executable memory backed by no file in a user process (see malfind)
  fileless_process a user process running from a memfd or a deleted file
  ftrace_hook      an ftrace_ops whose callback (or direct-call target) is outside kernel text
  kprobe           a kprobe whose handler is in module or unowned memory
  bpf_program      an eBPF program calling a helper that writes user memory, overrides
                   return values, sends signals or calls bpf() (probe_write_user, ...)
  netfilter_hook   a netfilter hook function outside kernel text
  inline_hook      a function entry patched to jump, call or trap where neither ftrace
                   nor a kprobe accounts for it
  idt_hook         an IDT gate whose handler is not the kernel's own entry point
  proc_hook        a /proc or socket reporting table pointer outside kernel text
  cred_escalation  a user process holding init_task's, a kernel thread's or another
                   process's credentials
Owner: "kernel", the module (listed or hidden) whose memory holds the code, the process
holding an eBPF program or stolen credentials, else "unknown". The kernel's own tracing
(perf and BPF kprobe events, BPF trampolines, tracers) calls into kernel text and is not a
finding; hooks an in-tree module registers from its own memory (netfilter's conntrack, say)
are judged like any other module's, so read such a finding together with lsmod.
Exit code 1 when there is any finding, 0 when the guest looks clean.`,
  async compute(inputs) {
    const { findings, problems } = await checkFindings((provider) => inputs.get(provider));
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

/** What `check` reports: every finding, and why some may be missing. The HTML report shows the same list. */
export async function checkFindings(
  get: <T>(provider: Provider<T>) => Promise<T>,
): Promise<{ findings: Finding[]; problems: string[] }> {
  // Carving all of memory is the longest step. For a large decoded dump it runs on search threads
  // when the context has them (carvedTasksProvider): asked for first (its threads start while this
  // one finds the kernel and its profile), then every check that needs no carved task runs here meanwhile.
  const carving = get(carvedTasksProvider);
  carving.catch(() => {}); // awaited below, unless finding the carver fails first
  await get(taskCarverProvider);
  const [, processes, hidden, modules, syscalls, processState, hooks] = await Promise.all([
    carving,
    get(processCrossViewProvider),
    get(hiddenModulesProvider),
    get(allModulesProvider),
    get(syscallReportProvider),
    processStateFindings(get),
    get(kernelHookFindingsProvider),
  ]);
  return {
    findings: [
      ...hiddenProcessFindings(processes),
      ...hiddenModuleFindings(hidden),
      ...syscallFindings(syscalls),
      ...processState.findings,
      ...hooks.findings,
    ],
    problems: uniqueWarnings(
      processes.warnings,
      modules.warnings,
      syscalls.problems,
      processState.problems,
      hooks.problems,
    ),
  };
}
