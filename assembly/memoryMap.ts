/**
 * The one layout of kernel linear memory. AssemblyScript (assembly/) compiles it and the host
 * (src/kernels/) imports this very file, so it holds plain integer constants only: valid in both
 * languages, and the two sides cannot drift apart.
 *
 *   address    size          contents
 *   0x000000   64 KiB        reserved: kernels keep no static data; whatever the compiler emits lands here
 *   0x010000   4 bytes       scan resume: u32 address, written by findNeedles (see below)
 *   0x010100   4 × 16 bytes  needle descriptors of the loaded group, one per slot:
 *                            u32 bytes address, u32 length, u32 rare offset A, u32 rare offset B
 *   0x020000   256 KiB       needle bytes (each needle at most MAX_NEEDLE_LENGTH)
 *   0x060000   512 KiB       hits: HIT_CAPACITY × { u32 start address, u32 needle slot }
 *   0x100000   windowBytes   scan window: the bytes being searched, chosen at instance creation
 *
 * findNeedles reports hits in address order. It only verifies a candidate address while at least
 * one slot per loaded needle is free, so when the hit area runs short it stops *between* two
 * addresses and stores the first unverified one at SCAN_RESUME_ADDRESS: calling again from there
 * loses and repeats nothing. After a complete scan the resume address equals the scan's end.
 */

export const WASM_PAGE_BYTES = 0x10000;

export const SCAN_RESUME_ADDRESS = 0x10000;

export const NEEDLE_TABLE_ADDRESS = 0x10100;
export const MAX_GROUP_NEEDLES = 4;
export const NEEDLE_DESCRIPTOR_BYTES = 16;
export const DESCRIPTOR_BYTES_FIELD = 0;
export const DESCRIPTOR_LENGTH_FIELD = 4;
export const DESCRIPTOR_RARE_A_FIELD = 8;
export const DESCRIPTOR_RARE_B_FIELD = 12;

export const NEEDLE_BYTES_ADDRESS = 0x20000;
export const NEEDLE_BYTES_CAPACITY = 0x40000;
export const MAX_NEEDLE_LENGTH = NEEDLE_BYTES_CAPACITY / MAX_GROUP_NEEDLES;

export const HITS_ADDRESS = 0x60000;
export const HIT_BYTES = 8;
export const HIT_START_FIELD = 0;
export const HIT_SLOT_FIELD = 4;
export const HIT_CAPACITY = 0x10000;

export const WINDOW_ADDRESS = 0x100000;
// 4 MiB: the bytes just read are still in the CPU cache when the kernel scans them. Measured on a
// 512 MiB dump: 9.6 GB/s for one needle against 7.6 GB/s with a 32 MiB window (bench/multiNeedle.ts).
export const DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024;
