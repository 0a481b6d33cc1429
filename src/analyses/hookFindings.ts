import type { Provider } from './context.js';
import {
  bpfProgramFindings,
  credEscalationFindings,
  ftraceHookFindings,
  idtHookFindings,
  inlineHookFindings,
  kprobeFindings,
  netfilterHookFindings,
  procHookFindings,
  type Finding,
} from './findings.js';
import {
  bpfProvider,
  credentialsProvider,
  ftraceOpsProvider,
  functionEntriesProvider,
  idtProvider,
  kprobesProvider,
  netfilterProvider,
  operationPointersProvider,
} from './providers/tampering.js';

/** The providers whose typed results the kernel hook findings come from (for an analysis's `uses`). */
export const kernelHookProviders: ReadonlyArray<Provider<unknown>> = [
  ftraceOpsProvider,
  kprobesProvider,
  bpfProvider,
  netfilterProvider,
  functionEntriesProvider,
  idtProvider,
  operationPointersProvider,
  credentialsProvider,
];

export interface KernelHookFindings {
  readonly findings: Finding[];
  /** Why a reader stopped short: some hook may be missing. */
  readonly problems: string[];
}

/**
 * The findings of issue 14's eight techniques (ftrace, kprobe, eBPF, netfilter, inline, IDT,
 * /proc and credential tampering), in that order: the one code path `check` and the monitor's
 * snapshot summary share.
 */
export async function kernelHookFindings(get: <T>(provider: Provider<T>) => Promise<T>): Promise<KernelHookFindings> {
  const ftrace = await get(ftraceOpsProvider);
  const kprobes = await get(kprobesProvider);
  const bpf = await get(bpfProvider);
  const netfilter = await get(netfilterProvider);
  const entries = await get(functionEntriesProvider);
  const idt = await get(idtProvider);
  const pointers = await get(operationPointersProvider);
  const credentials = await get(credentialsProvider);
  return {
    findings: [
      ...ftraceHookFindings(ftrace),
      ...kprobeFindings(kprobes),
      ...bpfProgramFindings(bpf),
      ...netfilterHookFindings(netfilter),
      ...inlineHookFindings(entries),
      ...idtHookFindings(idt),
      ...procHookFindings(pointers),
      ...credEscalationFindings(credentials),
    ],
    problems: [
      ...ftrace.problems,
      ...kprobes.problems,
      ...bpf.problems,
      ...netfilter.problems,
      ...entries.problems,
      ...idt.problems,
      ...pointers.problems,
      ...credentials.problems,
    ],
  };
}
