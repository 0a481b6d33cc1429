import { CodeOwners } from '../../os/linux/codeOwners.js';
import { findHiddenModules, walkModuleList, type HiddenModule, type ModuleInfo } from '../../os/linux/modules.js';
import { checkSyscalls, type SyscallReport } from '../../os/linux/syscalls.js';
import { defineProvider } from '../context.js';
import { readerProvider } from './kernel.js';

/** The `modules` list as /proc/modules shows it, and what went wrong walking it. */
export interface ModuleList {
  readonly modules: readonly ModuleInfo[];
  readonly warnings: readonly string[];
}

export const moduleListProvider = defineProvider<ModuleList>('module list', async (context) => {
  const walk = walkModuleList(await context.get(readerProvider));
  // Both directions of a walk may stop at the same node: say so once.
  return {
    modules: walk.modules,
    warnings: [...new Set(walk.problems.map((problem) => `module list: ${problem.detail}`))],
  };
});

/** Modules found in the module area, mod_tree or sysfs but missing from the list. */
export interface HiddenModules {
  readonly hidden: readonly HiddenModule[];
  readonly warnings: readonly string[];
}

export const hiddenModulesProvider = defineProvider<HiddenModules>('hidden module search', async (context) => {
  const reader = await context.get(readerProvider);
  const list = await context.get(moduleListProvider);
  const search = findHiddenModules(reader, list.modules);
  return { hidden: search.hidden, warnings: search.problems };
});

/** Every module the kernel holds, listed or hidden: the owners of code outside the kernel. */
export const allModulesProvider = defineProvider<ModuleList>('all modules', async (context) => {
  const [list, hidden] = [await context.get(moduleListProvider), await context.get(hiddenModulesProvider)];
  return {
    modules: [...list.modules, ...hidden.hidden.map((found) => found.module)],
    warnings: [...list.warnings, ...hidden.warnings],
  };
});

/** Who owns a pointer: kernel text, a module (listed or hidden), or unknown memory. */
export const codeOwnersProvider = defineProvider('code owners', async (context) => {
  return new CodeOwners(await context.get(readerProvider), (await context.get(allModulesProvider)).modules);
});

/** Every syscall table entry and dispatcher jump, judged against the kernel's own handlers. */
export const syscallReportProvider = defineProvider<SyscallReport>('syscall tables', async (context) => {
  return checkSyscalls(await context.get(readerProvider), (await context.get(allModulesProvider)).modules);
});
