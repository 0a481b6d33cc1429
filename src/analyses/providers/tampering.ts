import { readBpf, type BpfReport } from '../../os/linux/bpf.js';
import { readCredentials, type CredentialsReport } from '../../os/linux/creds.js';
import {
  enabledFunctions,
  readFtraceOps,
  readFtraceRecords,
  type EnabledFunctionsReport,
  type FtraceOpsReport,
  type FtraceRecordReport,
} from '../../os/linux/ftrace.js';
import { readIdt, type IdtReport } from '../../os/linux/idt.js';
import { checkFunctionEntries, kernelFtraceTrampolines, type FunctionEntryScan } from '../../os/linux/inlineHooks.js';
import { kprobeAttachPoints, readKprobes, type KprobeReport } from '../../os/linux/kprobes.js';
import { readNetfilterHooks, type NetfilterReport } from '../../os/linux/netfilter.js';
import { readKernelLog, type KernelLog } from '../../os/linux/printk.js';
import { readOperationPointers, type OperationPointers } from '../../os/linux/procHooks.js';
import { readTaint, type KernelTaint } from '../../os/linux/taint.js';
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
} from '../findings.js';
import { VmscopeError } from '../../util/errors.js';
import { defineProvider } from '../context.js';
import { readerProvider } from './kernel.js';
import { allModulesProvider, codeOwnersProvider } from './modules.js';
import { everyProcessProvider, pidNamespaceProvider, taskListProvider } from './processes.js';

/**
 * The kernel's hooking and tracing state, each read once per dump: ftrace, kprobes,
 * eBPF, netfilter, function entries, the IDT, /proc reporting tables, credentials and the log.
 * Every report carries `problems` (why a walk stopped); analyses turn them into warnings.
 */

/** Every ftrace_ops on ftrace_ops_list, with callback owners and filter targets. */
export const ftraceOpsProvider = defineProvider<FtraceOpsReport>('ftrace ops', async (context) =>
  readFtraceOps(await context.get(readerProvider), await context.get(codeOwnersProvider)),
);

/** Every dyn_ftrace record: the call sites ftrace may patch. */
export const ftraceRecordsProvider = defineProvider<FtraceRecordReport>('ftrace records', async (context) =>
  readFtraceRecords(await context.get(readerProvider)),
);

/** tracefs `enabled_functions`: every enabled site and what the kernel makes it call. */
export const enabledFunctionsProvider = defineProvider<EnabledFunctionsReport>(
  'ftrace enabled functions',
  async (context) =>
    enabledFunctions(
      await context.get(readerProvider),
      await context.get(codeOwnersProvider),
      (await context.get(ftraceOpsProvider)).ops,
      (await context.get(ftraceRecordsProvider)).records,
    ),
);

/** Every kprobe in kprobe_table, with handler owners and the kernel trace event behind it. */
export const kprobesProvider = defineProvider<KprobeReport>('kprobes', async (context) =>
  readKprobes(await context.get(readerProvider), await context.get(codeOwnersProvider)),
);

/** Every eBPF program and map, attached where kprobe events and links say, held by the processes that have them open. */
export const bpfProvider = defineProvider<BpfReport>('bpf', async (context) => {
  const { processes } = await context.get(everyProcessProvider);
  return readBpf(await context.get(readerProvider), await context.get(codeOwnersProvider), {
    attachPoints: kprobeAttachPoints((await context.get(kprobesProvider)).kprobes),
    processes,
  });
});

/** Every netfilter hook of every network namespace. */
export const netfilterProvider = defineProvider<NetfilterReport>('netfilter hooks', async (context) =>
  readNetfilterHooks(await context.get(readerProvider), await context.get(codeOwnersProvider)),
);

/**
 * The call targets ftrace accounts for: the shared callers, every ops' trampoline and what each
 * enabled site is made to call (trampolines, direct targets). A function entry calling anything
 * else was not patched by ftrace.
 */
