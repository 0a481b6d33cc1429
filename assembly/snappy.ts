import {
  SNAPPY_ERROR_LENGTH,
  SNAPPY_ERROR_OFFSET,
  SNAPPY_ERROR_OVERFLOW,
  SNAPPY_ERROR_PREAMBLE,
  SNAPPY_ERROR_SHORT,
  SNAPPY_ERROR_TRUNCATED,
} from './snappyErrors';

/**
 * A raw snappy block (the format of AVML's chunks and kdump-snappy pages) decompressed in one call
 * into memory the host reads: `snappy-wasm` allocates, zeroes and copies out every 64 KiB chunk
 * (about 100 us a chunk of the AVML fixture, most of a scan), where this writes the chunk once.
 *
 * The block is a varint of its uncompressed length, then elements: literals (their bytes follow)
 * and copies of earlier output (offset 1..produced, repeating when it overlaps). Nothing is
 * written outside [output, output + capacity) and nothing read outside the input, whatever the
 * input says; the block must produce exactly the length it declares, which must be `capacity`.
 */

/**
 * Decompresses the `inputLength` bytes at `input` into `output`, which has room for `capacity`
 * bytes. Returns the bytes produced (`capacity`), or a SNAPPY_ERROR_* code.
 */
export function decompressSnappy(input: usize, inputLength: usize, output: usize, capacity: usize): i32 {
  const inputEnd = input + inputLength;
  let at = input;
  let declared: u64 = 0;
  for (let shift: u64 = 0; ; shift += 7) {
    if (at >= inputEnd || shift > 28) return SNAPPY_ERROR_PREAMBLE;
    const byte = <u64>load<u8>(at++);
    declared |= (byte & 0x7f) << shift;
    if (byte < 0x80) break;
  }
  if (declared != <u64>capacity) return SNAPPY_ERROR_LENGTH;
  const outputEnd = output + capacity;
  let out = output;
  while (at < inputEnd) {
    const tag = <u32>load<u8>(at++);
    const kind = tag & 3;
    if (kind == 0) {
      let length = <usize>(tag >> 2) + 1;
      if (length > 60) {
        // 61..64: the length minus one follows in 1..4 little-endian bytes.
        const bytes = length - 60;
        if (at + bytes > inputEnd) return SNAPPY_ERROR_TRUNCATED;
        let value: usize = 0;
        for (let i: usize = 0; i < bytes; i++) value |= (<usize>load<u8>(at + i)) << (i << 3);
        at += bytes;
        length = value + 1;
      }
      if (length > inputEnd - at) return SNAPPY_ERROR_TRUNCATED;
      if (length > outputEnd - out) return SNAPPY_ERROR_OVERFLOW;
      // Most literals are short: sixteen bytes in one step where both sides have the room to spare.
      if (length <= 16 && at + 16 <= inputEnd && out + 16 <= outputEnd) v128.store(out, v128.load(at));
      else memory.copy(out, at, length);
      at += length;
      out += length;
      continue;
    }
    let length: usize;
    let offset: usize;
    if (kind == 1) {
      if (at >= inputEnd) return SNAPPY_ERROR_TRUNCATED;
      length = 4 + ((tag >> 2) & 7);
      offset = ((<usize>tag >> 5) << 8) | <usize>load<u8>(at++);
    } else if (kind == 2) {
      if (at + 2 > inputEnd) return SNAPPY_ERROR_TRUNCATED;
      length = 1 + (tag >> 2);
      offset = <usize>load<u16>(at);
      at += 2;
    } else {
      if (at + 4 > inputEnd) return SNAPPY_ERROR_TRUNCATED;
      length = 1 + (tag >> 2);
      offset = <usize>load<u32>(at);
      at += 4;
    }
    if (offset == 0 || offset > out - output) return SNAPPY_ERROR_OFFSET;
    if (length > outputEnd - out) return SNAPPY_ERROR_OVERFLOW;
    copyMatch(out, offset, length, outputEnd);
    out += length;
  }
  return out == outputEnd ? <i32>capacity : SNAPPY_ERROR_SHORT;
}

/** The `length` bytes from `offset` back, copied forward to `out` (overlapping: repeating them). */
@inline
function copyMatch(out: usize, offset: usize, length: usize, outputEnd: usize): void {
  const from = out - offset;
  if (offset >= 16 && length + 16 <= outputEnd - out) {
    // Sixteen bytes a step (a copy is at most 64): each step reads bytes the steps before it finished writing.
    for (let done: usize = 0; done < length; done += 16) v128.store(out + done, v128.load(from + done));
  } else if (offset == 1 && length + 16 <= outputEnd - out) {
    // A run of one byte (how zeros come): sixteen of it a step.
    const run = i8x16.splat(load<u8>(from));
    for (let done: usize = 0; done < length; done += 16) v128.store(out + done, run);
  } else if (offset >= length) {
    memory.copy(out, from, length);
  } else if (offset >= 8 && length + 8 <= outputEnd - out) {
    // Eight bytes a step: each step reads bytes the steps before it finished writing.
    for (let done: usize = 0; done < length; done += 8) store<u64>(out + done, load<u64>(from + done));
  } else {
    for (let done: usize = 0; done < length; done++) store<u8>(out + done, load<u8>(from + done));
  }
}
