import type { CpuState, MemoryImage } from '../../image/types.js';

/** The top-level table's upper half: the kernel's mappings, which every process's table shares. */
const KERNEL_HALF = { offset: 2048, bytes: 2048 } as const;
/** CR3's table address (bits 12-51); with PTI the kernel's table is the even page of a pair, the user's copy the odd one. */
const CR3_TABLE = 0x000ffffffffff000n;
const PTI_USER_TABLE = 0x1000n;

/**
 * Whether one of `cpus` (a dump's, or QEMU's vCPUs as a live check asks them) runs the kernel whose own
 * top-level page table (init_top_pgt) is at `dtb`: the table in some vCPU's CR3 has the same
 * kernel half (every process's table is made with a copy of it). True when QEMU gave no vCPU
 * state: then nothing says otherwise. What an earlier boot left in memory (a banner, page
 * tables, a VMCOREINFO note) no vCPU runs.
 */
export function runsOnAVcpu(image: MemoryImage, cpus: readonly CpuState[], dtb: number): boolean {
  if (cpus.length === 0) return true;
  const kernelHalf = (table: bigint): Uint8Array | undefined => {
    const bytes = new Uint8Array(KERNEL_HALF.bytes);
    return image.readPresent(Number(table) + KERNEL_HALF.offset, bytes) === bytes.length ? bytes : undefined;
  };
  const own = kernelHalf(BigInt(dtb));
  if (!own?.some((byte) => byte !== 0)) return false;
  const sameAsOwn = (table: bigint) => {
    const half = kernelHalf(table);
    return half !== undefined && Buffer.from(half.buffer).equals(own);
  };
  return cpus.some(({ cr3 }) => sameAsOwn(cr3 & CR3_TABLE) || sameAsOwn(cr3 & CR3_TABLE & ~PTI_USER_TABLE));
}
