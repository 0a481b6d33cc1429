import type { OperationPointer } from '../os/linux/procHooks.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { operationPointersProvider } from './providers/tampering.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'structure', kind: 'text', title: 'Structure' },
  { key: 'type', kind: 'text', title: 'Type' },
  { key: 'field', kind: 'text', title: 'Field' },
  { key: 'pointer', kind: 'address', title: 'Pointer' },
  { key: 'symbol', kind: 'text', title: 'Symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'expected', kind: 'address', title: 'Expected' },
  { key: 'expected_symbol', kind: 'text', title: 'Expected symbol' },
  { key: 'slot', kind: 'address', title: 'Slot' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

function pointerRow(pointer: OperationPointer): Row {
  return {
    structure: pointer.structure,
    type: pointer.type,
    field: pointer.field,
    pointer: hex(pointer.pointer),
    symbol: pointer.symbol ?? null,
    owner: pointer.owner,
    expected: pointer.expected === undefined ? null : hex(pointer.expected),
    expected_symbol: pointer.expectedSymbol ?? null,
    slot: hex(pointer.slot),
    suspicious: pointer.suspicious,
    evidence: pointer.evidence,
  };
}

/** The function pointers of the tables /proc and socket listings are produced through. */
export const procHooksAnalysis = defineAnalysis({
  name: 'proc-hooks',
  description:
    'check the seq_operations, file/inode operations and proto_ops behind /proc and socket listings for hooks',
  columns,
  uses: [kernelProvider, allModulesProvider, operationPointersProvider],
  help: `Reads every function pointer of the tables the kernel reports processes and sockets
through (tcp4/6, udp, udp6, raw, unix, packet seq_operations; the /proc root and pid directory
file and inode operations; socket proto_ops and proto), each layout from BTF. A pointer outside
kernel text, or inside it but not at a function's start, is suspicious; "Expected" is the kernel
function named after the table and field (tcp4_seq_ops.show: tcp4_seq_show) where it exists.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const report = await inputs.get(operationPointersProvider);
    return readerTable(columns, report.pointers.map(pointerRow), kernel, modules.warnings, report.problems);
  },
});
