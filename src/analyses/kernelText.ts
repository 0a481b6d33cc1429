import type { FunctionEntryFinding } from '../os/linux/inlineHooks.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { functionEntriesProvider } from './providers/tampering.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'function', kind: 'text', title: 'Function' },
  { key: 'address', kind: 'address', title: 'Address' },
  { key: 'function_owner', kind: 'text', title: 'In' },
  { key: 'patch_at', kind: 'address', title: 'Patched at' },
  { key: 'bytes', kind: 'text', title: 'Bytes' },
  { key: 'instruction', kind: 'text', title: 'Instruction' },
  { key: 'ftrace_site', kind: 'bool', title: 'Ftrace site' },
  { key: 'target', kind: 'address', title: 'Target' },
  { key: 'target_symbol', kind: 'text', title: 'Target symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

function entryRow(entry: FunctionEntryFinding): Row {
  return {
    function: entry.function,
    address: hex(entry.address),
    function_owner: entry.functionOwner,
    patch_at: hex(entry.patchAt),
    bytes: entry.bytes,
    instruction: entry.instruction,
    ftrace_site: entry.ftraceSite,
    target: entry.target === undefined ? null : hex(entry.target),
    target_symbol: entry.targetSymbol ?? null,
    owner: entry.targetOwner ?? 'unknown',
    suspicious: entry.suspicious,
    evidence: entry.evidence,
  };
}

/** Function entries of kernel and module code that do not hold the plain ftrace NOP: traced, or patched. */
export const kernelTextAnalysis = defineAnalysis({
  name: 'kernel-text',
  description:
    'check the entry of every kernel and module function for inline hooks (jmp/call, movabs+jmp, push+ret, int3)',
  columns,
  uses: [kernelProvider, allModulesProvider, functionEntriesProvider],
  help: `Decodes the entry of every kernel function (kallsyms text symbols) and every module
function (each module's own kallsyms, hidden modules included) with iced-x86. After an optional
ENDBR64, an ftrace site (one the kernel's dyn_ftrace records list) must hold the ftrace NOP or a
call into a trampoline the ftrace state accounts for (ftrace_caller, an ops' trampoline, a
direct-call target); other entries may branch only within kernel text or their own module, and
never by movabs+jmp reg, push+ret, jmp [mem] or an int3 no kprobe placed. Only entries that are
not the plain NOP are listed: sites ftrace is using, and hooks (suspicious). Owner is who owns
the branch target.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const scan = await inputs.get(functionEntriesProvider);
    return readerTable(columns, scan.findings.map(entryRow), kernel, modules.warnings, scan.problems);
  },
});
