/**
 * The layout of the zlib inflate kernel's linear memory (assembly/inflate.ts). It is a module of
 * its own, apart from the scan kernels (memoryMap.ts): the image layer decodes dump pages with it,
 * on every thread that reads a compressed dump, and needs none of the scan kernels' window. Like
 * memoryMap.ts, AssemblyScript compiles this file and the host (src/image/zlibInflate.ts) imports
 * it, so it holds plain integer constants only.
 *
 *   address    size           contents
 *   0x00000    64 KiB         reserved: the kernel keeps no static data; whatever the compiler emits lands here
 *   0x10000    320 bytes      code lengths of the block being read: literal/length symbols, then distance symbols
 *   0x10200    16 × u16       per length, how many codes have it (table building)
 *   0x10240    16 × u16       per length, where its symbols start among the sorted ones
 *   0x10300    320 × u16      symbols sorted by code length, then value
 *   0x11000    2048 × u32     literal/length decoding table: 2^10 root entries, then sub-tables
 *   0x13000    1024 × u32     distance decoding table: 2^8 root entries, then sub-tables
 *   0x14000    128 × u32      code-length code table: 2^7 entries
 *   0x20000    input bytes    the zlib stream to inflate (the host's input capacity)
 *   then       output bytes   where the inflated bytes go (the host's output capacity)
 *
 * A table entry is a u32: bits 0-7 the code bits to consume, bits 8-15 the kind, bits 16-31 the
 * value. Kinds: 0 a literal (value: the byte); 16 + n a length or distance (value: its base, n
 * extra bits follow); 32 the end of the block; 64 a code no symbol has; 1-15 a root entry pointing
 * to a sub-table of that many bits (value: the sub-table's first entry).
 */

export const INFLATE_CODE_LENGTHS_ADDRESS = 0x10000;
/** 288 literal/length symbols and 32 distance symbols: what the fixed code defines. */
export const INFLATE_MAX_SYMBOLS = 320;
export const INFLATE_LENGTH_COUNTS_ADDRESS = 0x10200;
export const INFLATE_LENGTH_OFFSETS_ADDRESS = 0x10240;
export const INFLATE_SORTED_SYMBOLS_ADDRESS = 0x10300;

export const INFLATE_LITERAL_TABLE_ADDRESS = 0x11000;
export const INFLATE_LITERAL_ROOT_BITS = 10;
export const INFLATE_LITERAL_TABLE_ENTRIES = 2048;
export const INFLATE_DISTANCE_TABLE_ADDRESS = 0x13000;
export const INFLATE_DISTANCE_ROOT_BITS = 8;
export const INFLATE_DISTANCE_TABLE_ENTRIES = 1024;
export const INFLATE_CODE_LENGTH_TABLE_ADDRESS = 0x14000;
export const INFLATE_CODE_LENGTH_ROOT_BITS = 7;

export const INFLATE_INPUT_ADDRESS = 0x20000;

/** inflateZlib's results below zero: why the stream was refused. */
export const INFLATE_ERROR_HEADER = -1;
export const INFLATE_ERROR_BLOCK_TYPE = -2;
export const INFLATE_ERROR_STORED_LENGTH = -3;
export const INFLATE_ERROR_CODE_LENGTHS = -4;
export const INFLATE_ERROR_LITERAL_CODE = -5;
export const INFLATE_ERROR_DISTANCE_CODE = -6;
export const INFLATE_ERROR_DISTANCE_TOO_FAR = -7;
export const INFLATE_ERROR_OUTPUT_FULL = -8;
export const INFLATE_ERROR_TRUNCATED = -9;
export const INFLATE_ERROR_CHECKSUM = -10;
