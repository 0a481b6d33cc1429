import type { SyscallCheck } from '../os/linux/syscalls.js';
import { hex } from '../util/hex.js';
import { kernelProvider, uniqueWarnings } from './providers/kernel.js';
import { allModulesProvider, syscallReportProvider } from './providers/modules.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'table', kind: 'text', title: 'Table' },
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'index', kind: 'int', title: 'Index' },
  { key: 'name', kind: 'text', title: 'Syscall' },
  { key: 'address', kind: 'address', title: 'Address' },
  { key: 'symbol', kind: 'text', title: 'Symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'hooked', kind: 'bool', title: 'Hooked' },
];

/** One syscall-table or dispatcher check as a row (also what WASI plugins that read syscalls receive). */
export function syscallRow(check: SyscallCheck): Row {
  return {
    table: check.table,
    kind: check.kind,
    index: check.index,
    name: check.name ?? null,
    address: hex(check.address),
    symbol: check.symbol ?? null,
    owner: check.owner,
    hooked: check.hooked,
  };
}

/** Every syscall table entry and dispatcher jump, resolved and checked against the kernel's own handlers. */
export const syscallsAnalysis = defineAnalysis({
  name: 'syscalls',
  description: 'check every syscall table entry and the syscall dispatcher for hooks, naming the owner of each target',
  columns,
  uses: [kernelProvider, allModulesProvider, syscallReportProvider],
  help: `Each sys_call_table entry (and ia32/x32 tables where the kernel has them) is resolved to a
symbol and an owner: "kernel" inside kernel text, a module's name (listed or hidden) inside its
memory, else "unknown". Since the 2024 BHI fix the kernel dispatches through x64_sys_call() and
friends, a switch compiled to compares and jumps: it is followed for every syscall number, so
an entry is hooked when it differs from the handler the kernel's own dispatcher calls for that
number (before the fix: when it is not a syscall handler inside kernel text). Dispatcher jumps
to anything but a syscall handler are shown as kind "dispatcher" rows, always hooked.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const report = await inputs.get(syscallReportProvider);
    const problems = uniqueWarnings(modules.warnings, report.problems);
    return {
      columns,
      rows: report.checks.map(syscallRow),
      single: false,
      partial: problems.length > 0,
      warnings: uniqueWarnings(kernel.warnings, problems),
    };
  },
});
