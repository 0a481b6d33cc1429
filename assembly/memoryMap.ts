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
 *   0x0e0000   4 KiB         page table: the 512 little-endian u64 entries of the one table decodeTable reads
 *   0x0e1000   512 × 16 B    table records, written by decodeTable: u64 physical address, u32 entry index,
 *                            u16 entry count, u16 flags (TABLE_RECORD_*)
 *   0x100000   windowBytes   scan window: the bytes being searched, chosen at instance creation
 *   window end 448 KiB       atom tables (filterAtoms), right after the window wherever it ends:
 *     +0x00000   64 KiB        pair table: byte i is 1 when an atom starts with the bytes that read
 *                              as the u16 i (a single-byte atom b: every pair b, x), else 0
 *     +0x10000   257 × u32     single-byte starts: the atoms of one byte b are single-byte ids
 *                              [starts[b], starts[b + 1])
 *     +0x11000   4096 × u32    single-byte ids, ascending within each byte value
 *     +0x15000   4096 × 16 B   prefix entries: u32 value, u32 mask, u32 length, u32 atom id; the
 *                              atom's bytes as a little-endian u32 under a mask of its length
 *     +0x25000   65537 × u32   prefix starts: the atoms of 2–4 bytes whose first two bytes read as
 *                              the u16 i are entries [starts[i], starts[i + 1]), ascending by id
 *
 * The atom tables follow the window so that the kernel may read a few bytes past the data's end
 * without leaving linear memory (it never counts what it reads there as a hit).
 *
 * findNeedles reports hits in address order. It only verifies a candidate address while at least
 * one slot per loaded needle is free, so when the hit area runs short it stops *between* two
 * addresses and stores the first unverified one at SCAN_RESUME_ADDRESS: calling again from there
 * loses and repeats nothing. After a complete scan the resume address equals the scan's end.
 * filterAtoms writes the same hit records ({ u32 start address, u32 atom id }) under the same rule,
 * and so does findWordsInRange (id 0: the host reads the word at the address from the window).
 *
 * The page-table area is apart from everything a scan uses (needles, hits, resume address, window,
 * atom tables), and decodeTable touches nothing else, not even the hit count: a page-table walk
 * may run while a scan is under way (say, from a stream's fill between two chunks) without
 * KernelInstance.exclusive(), and never disturbs the scan. Walks share the area among themselves,
 * so the host copies a table in, decodes it and reads the records out in one synchronous call
 * (src/kernels/pageTables.ts): a walk suspended between two tables (mappings() is a generator)
 * holds its records on the host, and another walk reusing the area meanwhile cannot change them.
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

export const PAGE_TABLE_ADDRESS = 0xe0000;
export const PAGE_TABLE_ENTRIES = 512;
export const PAGE_TABLE_BYTES = PAGE_TABLE_ENTRIES * 8;
export const TABLE_RECORDS_ADDRESS = PAGE_TABLE_ADDRESS + PAGE_TABLE_BYTES;
/** A table yields at most one record per entry. */
export const TABLE_RECORD_CAPACITY = PAGE_TABLE_ENTRIES;
export const TABLE_RECORD_BYTES = 16;
/** The first entry's frame (a leaf's masked to its page size); entry k of the record maps physical + k × page size. */
export const TABLE_RECORD_PHYSICAL_FIELD = 0;
export const TABLE_RECORD_INDEX_FIELD = 8;
/** Consecutive present entries the record stands for: 1 for a table, 1–512 for leaves. */
export const TABLE_RECORD_COUNT_FIELD = 12;
export const TABLE_RECORD_FLAGS_FIELD = 14;
export const TABLE_RECORD_WRITABLE = 1;
export const TABLE_RECORD_USER = 2;
export const TABLE_RECORD_NO_EXECUTE = 4;
/** The entry maps pages (level 1, or a 2 MiB / 1 GiB page at level 2 / 3), else it points to the next table. */
export const TABLE_RECORD_LEAF = 8;

export const WINDOW_ADDRESS = 0x100000;
// 4 MiB: the bytes just read are still in the CPU cache when the kernel scans them. Measured on a
// 512 MiB dump: 9.6 GB/s for one needle against 7.6 GB/s with a 32 MiB window (bench/multiNeedle.ts).
export const DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024;

export const MAX_ATOMS = 4096;
export const MAX_ATOM_LENGTH = 4;
export const ATOM_TABLES_BYTES = 0x70000;
export const ATOM_PAIR_TABLE_OFFSET = 0;
export const ATOM_SINGLE_STARTS_OFFSET = 0x10000;
export const ATOM_SINGLE_IDS_OFFSET = 0x11000;
export const ATOM_ENTRIES_OFFSET = 0x15000;
export const ATOM_ENTRY_BYTES = 16;
export const ATOM_ENTRY_VALUE_FIELD = 0;
export const ATOM_ENTRY_MASK_FIELD = 4;
export const ATOM_ENTRY_LENGTH_FIELD = 8;
export const ATOM_ENTRY_ID_FIELD = 12;
export const ATOM_PREFIX_STARTS_OFFSET = 0x25000;
