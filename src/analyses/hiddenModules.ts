import { hex } from '../util/hex.js';
import { kernelProvider, uniqueWarnings } from './providers/kernel.js';
import { hiddenModulesProvider, moduleListProvider } from './providers/modules.js';
import { defineAnalysis, type Column } from './types.js';
const columns: readonly Column[] = [
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'struct_module', kind: 'address', title: 'struct module' },
  { key: 'base', kind: 'address', title: 'Base' },
  { key: 'size', kind: 'int', title: 'Size' },
  { key: 'found_by', kind: 'text', title: 'Found by' },
];

/** Modules that are loaded but missing from the `modules` list. */
export const hiddenModulesAnalysis = defineAnalysis({
  name: 'hidden-modules',
  description: 'find kernel modules that are loaded but unlinked from the module list (a rootkit hiding from lsmod)',
  columns,
  uses: [kernelProvider, moduleListProvider, hiddenModulesProvider],
  help: `A module stays in three places besides the "modules" list, and each is searched:
  scan      every mapped page of the module area, for a struct module whose sysfs kobject points
            back to it (mkobj.mod), with a valid name, state, list links and memory ranges;
  mod_tree  the kernel's address-to-module tree (latch rb-tree of module memory);
  sysfs     the /sys/module kset's kobjects.
A valid struct module any of them finds that the list does not hold is reported, with the
sources that found it. An empty result means nothing is hidden.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const list = await inputs.get(moduleListProvider);
    const { hidden, warnings } = await inputs.get(hiddenModulesProvider);
    const rows = hidden.map(({ module, foundBy }) => ({
      name: module.name,
      struct_module: hex(module.address),
      base: hex(module.base),
      size: module.size,
      found_by: foundBy.join(','),
    }));
    const problems = uniqueWarnings(list.warnings, warnings);
    return {
      columns,
      rows,
      single: false,
      partial: problems.length > 0,
      warnings: uniqueWarnings(kernel.warnings, problems),
    };
  },
});
