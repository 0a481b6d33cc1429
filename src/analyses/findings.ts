import type { HiddenModules } from './providers/modules.js';
import type { ProcessCrossView } from './providers/processes.js';
import type { BpfReport } from '../os/linux/bpf.js';
import type { CredentialsReport } from '../os/linux/creds.js';
import type { FtraceOpsReport } from '../os/linux/ftrace.js';
import type { IdtReport } from '../os/linux/idt.js';
import type { FunctionEntryScan } from '../os/linux/inlineHooks.js';
import type { KprobeReport } from '../os/linux/kprobes.js';
import type { NetfilterReport } from '../os/linux/netfilter.js';
import type { OperationPointers } from '../os/linux/procHooks.js';
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
  /** Who did it: `kernel`, a module's name, a process (eBPF, credentials) or `unknown`. */
  readonly owner: string;
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
      // Who unlinked it is not in the task: a module's code did, which this view cannot name.
      owner: 'unknown',
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
      owner: moduleOwnerName(module),
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
      owner: check.owner,
      detail: `points to ${hex(check.address)} (${text(check.symbol)}), owned by ${check.owner}`,
    }));
}

/*
 * Kernel hooks. Each reader judges its own objects (`suspicious`, with the evidence):
 * these only say which judgements are findings and name the target and owner, so `check`, the
 * monitor's summary and a policy see one verdict.
 */

/** ftrace_ops whose callback (or direct-call target) runs outside kernel text. */
export function ftraceHookFindings({ ops }: FtraceOpsReport): Finding[] {
  return ops
    .filter((found) => found.suspicious)
    .map((found) => {
      const foreignDirect = found.targets.find((target) => target.direct && target.direct.owner !== 'kernel')?.direct;
      const targets = found.targets.map((target) => target.function ?? hex(target.ip));
      return {
        kind: 'ftrace_hook',
        severity: 'critical',
        subject: found.tracesAll ? 'every function' : targets.join(', ') || `ftrace_ops ${hex(found.address)}`,
        owner: found.callbackOwner === 'kernel' && foreignDirect ? foreignDirect.owner : found.callbackOwner,
        detail: found.evidence,
      };
    });
}

/** kprobes whose handlers run in module or unowned memory. */
export function kprobeFindings({ kprobes }: KprobeReport): Finding[] {
  return kprobes
    .filter((probe) => probe.suspicious)
    .map((probe) => {
      const handlers = [probe.preHandler, probe.postHandler, probe.returnHandler, probe.entryHandler];
      const foreign = handlers.find((handler) => handler && handler.owner !== 'kernel');
      return {
        kind: 'kprobe',
        severity: 'critical',
        subject: probe.function
          ? `${probe.function}${probe.offset === 0n ? '' : `+${hex(probe.offset)}`}`
          : hex(probe.probed),
        owner: foreign?.owner ?? 'unknown',
        detail: probe.evidence,
      };
    });
}

/** Who holds a program: the processes with it open (comm), else `unknown`. */
const holderNames = (holders: ReadonlyArray<{ comm: string }>) =>
  [...new Set(holders.map((holder) => holder.comm))].join(',') || 'unknown';

/** eBPF programs calling helpers that write user memory, override returns, signal or call bpf(). */
export function bpfProgramFindings({ programs }: BpfReport): Finding[] {
  return programs
    .filter((program) => program.suspicious)
    .map((program) => ({
      kind: 'bpf_program',
      severity: 'high',
      subject: `${program.name || '(unnamed)'} (id ${program.id})`,
      owner: holderNames(program.holders),
      detail: program.evidence,
    }));
}

/** Netfilter hooks whose function runs outside kernel text, or differs from its ops'. */
export function netfilterHookFindings({ hooks }: NetfilterReport): Finding[] {
  return hooks
    .filter((hook) => hook.suspicious)
    .map((hook) => ({
      kind: 'netfilter_hook',
      severity: 'critical',
      subject: `${hook.family} ${hook.hookName ?? hook.hooknum}${hook.device ? ` ${hook.device}` : ''} (net ${hook.netInode})`,
      owner: hook.owner,
      detail: hook.evidence,
    }));
}

/** Function entries patched to branch where neither ftrace nor kprobes account for. */
export function inlineHookFindings({ findings }: FunctionEntryScan): Finding[] {
  return findings
    .filter((entry) => entry.suspicious)
    .map((entry) => ({
      kind: 'inline_hook',
      severity: 'critical',
      subject: entry.function,
      owner: entry.targetOwner ?? 'unknown',
      detail: entry.evidence,
    }));
}

/** IDT gates whose handler is not the kernel's own entry point. */
export function idtHookFindings({ gates }: IdtReport): Finding[] {
  return gates
    .filter((gate) => gate.suspicious)
    .map((gate) => ({
      kind: 'idt_hook',
      severity: 'critical',
      subject: `vector ${gate.vector}`,
      owner: gate.owner,
      detail: gate.evidence,
    }));
}

/** Function pointers of /proc and socket reporting tables that lead outside kernel text. */
export function procHookFindings({ pointers }: OperationPointers): Finding[] {
  return pointers
    .filter((pointer) => pointer.suspicious)
    .map((pointer) => ({
      kind: 'proc_hook',
      severity: 'critical',
      subject: `${pointer.structure}.${pointer.field}`,
      owner: pointer.owner,
      detail: pointer.evidence,
    }));
}

/** User processes holding the kernel's or another thread group's credentials: one finding per thread group. */
export function credEscalationFindings({ tasks }: CredentialsReport): Finding[] {
  const groups = new Map<number, CredentialsReport['tasks'][number]>();
  for (const task of tasks.filter((found) => found.suspicious)) {
    const known = groups.get(task.tgid);
    if (!known || task.pid === task.tgid) groups.set(task.tgid, task);
  }
  return [...groups.values()].map((task) => ({
    kind: 'cred_escalation',
    severity: 'critical',
    subject: `pid ${task.pid} ${task.comm}`,
    owner: task.comm,
    detail: `${task.evidence} (uid ${task.ids?.uid ?? '?'}, euid ${task.ids?.euid ?? '?'})`,
  }));
}
