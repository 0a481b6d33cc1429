/**
 * The image layer turns a dump file into "physical memory": the ranges present and positional
 * reads. Physical addresses and file offsets are JS numbers (exact up to 2^53, i.e. 8 PiB);
 * virtual addresses, which need all 64 bits, are bigints in the layers above.
 */
export type ImageFormat = 'raw' | 'lime' | 'elf';

/** A run of physical memory present in the image, `end` exclusive, stored at `fileOffset`. */
export interface PhysicalRange {
  readonly start: number;
  readonly end: number;
  readonly fileOffset: number;
}

/** An ELF note as found in a core file (QEMU writes NT_PRSTATUS, its CPU state and maybe VMCOREINFO). */
export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly descFileOffset: number;
  readonly desc: Uint8Array;
}

/** What the dump file itself says about each CPU (ELF cores only). */
export interface CpuState {
  readonly cpu: number;
  readonly cr3: bigint;
  readonly rip: bigint;
}

export interface MemoryImage {
  readonly path: string;
  readonly format: ImageFormat;
  /** Sorted by start, non-overlapping. */
  readonly ranges: readonly PhysicalRange[];
  /** Bytes of physical memory present (the sum of the ranges). */
  readonly totalBytes: number;
  readonly notes: readonly ElfNote[];
  readonly cpus: readonly CpuState[];
  /** Fill `into` with physical memory from `physical`; throws AbsentMemoryError when any byte is absent. */
  read(physical: number, into: Uint8Array): void;
  /** Like read, but stops at the first absent byte and returns how many bytes were filled. */
  readPresent(physical: number, into: Uint8Array): number;
  close(): void;
}
