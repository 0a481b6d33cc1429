import type { X86AddressSpace } from '../space/x86.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';
import {
  MAX_EXPANDED_NAME,
  MAX_NAMES_BYTES,
  MAX_SYMBOLS,
  MAX_TOKEN_TABLE_BYTES,
  MIN_NAME_ENTRY_BYTES,
  nextNameEntry,
  placeRelativeAddresses,
  readRegion,
  relativeAddresses,
  TOKEN_COUNT,
  TOKEN_INDEX_BYTES,
  type AddressTable,
} from './kallsymsTables.js';

export { findKallsyms } from './kallsymsScan.js';

/**
 * The kernel's own symbol table, as scripts/kallsyms.c compresses it into vmlinux .rodata and
 * /proc/kallsyms expands it (kernel/kallsyms.c):
 *
 * - `kallsyms_num_syms`: a u32 count N (a u64 on older kernels: the low half is the same).
 * - `kallsyms_names`: N entries `[length][length token indices]`; a length with its top bit set
 *   takes a second byte, `(b0 & 0x7f) | b1 << 7` (6.1+, for names of 128+ tokens). The first
 *   character of the expanded entry is the type letter /proc/kallsyms prints.
 * - `kallsyms_token_table`: 256 NUL-terminated tokens, back to back; `kallsyms_token_index`: 256
 *   u16 offsets of each token in the table.
 * - addresses, in one of four encodings:
 *   - `kallsyms_offsets` (s32) + `kallsyms_relative_base` (u64) with absolute per-CPU symbols
 *     (x86-64 SMP until its per-CPU rework in 6.15): an offset >= 0 is the absolute value of a
 *     per-CPU symbol, a negative one is relative: `relative_base - 1 - offset`;
 *   - the same tables without absolute per-CPU symbols (then up to 6.19):
 *     `relative_base + (u32)offset`;
 *   - `kallsyms_offsets` alone (7.0+, place-relative): `&kallsyms_offsets[i] + offset`;
 *   - `kallsyms_addresses`, one u64 per symbol (!CONFIG_KALLSYMS_BASE_RELATIVE, older kernels).
 *
 * Everything here comes from guest memory, so every count and offset is bounded before it is
 * believed, and every failure names the table and its virtual address.
 */
export interface KernelSymbol {
  readonly name: string;
  /** The runtime address: KASLR already applied, as /proc/kallsyms shows it. */
  readonly address: bigint;
  /** The type letter /proc/kallsyms shows ('T', 't', 'D', 'A', …). */
  readonly type: string;
  /** An absolute value (per-CPU offsets, 'A' symbols): not moved by KASLR. */
  readonly absolute: boolean;
}

/** Virtual addresses of the tables: `offsets` with `relativeBase`, `offsets` alone (7.0+), or `addresses`. */
export interface KallsymsLocation {
  names: bigint;
  numSyms: bigint;
  tokenTable: bigint;
  tokenIndex: bigint;
  /** Where the names stream ends (kallsyms_markers follows it); without it, the token table bounds it. */
  markers?: bigint;
  offsets?: bigint;
  relativeBase?: bigint;
  addresses?: bigint;
}

/** Expand the kernel's symbol table, in table (address) order, with runtime addresses. */
export function decodeKallsyms(space: X86AddressSpace, location: KallsymsLocation): KernelSymbol[] {
  const namesEnd = location.markers ?? location.tokenTable;
  const namesBytes = namesEnd - location.names;
  if (namesBytes <= 0n || namesBytes > BigInt(MAX_NAMES_BYTES)) {
    throw corrupt(
      space,
      location.names,
      `kallsyms_names ${hex(location.names)} to ${hex(namesEnd)} is not a plausible table (0 to ${MAX_NAMES_BYTES} bytes)`,
    );
  }
  const count = symbolCount(space, location.numSyms, Number(namesBytes));
  const tokens = readTokens(space, location.tokenTable, location.tokenIndex);
  const names = expandNames(
    space,
    location.names,
    readRegion(space, location.names, Number(namesBytes), 'kallsyms_names'),
    count,
    tokens,
  );
  const { addresses, absolute } = readAddresses(space, location, count, names);
  const symbols = new Array<KernelSymbol>(count);
  for (let i = 0; i < count; i++) {
    const start = names.starts[i]!;
    symbols[i] = {
      name: names.text.slice(start + 1, names.starts[i + 1]),
      address: addresses[i]!,
      type: names.text[start]!,
      absolute: absolute[i] === 1,
    };
  }
  return symbols;
}

/** kallsyms_num_syms, bounded by what the names region can hold and by MAX_SYMBOLS. */
function symbolCount(space: X86AddressSpace, numSyms: bigint, namesBytes: number): number {
  const count = new DataView(readRegion(space, numSyms, 4, 'kallsyms_num_syms').buffer).getUint32(0, true);
  const fits = Math.min(MAX_SYMBOLS, Math.floor(namesBytes / MIN_NAME_ENTRY_BYTES));
  if (count === 0 || count > fits) {
    throw corrupt(
      space,
      numSyms,
      `kallsyms_num_syms at ${hex(numSyms)} says ${count} symbols; ${count === 0 ? 'a kernel has at least one' : `the names region (${namesBytes} bytes, ${MIN_NAME_ENTRY_BYTES}+ per name) and the cap of ${MAX_SYMBOLS} allow at most ${fits}`}`,
    );
  }
  return count;
}

