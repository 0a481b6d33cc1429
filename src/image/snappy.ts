/**
 * Snappy raw-block decompression (format_description.txt), bounded by the length the caller
 * expects. snappyjs decodes correctly but copies byte by byte: measured at ~145 MB/s on AVML's
 * 64 KiB chunks, it was the whole cost of reading an AVML dump. Here literals and back-references
 * are block moves (`set`, `copyWithin`; an overlapping reference doubles its span each step), which
 * is what a memory scan needs. snappyjs stays the encoder of the test writers.
 */
export class SnappyError extends Error {}

export function snappyDecompress(input: Uint8Array, expectedLength: number): Uint8Array {
  let ip = 0;
  let length = 0;
  for (let shift = 0; ; shift += 7) {
    if (ip >= input.length || shift > 28) throw new SnappyError('no valid length preamble');
    const byte = input[ip++]!;
    length += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) break;
  }
  if (length !== expectedLength) throw new SnappyError(`preamble says ${length} bytes, expected ${expectedLength}`);
  const out = new Uint8Array(length);
  let op = 0;
  while (ip < input.length) {
    const tag = input[ip++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let literal = tag >>> 2;
      if (literal >= 60) {
        const extra = literal - 59;
        if (ip + extra > input.length) throw new SnappyError('literal length runs past the input');
        literal = 0;
        for (let i = 0; i < extra; i++) literal += input[ip + i]! * 2 ** (8 * i);
        ip += extra;
      }
      literal += 1;
      if (ip + literal > input.length) throw new SnappyError('literal runs past the input');
      if (op + literal > length) throw new SnappyError(`output past ${length} bytes`);
      if (literal < 16) {
        for (let i = 0; i < literal; i++) out[op + i] = input[ip + i]!;
      } else {
        out.set(input.subarray(ip, ip + literal), op);
      }
      ip += literal;
      op += literal;
      continue;
    }
    let copy: number;
    let offset: number;
    if (kind === 1) {
      if (ip >= input.length) throw new SnappyError('copy runs past the input');
      copy = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | input[ip++]!;
    } else if (kind === 2) {
      if (ip + 2 > input.length) throw new SnappyError('copy runs past the input');
      copy = (tag >>> 2) + 1;
      offset = input[ip]! | (input[ip + 1]! << 8);
      ip += 2;
    } else {
      if (ip + 4 > input.length) throw new SnappyError('copy runs past the input');
      copy = (tag >>> 2) + 1;
      offset = (input[ip]! | (input[ip + 1]! << 8) | (input[ip + 2]! << 16)) + input[ip + 3]! * 2 ** 24;
      ip += 4;
    }
    if (offset === 0 || offset > op) throw new SnappyError(`back-reference ${offset} bytes before byte ${op}`);
    if (op + copy > length) throw new SnappyError(`output past ${length} bytes`);
    const from = op - offset;
    if (copy <= 16) {
      for (let i = 0; i < copy; i++) out[op + i] = out[from + i]!;
      op += copy;
    } else {
      // The pattern [from, op) repeats: each move doubles the bytes available to the next one.
      let remaining = copy;
      while (remaining > 0) {
        const step = Math.min(op - from, remaining);
        out.copyWithin(op, from, from + step);
        op += step;
        remaining -= step;
      }
    }
  }
  if (op !== length) throw new SnappyError(`stream ends after ${op} of ${length} bytes`);
  return out;
}
