import { findHiddenModules, type HiddenModule } from '../os/linux/modules.js';
import { hex } from '../util/hex.js';
import type { DumpContext } from './context.js';
import { moduleList, type ModuleList } from './lsmod.js';
import type { Analysis, AnalysisResult, Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'struct_module', kind: 'address', title: 'struct module' },
  { key: 'base', kind: 'address', title: 'Base' },
  { key: 'size', kind: 'int', title: 'Size' },
  { key: 'found_by', kind: 'text', title: 'Found by' },
];

/** The listed modules and the ones found elsewhere but not on the list. */
export interface KernelModules extends ModuleList {
  readonly hidden: readonly HiddenModule[];
}

export async function kernelModules(context: DumpContext): Promise<KernelModules> {
  const list = await moduleList(context);
  const search = findHiddenModules(list.reader, list.modules);
  return { ...list, hidden: search.hidden, warnings: [...list.warnings, ...search.problems] };
}

/** Modules that are loaded but missing from the `modules` list. */
export async function hiddenModules(context: DumpContext): Promise<AnalysisResult> {
  const { hidden, warnings } = await kernelModules(context);
  const rows = hidden.map(({ module, foundBy }) => ({
    name: module.name,
    struct_module: hex(module.address),
    base: hex(module.base),
    size: module.size,
    found_by: foundBy.join(','),
  }));
  return { columns, rows, single: false, partial: warnings.length > 0, warnings: [...context.kernel.warnings, ...warnings] };
}

export const hiddenModulesAnalysis: Analysis = {
  name: 'hidden-modules',
  description: 'find kernel modules that are loaded but unlinked from the module list (a rootkit hiding from lsmod)',
  columns,
  requires: ['kernel', 'profile'],
  help: `A module stays in three places besides the "modules" list, and each is searched:
  scan      every mapped page of the module area, for a struct module whose sysfs kobject points
            back to it (mkobj.mod), with a valid name, state, list links and memory ranges;
  mod_tree  the kernel's address-to-module tree (latch rb-tree of module memory);
  sysfs     the /sys/module kset's kobjects.
A valid struct module any of them finds that the list does not hold is reported, with the
sources that found it. An empty result means nothing is hidden.`,
  run: (context) => hiddenModules(context),
};
