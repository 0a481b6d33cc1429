import type { X86AddressSpace } from '../space/x86.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';

/** The kallsyms format's limits and pure parsers, shared by the decoder and the structural scan. */

/** Real kernels hold 50 k to a few hundred k symbols; 4 Mi leaves room and bounds every allocation. */
export const MAX_SYMBOLS = 1 << 22;
/** About 13 bytes per compressed name in real kernels: 16 per symbol at the cap. */
export const MAX_NAMES_BYTES = 64 << 20;
/** KSYM_NAME_LEN (6.1+): scripts/kallsyms.c rejects longer names, type letter included. */
export const MAX_EXPANDED_NAME = 512;
export const TOKEN_COUNT = 256;
export const TOKEN_INDEX_BYTES = TOKEN_COUNT * 2;
/** 256 tokens of at most KSYM_NAME_LEN bytes. */
export const MAX_TOKEN_TABLE_BYTES = TOKEN_COUNT * MAX_EXPANDED_NAME;
/** scripts/kallsyms.c aligns every table label to 8 bytes on 64-bit (`.balign 8`), to 4 since 7.0. */
export const TABLE_ALIGNMENTS = [8, 4] as const;
export type TableAlignment = (typeof TABLE_ALIGNMENTS)[number];
/** Every real entry holds at least the type letter: a length byte and one token. */
export const MIN_NAME_ENTRY_BYTES = 2;

/**
 * Offset of the entry after the one at `at` in a names stream, or -1 when its length (one
 * byte, or two when the first has the top bit set) or its tokens run past the end of `names`.
 */
export function nextNameEntry(names: Uint8Array, at: number): number {
  if (at >= names.length) return -1;
  let length = names[at++]!;
  if (length & 0x80) {
    if (at >= names.length) return -1;
    length = (length & 0x7f) | (names[at++]! << 7);
  }
  return length === 0 || at + length > names.length ? -1 : at + length;
}

export interface AddressTable {
  readonly addresses: BigUint64Array;
  /** 1 where the value is absolute (not relocated by KASLR). */
  readonly absolute: Uint8Array;
}

/**
 * Addresses from kallsyms_offsets. With absolute per-CPU symbols every relocatable symbol has a
 * negative offset; without, every offset is an unsigned distance from the base, far below 2^31
 * in a kernel image of at most 1 GiB. So any negative offset means the absolute-per-CPU encoding.
 */
export function relativeAddresses(offsets: Int32Array, relativeBase: bigint): AddressTable {
  const addresses = new BigUint64Array(offsets.length);
  const absolute = new Uint8Array(offsets.length);
  const absolutePercpu = offsets.some((offset) => offset < 0);
  for (let i = 0; i < offsets.length; i++) {
    const offset = offsets[i]!;
    if (!absolutePercpu) {
      addresses[i] = relativeBase + BigInt(offset >>> 0);
    } else if (offset >= 0) {
      addresses[i] = BigInt(offset);
      absolute[i] = 1;
    } else {
      addresses[i] = relativeBase - 1n - BigInt(offset);
    }
  }
  return { addresses, absolute };
}

/** Addresses from 7.0's kallsyms_offsets: each entry is the distance from itself to the symbol. */
export function placeRelativeAddresses(offsets: Int32Array, tableAddress: bigint): AddressTable {
  const addresses = new BigUint64Array(offsets.length);
  for (let i = 0; i < offsets.length; i++) addresses[i] = tableAddress + BigInt(4 * i + offsets[i]!);
  return { addresses, absolute: new Uint8Array(offsets.length) };
}

/** `length` bytes of guest memory; a page fault or absent page keeps its code and names the table. */
export function readRegion(space: X86AddressSpace, address: bigint, length: number, what: string): Uint8Array {
  const bytes = new Uint8Array(length);
  try {
    space.read(address, bytes);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    throw new VmscopeError(
      error.code,
      `${what} at ${hex(address)} (${length} bytes): ${error.message}`,
      space.image.path,
      error.offset,
    );
  }
  return bytes;
}
