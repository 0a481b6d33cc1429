/**
 * Fixed parts of the x86-64 Linux virtual memory map (Documentation/arch/x86/x86_64/mm.rst).
 * KASLR moves the kernel image inside its window and randomizes the direct map, vmalloc and
 * vmemmap bases; these window bounds themselves do not move.
 */

/** __START_KERNEL_map: kernel-image virtual = physical - phys_base + this. */
export const START_KERNEL_MAP = 0xffffffff80000000n;
/** Loadable modules live in [MODULES_VADDR, MODULES_END), right after the kernel image window. */
export const MODULES_VADDR = 0xffffffffc0000000n;
export const MODULES_END = 0xffffffffff000000n;
