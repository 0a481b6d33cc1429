import { hex } from '../util/hex.js';
import { kernelProvider, profileProvider } from './providers/kernel.js';
import { defineAnalysis, type Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'address', kind: 'address', title: 'Address' },
  { key: 'type', kind: 'text', title: 'Type' },
  { key: 'name', kind: 'text', title: 'Name' },
];

/** The kernel's symbol table as /proc/kallsyms would print it, from the dump alone. */
export const kallsymsAnalysis = defineAnalysis({
  name: 'kallsyms',
  description: "list the kernel's symbols (address, type letter, name) as /proc/kallsyms would, decoded from the dump",
  columns,
  uses: [kernelProvider, profileProvider],
  help: `Decoded from the kernel's compressed kallsyms tables in memory (located through VMCOREINFO,
or by a structural scan when it does not name them). Type letters are unknown ("?") when
the profile comes from an ISF, which does not carry them.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const { profile } = await inputs.get(profileProvider);
    const rows = profile.symbolList.map((symbol) => ({
      address: hex(symbol.address),
      type: symbol.type ?? '?',
      name: symbol.name,
    }));
    return { columns, rows, single: false, partial: false, warnings: kernel.warnings };
  },
});
