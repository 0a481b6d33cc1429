import { z } from 'zod';
import type { EnabledFunction, FtraceOps } from '../os/linux/ftrace.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { enabledFunctionsProvider, ftraceOpsProvider } from './providers/tampering.js';
import { defineAnalysis, option, type Column, type Row } from './types.js';

const opsColumns: readonly Column[] = [
  { key: 'ops', kind: 'address', title: 'ftrace_ops' },
  { key: 'callback', kind: 'address', title: 'Callback' },
  { key: 'callback_symbol', kind: 'text', title: 'Symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'flags', kind: 'list', title: 'Flags', separator: ',' },
  { key: 'trampoline', kind: 'address', title: 'Trampoline' },
  { key: 'targets', kind: 'list', title: 'Attached to' },
  { key: 'traces_all', kind: 'bool', title: 'All functions' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

const siteColumns: readonly Column[] = [
  { key: 'address', kind: 'address', title: 'Site' },
  { key: 'function', kind: 'text', title: 'Function' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'ref_count', kind: 'int', title: 'Refs' },
  { key: 'regs', kind: 'bool', title: 'R' },
  { key: 'ipmodify', kind: 'bool', title: 'I' },
  { key: 'direct', kind: 'bool', title: 'D' },
  { key: 'trampolines', kind: 'list', title: 'Trampolines' },
  { key: 'callbacks', kind: 'list', title: 'Callbacks' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'line', kind: 'text', title: 'enabled_functions' },
];

function opsRow(ops: FtraceOps): Row {
  return {
    ops: hex(ops.address),
    callback: hex(ops.callback),
    callback_symbol: ops.callbackSymbol ?? null,
    owner: ops.callbackOwner,
    flags: ops.flagNames,
    trampoline: ops.trampoline === 0n ? null : hex(ops.trampoline),
    targets: ops.targets.map((target) => target.function ?? hex(target.ip)),
    traces_all: ops.tracesAll,
    suspicious: ops.suspicious,
    evidence: ops.evidence,
  };
}

function siteRow(site: EnabledFunction): Row {
  return {
    address: hex(site.ip),
    function: site.function ?? null,
    owner: site.owner,
    ref_count: site.refCount,
    regs: site.regs,
    ipmodify: site.ipmodify,
    direct: site.direct,
    trampolines: site.trampolines.map((use) => hex(use.trampoline)),
    callbacks: site.trampolines.map((use) => use.callbackSymbol ?? hex(use.callback)),
    suspicious: site.suspicious,
    line: site.evidence,
  };
}

/** Registered ftrace_ops (or the enabled call sites): who traces which kernel functions. */
export const ftraceAnalysis = defineAnalysis({
  name: 'ftrace',
  description: 'list every registered ftrace_ops: callback, owner, flags and the functions it is attached to',
  columns: opsColumns,
  uses: [kernelProvider, allModulesProvider, ftraceOpsProvider, enabledFunctionsProvider],
  options: z.object({
    sites: option(z.boolean().default(false), {
      description: 'list the enabled call sites instead, as tracefs enabled_functions shows them',
    }),
  }),
  help: `Walks ftrace_ops_list (it ends at ftrace_list_end). Each ops' filter hash names the
functions it is attached to (none and "All functions": it traces everything). A callback
outside kernel text, or a direct-call target that is neither kernel text nor a BPF JIT image,
is suspicious: the kernel's own tracers, kprobes, livepatch and BPF trampolines all call into
kernel text. --sites lists each enabled dyn_ftrace record with its reference count, the R/I/D
flags and the trampolines it calls, as enabled_functions does.`,
  async compute(inputs, options) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const ops = await inputs.get(ftraceOpsProvider);
    if (!options.sites) return readerTable(opsColumns, ops.ops.map(opsRow), kernel, modules.warnings, ops.problems);
    const sites = await inputs.get(enabledFunctionsProvider);
    return readerTable(
      siteColumns,
      sites.functions.map(siteRow),
      kernel,
      modules.warnings,
      ops.problems,
      sites.problems,
    );
  },
});
