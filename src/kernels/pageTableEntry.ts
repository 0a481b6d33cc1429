/** The bits of an x86-64 page-table entry that translation and the table decoder read (SDM vol. 3, 4.5). */
export const PRESENT = 1n;
export const WRITABLE = 2n;
export const USER = 4n;
/** PS: at levels 2 and 3 the entry maps a 2 MiB / 1 GiB page instead of pointing to a table. */
export const LARGE_PAGE = 0x80n;
export const NO_EXECUTE = 1n << 63n;
/** Bits 12..51: the physical frame (or next table). */
export const ADDRESS_MASK = 0x000ffffffffff000n;
