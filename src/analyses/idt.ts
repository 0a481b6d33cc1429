import type { IdtGate } from '../os/linux/idt.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { idtProvider } from './providers/tampering.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'vector', kind: 'int', title: 'Vector' },
  { key: 'handler', kind: 'address', title: 'Handler' },
  { key: 'symbol', kind: 'text', title: 'Symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'expected', kind: 'address', title: 'Expected' },
  { key: 'expected_symbol', kind: 'text', title: 'Expected symbol' },
  { key: 'type', kind: 'int', title: 'Type' },
  { key: 'dpl', kind: 'int', title: 'DPL' },
  { key: 'ist', kind: 'int', title: 'IST' },
  { key: 'present', kind: 'bool', title: 'Present' },
  { key: 'gate', kind: 'address', title: 'Gate' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

function gateRow(gate: IdtGate): Row {
  return {
    vector: gate.vector,
    handler: hex(gate.handler),
    symbol: gate.symbol ?? null,
    owner: gate.owner,
    expected: gate.expected === undefined ? null : hex(gate.expected),
    expected_symbol: gate.expectedSymbol ?? null,
    type: gate.type,
    dpl: gate.dpl,
    ist: gate.ist,
    present: gate.present,
    gate: hex(gate.gate),
    suspicious: gate.suspicious,
    evidence: gate.evidence,
  };
}

/** The 256 gates of the interrupt descriptor table, each handler judged against the kernel's own setup. */
export const idtAnalysis = defineAnalysis({
  name: 'idt',
  description: "list the 256 IDT gates: handler, symbol, owner, and the kernel's own handler for the vector",
  columns,
  uses: [kernelProvider, allModulesProvider, idtProvider],
  help: `Decodes every gate of idt_table. A present gate must lead to the entry point the kernel
installs for its vector (where known), else to an entry point in the entry text, or for an
exception vector it leaves unset, to its early boot handler. A handler in module or unowned
memory, elsewhere in the kernel, or a gate opened to user space (DPL 3) other than int3, into
and int 0x80, is suspicious.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const report = await inputs.get(idtProvider);
    return readerTable(columns, report.gates.map(gateRow), kernel, modules.warnings, report.problems);
  },
});
