import { hex } from '../util/hex.js';
import { kernelProvider } from './providers/kernel.js';
import { moduleListProvider } from './providers/modules.js';
import { defineAnalysis, type Column } from './types.js';
const columns: readonly Column[] = [
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'base', kind: 'address', title: 'Base' },
  { key: 'size', kind: 'int', title: 'Size' },
  { key: 'state', kind: 'text', title: 'State' },
  { key: 'refcount', kind: 'int', title: 'Used by' },
];

/** The loaded modules as /proc/modules and lsmod show them, from the kernel's `modules` list. */
export const lsmodAnalysis = defineAnalysis({
  name: 'lsmod',
  description: "list the loaded kernel modules (name, base, size, state, users) from the kernel's module list",
  columns,
  uses: [kernelProvider, moduleListProvider],
  help: `Walks the kernel's "modules" list (what lsmod and /proc/modules read). Base is the start of
the module's core text; size counts all its memory, as /proc/modules does; "Used by" is the
reference count less the module's own. A module that unlinked itself from this list is not
shown here: hidden-modules finds it.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const { modules, warnings } = await inputs.get(moduleListProvider);
    const rows = modules.map((module) => ({
      name: module.name,
      base: hex(module.base),
      size: module.size,
      state: module.stateName ?? `unknown (${module.state})`,
      refcount: module.refcount,
    }));
    return { columns, rows, single: false, partial: warnings.length > 0, warnings: [...kernel.warnings, ...warnings] };
  },
});
