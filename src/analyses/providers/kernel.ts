import { KernelReader } from '../../os/linux/kernelReader.js';
import { defineProvider } from '../context.js';

/** Typed reads of kernel objects through the kernel's address space and this dump's profile. */
export const readerProvider = defineProvider(
  'reader',
  async (context) => new KernelReader(context.kernel.space, await context.profile()),
);

/** Warnings of the providers an analysis used, each once and in order: several providers may report one problem. */
export function uniqueWarnings(...lists: ReadonlyArray<readonly string[]>): string[] {
  return [...new Set(lists.flat())];
}

/** The dump's physical memory. */
export const imageProvider = defineProvider('image', (context) => context.image);

/** The kernel found in the dump: release, banner, KASLR, DTB, its address space. */
export const kernelProvider = defineProvider('kernel', (context) => context.kernel);

export { linuxProfileProvider as profileProvider } from '../context.js';
