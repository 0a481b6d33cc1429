import type { MemoryImage } from '../image/types.js';

/**
 * The bytes a rule set is evaluated against (yara's "file"): `uint32(0)`, `filesize` and the
 * modules read it. A physical scan's unit is the dump's memory, a buffer's the buffer.
 */
export interface ScannedUnit {
  /** What `filesize` is. */
  readonly size: number;
  /** Fills `into` with the bytes at `offset`; false when any of them lies outside the unit or is absent. */
  read(offset: number, into: Uint8Array): boolean;
}

/** `bytes` as a unit whose first byte is at offset `base`; `size` is what filesize says (default: the length). */
export function bufferUnit(bytes: Uint8Array, base = 0, size = bytes.length): ScannedUnit {
  return {
    size,
    read(offset, into) {
      const at = offset - base;
      if (!Number.isSafeInteger(at) || at < 0 || at + into.length > bytes.length) return false;
      into.set(bytes.subarray(at, at + into.length));
      return true;
    },
  };
}

/**
 * A dump's physical memory as yara sees a flat dump file: offsets are physical addresses,
 * `filesize` the memory present, and bytes in a gap between ranges are undefined.
 */
export function imageUnit(image: MemoryImage): ScannedUnit {
  return {
    size: image.totalBytes,
    read: (offset, into) =>
      Number.isSafeInteger(offset) && offset >= 0 && image.readPresent(offset, into) === into.length,
  };
}

/** Bytes at most read at once when a module walks a range. */
const CHUNK_BYTES = 1 << 20;

/**
 * The bytes of [offset, offset + length) clipped to the unit's end, in chunks, as yara's modules
 * see a range; undefined (yara's undefined) when the range starts outside the unit or a byte of
 * it cannot be read.
 */
export function readRange(
  unit: ScannedUnit,
  offset: bigint,
  length: bigint,
  visit: (chunk: Uint8Array) => void,
): boolean {
  if (offset < 0n || length < 0n || offset >= BigInt(unit.size)) return false;
  const end = Math.min(unit.size, Number(offset + length > BigInt(unit.size) ? BigInt(unit.size) : offset + length));
  const buffer = new Uint8Array(Math.min(CHUNK_BYTES, end - Number(offset)));
  for (let at = Number(offset); at < end; at += buffer.length) {
    const chunk = buffer.subarray(0, Math.min(buffer.length, end - at));
    if (!unit.read(at, chunk)) return false;
    visit(chunk);
  }
  return true;
}
