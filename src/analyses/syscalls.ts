import { checkSyscalls, type SyscallCheck } from '../os/linux/syscalls.js';
import { hex } from '../util/hex.js';
import type { DumpContext } from './context.js';
import { kernelModules } from './hiddenModules.js';
import type { Analysis, AnalysisResult, Column, Row } from './types.js';

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

function syscallRow(check: SyscallCheck): Row {
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
export async function syscalls(context: DumpContext): Promise<AnalysisResult> {
  const { reader, modules, hidden, warnings } = await kernelModules(context);
  const report = checkSyscalls(reader, [...modules, ...hidden.map((found) => found.module)]);
  const problems = [...warnings, ...report.problems];
  return {
    columns,
    rows: report.checks.map(syscallRow),
    single: false,
    partial: problems.length > 0,
    warnings: [...context.kernel.warnings, ...problems],
  };
}

export const syscallsAnalysis: Analysis = {
  name: 'syscalls',
  description: 'check every syscall table entry and the syscall dispatcher for hooks, naming the owner of each target',
  columns,
  requires: ['kernel', 'profile'],
  help: `Each sys_call_table entry (and ia32/x32 tables where the kernel has them) is resolved to a
symbol and an owner: "kernel" inside kernel text, a module's name (listed or hidden) inside its
memory, else "unknown". Since the 2024 BHI fix the kernel dispatches through x64_sys_call() and
friends, a switch compiled to compares and jumps: it is followed for every syscall number, so
an entry is hooked when it differs from the handler the kernel's own dispatcher calls for that
number (before the fix: when it is not a syscall handler inside kernel text). Dispatcher jumps
to anything but a syscall handler are shown as kind "dispatcher" rows, always hooked.`,
  run: (context) => syscalls(context),
};
