import { KernelReader } from '../os/linux/kernelReader.js';
import { walkModuleList, type ModuleInfo } from '../os/linux/modules.js';
import { hex } from '../util/hex.js';
import type { DumpContext } from './context.js';
import type { Analysis, AnalysisResult, Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'base', kind: 'address', title: 'Base' },
  { key: 'size', kind: 'int', title: 'Size' },
  { key: 'state', kind: 'text', title: 'State' },
  { key: 'refcount', kind: 'int', title: 'Used by' },
];

/** The `modules` list as every module analysis starts from it, and what went wrong walking it. */
export interface ModuleList {
  readonly reader: KernelReader;
  readonly modules: readonly ModuleInfo[];
  readonly warnings: string[];
}

export async function moduleList(context: DumpContext): Promise<ModuleList> {
  const reader = new KernelReader(context.kernel.space, await context.profile());
  const walk = walkModuleList(reader);
  // Both directions of a walk may stop at the same node: say so once.
  return { reader, modules: walk.modules, warnings: [...new Set(walk.problems.map((problem) => `module list: ${problem.detail}`))] };
}

/** The loaded modules as /proc/modules and lsmod show them, from the kernel's `modules` list. */
export async function lsmod(context: DumpContext): Promise<AnalysisResult> {
  const { modules, warnings } = await moduleList(context);
  const rows = modules.map((module) => ({
    name: module.name,
    base: hex(module.base),
    size: module.size,
    state: module.stateName ?? `unknown (${module.state})`,
    refcount: module.refcount,
  }));
  return { columns, rows, single: false, partial: warnings.length > 0, warnings: [...context.kernel.warnings, ...warnings] };
}

export const lsmodAnalysis: Analysis = {
  name: 'lsmod',
  description: "list the loaded kernel modules (name, base, size, state, users) from the kernel's module list",
  columns,
  requires: ['kernel', 'profile'],
  help: `Walks the kernel's "modules" list (what lsmod and /proc/modules read). Base is the start of
the module's core text; size counts all its memory, as /proc/modules does; "Used by" is the
reference count less the module's own. A module that unlinked itself from this list is not
shown here: hidden-modules finds it.`,
  run: (context) => lsmod(context),
};