/** Token i is `length[i]` bytes of `table` from `start[i]`. */
interface TokenTable {
  readonly table: Uint8Array;
  readonly start: Uint16Array;
  readonly length: Uint16Array;
}

function readTokens(space: X86AddressSpace, tokenTable: bigint, tokenIndex: bigint): TokenTable {
  const tableBytes = tokenIndex - tokenTable;
  if (tableBytes <= 0n || tableBytes > BigInt(MAX_TOKEN_TABLE_BYTES)) {
    throw corrupt(
      space,
      tokenTable,
      `kallsyms_token_index ${hex(tokenIndex)} does not follow kallsyms_token_table ${hex(tokenTable)} within ${MAX_TOKEN_TABLE_BYTES} bytes`,
    );
  }
  const table = readRegion(space, tokenTable, Number(tableBytes), 'kallsyms_token_table');
  const index = new DataView(readRegion(space, tokenIndex, TOKEN_INDEX_BYTES, 'kallsyms_token_index').buffer);
  const start = new Uint16Array(TOKEN_COUNT);
  const length = new Uint16Array(TOKEN_COUNT);
  for (let token = 0; token < TOKEN_COUNT; token++) {
    const offset = index.getUint16(2 * token, true);
    const end = offset < table.length ? table.indexOf(0, offset) : -1;
    if (end < 0) {
      const problem =
        offset < table.length ? 'has no NUL terminator before the end of the table' : 'lies past the end of the table';
      throw corrupt(
        space,
        tokenTable + BigInt(offset),
        `kallsyms_token_table at ${hex(tokenTable)} (${tableBytes} bytes, up to kallsyms_token_index ${hex(tokenIndex)}): token ${token} at ${hex(tokenTable + BigInt(offset))} (offset ${hex(offset)}) ${problem}`,
      );
    }
    start[token] = offset;
    length[token] = end - offset;
  }
  return { table, start, length };
}

/** All entries expanded into one string: entry i, its type letter then its name, is text[starts[i], starts[i + 1]). */
interface ExpandedNames {
  readonly text: string;
  readonly starts: Uint32Array;
}

/**
 * Two passes: the first checks every entry and sizes the output, the second copies token bytes
 * into one buffer decoded once; per-symbol strings are then slices of it, which keeps a
 * hundred thousand token concatenations (and their garbage) out of the hot path.
 */
function expandNames(
  space: X86AddressSpace,
  base: bigint,
  names: Uint8Array,
  count: number,
  tokens: TokenTable,
): ExpandedNames {
  const starts = new Uint32Array(count + 1);
  const entryEnds = new Uint32Array(count);
  let at = 0;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const next = nextNameEntry(names, at);
    if (next < 0) {
      throw corrupt(
        space,
        base + BigInt(at),
        `kallsyms_names at ${hex(base)}: entry ${i} of ${count} at ${hex(base + BigInt(at))} runs past the end of the names region (${names.length} bytes)`,
      );
    }
    let characters = 0;
    for (let j = at + (names[at]! & 0x80 ? 2 : 1); j < next; j++) characters += tokens.length[names[j]!]!;
    if (characters === 0 || characters > MAX_EXPANDED_NAME) {
      throw corrupt(
        space,
        base + BigInt(at),
        `kallsyms_names entry ${i} at ${hex(base + BigInt(at))} expands to ${characters} characters (a type letter and a name of at most ${MAX_EXPANDED_NAME - 1})`,
      );
    }
    starts[i] = total;
    entryEnds[i] = next;
    total += characters;
    at = next;
  }
  starts[count] = total;

  const expanded = Buffer.allocUnsafe(total);
  const { table, start, length } = tokens;
  let out = 0;
  at = 0;
  for (let i = 0; i < count; i++) {
    const end = entryEnds[i]!;
    for (let j = at + (names[at]! & 0x80 ? 2 : 1); j < end; j++) {
      const token = names[j]!;
      const from = start[token]!;
      const to = from + length[token]!;
      for (let k = from; k < to; k++) expanded[out++] = table[k]!;
    }
    at = end;
  }
  return { text: expanded.toString('latin1'), starts };
}

function readAddresses(
  space: X86AddressSpace,
  location: KallsymsLocation,
  count: number,
  names: ExpandedNames,
): AddressTable {
  if (location.offsets !== undefined) {
    const offsets = new Int32Array(readRegion(space, location.offsets, 4 * count, 'kallsyms_offsets').buffer);
    if (location.relativeBase === undefined) return placeRelativeAddresses(offsets, location.offsets);
    const relativeBase = new DataView(
      readRegion(space, location.relativeBase, 8, 'kallsyms_relative_base').buffer,
    ).getBigUint64(0, true);
    return relativeAddresses(offsets, relativeBase);
  }
  if (location.addresses !== undefined) {
    const addresses = new BigUint64Array(readRegion(space, location.addresses, 8 * count, 'kallsyms_addresses').buffer);
    // scripts/kallsyms.c emits `_text + offset` (relocated) for every symbol but type 'A'.
    const absolute = new Uint8Array(count);
    for (let i = 0; i < count; i++) absolute[i] = names.text[names.starts[i]!]!.toUpperCase() === 'A' ? 1 : 0;
    return { addresses, absolute };
  }
  throw new VmscopeError(
    'NO_PROFILE',
    'kallsyms location has neither kallsyms_offsets nor kallsyms_addresses',
    space.image.path,
    location.names,
  );
}

function corrupt(space: X86AddressSpace, address: bigint, message: string): VmscopeError {
  return new VmscopeError('CORRUPT_STRUCTURE', message, space.image.path, address);
}
