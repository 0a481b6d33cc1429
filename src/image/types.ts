/**
 * The image layer turns a dump file into "physical memory": the ranges present and positional
 * reads. Physical addresses and file offsets are JS numbers (exact up to 2^53, i.e. 8 PiB);
 * virtual addresses, which need all 64 bits, are bigints in the layers above.
 */
export type ImageFormat = 'raw' | 'lime' | 'elf' | 'kdump' | 'migration' | 'avml' | 'qemu-shm';

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

/**
 * What `info` shows about the capture beyond its format: how it was compressed and, for kdump,
 * its dump level and whether it is complete. Every key is optional: raw, LiME and ELF have none.
 */
export interface FormatDetails {
  /** The whole file was `zstd`/`gzip`/`xz`-compressed and read from a decompressed temporary copy. */
  readonly container?: 'zstd' | 'gzip' | 'xz';
  /** kdump: `flattened` (makedumpfile's stream, indexed in one pass) or `random-access`. */
  readonly layout?: 'flattened' | 'random-access';
  /** Page or block compression: kdump `zlib`/`lzo`/`snappy`/`zstd`/`none` (all seen), AVML `snappy`. */
  readonly compression?: readonly string[];
  /** kdump: makedumpfile's dump level (31 = zero, cache, user and free pages excluded). */
  readonly dumpLevel?: number;
  /** kdump: false when DUMP_DH_COMPRESSED_INCOMPLETE is set (the writer ran out of space). */
  readonly complete?: boolean;
  /** kdump `KDUMP   ` / `DISKDUMP` header version; migration stream version; AVML version. */
  readonly version?: number;
  /** Pages the dump leaves out (kdump's excluded pages, AVML's omitted zero blocks), in bytes. */
  readonly excludedBytes?: number;
  /** Migration: the RAM blocks of the stream and where each lands in guest-physical memory. */
  readonly ramBlocks?: ReadonlyArray<{
    readonly name: string;
    readonly bytes: number;
    readonly mappedAt: readonly number[];
  }>;
  /** Migration: the machine type from the stream's configuration section; libvirt header if any. */
  readonly machine?: string;
  readonly wrapper?: string;
}

export interface MemoryImage {
  readonly path: string;
  readonly format: ImageFormat;
  /** Format specifics for `info` (compression, dump level, completeness); absent for plain formats. */
  readonly details?: FormatDetails;
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
  /**
   * The present ranges without the pages the format itself records as all zeros (a kdump's
   * shared zero page), whole pages only; absent when the format records none. A search that can
   * never match zeros within a page reads these instead of `ranges`.
   */
  nonZeroRanges?(): readonly PhysicalRange[];
  /**
   * A hint that physical [start, end) is read late if at all (a kernel's text, say): an image that
   * decodes its pages ahead of need on another thread (a kdump's) decodes these after the others.
   * A later hint replaces an earlier one.
   */
  decodeLast?(start: number, end: number): void;
  close(): void;
}