export const accountedFtraceTargetsProvider = defineProvider<ReadonlySet<bigint>>(
  'ftrace accounted targets',
  async (context) => {
    const targets = new Set(kernelFtraceTrampolines(await context.get(readerProvider)));
    for (const ops of (await context.get(ftraceOpsProvider)).ops)
      if (ops.trampoline !== 0n) targets.add(ops.trampoline);
    for (const site of (await context.get(enabledFunctionsProvider)).functions)
      for (const target of site.callTargets) targets.add(target);
    return targets;
  },
);

/** Every kernel and module function entry that is traced or patched, judged against ftrace's and kprobes' own patches. */
export const functionEntriesProvider = defineProvider<FunctionEntryScan>('function entries', async (context) => {
  const kprobes = await context.get(kprobesProvider);
  return checkFunctionEntries(
    await context.get(readerProvider),
    await context.get(codeOwnersProvider),
    (await context.get(allModulesProvider)).modules,
    {
      accountedTargets: await context.get(accountedFtraceTargetsProvider),
      // An int3 is a kprobe's own when a probe that does not go through ftrace sits there.
      accountedBreakpoints: new Set(kprobes.kprobes.filter((probe) => !probe.ftrace).map((probe) => probe.probed)),
      ftraceRecords: await context.get(ftraceRecordsProvider),
    },
  );
});

/** All 256 IDT gates, judged against the kernel's own setup. */
export const idtProvider = defineProvider<IdtReport>('idt', async (context) =>
  readIdt(await context.get(readerProvider), await context.get(codeOwnersProvider)),
);

/** The function pointers of the tables the kernel reports processes and sockets through. */
export const operationPointersProvider = defineProvider<OperationPointers>(
  'reporting table pointers',
  async (context) => readOperationPointers(await context.get(readerProvider), await context.get(codeOwnersProvider)),
);

/**
 * Every task's credentials, and who shares whose: the tasks are those the process analyses walk
 * (the task list, the initial pid namespace), walked once per dump, not again here.
 */
export const credentialsProvider = defineProvider<CredentialsReport>('credentials', async (context) => {
  const reader = await context.get(readerProvider);
  const listed = await context.get(taskListProvider);
  const tasks = listed.tasks.map(({ task }) => task);
  const problems = [...listed.warnings];
  if (reader.profile.symbol('init_pid_ns') !== undefined) {
    try {
      const namespace = await context.get(pidNamespaceProvider);
      problems.push(...namespace.warnings);
      tasks.push(...namespace.tasks.map(({ task }) => task));
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`pid namespace: ${error.message}`);
    }
  }
  return readCredentials(reader, { tasks, problems });
});

/** The kernel log from the printk ring buffer. */
export const kernelLogProvider = defineProvider<KernelLog>('kernel log', async (context) =>
  readKernelLog(await context.get(readerProvider)),
);

/** `tainted_mask`, decoded with the kernel's own taint table. */
export const taintProvider = defineProvider<KernelTaint>('taint', async (context) =>
  readTaint(await context.get(readerProvider)),
);

export interface KernelHookFindings {
  readonly findings: Finding[];
  /** Why a reader stopped short: some hook may be missing. */
  readonly problems: string[];
}

/**
 * The findings of the eight kernel techniques (ftrace, kprobe, eBPF, netfilter, inline, IDT,
 * /proc and credential tampering), in that order: the one code path `check` and the monitor's
 * snapshot summary share.
 */
export const kernelHookFindingsProvider = defineProvider<KernelHookFindings>(
  'kernel hook findings',
  async (context) => {
    const ftrace = await context.get(ftraceOpsProvider);
    const kprobes = await context.get(kprobesProvider);
    const bpf = await context.get(bpfProvider);
    const netfilter = await context.get(netfilterProvider);
    const entries = await context.get(functionEntriesProvider);
    const idt = await context.get(idtProvider);
    const pointers = await context.get(operationPointersProvider);
    const credentials = await context.get(credentialsProvider);
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
  },
);
