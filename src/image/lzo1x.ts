/**
 * LZO1X decompression (what makedumpfile `-l` and QEMU `kdump-lzo` write per page), a port of
 * lzo1x_decompress_safe: every input read and output write is bounds-checked, so hostile input
 * throws instead of reading or writing outside the buffers. No npm package offers a pure-JS LZO
 * decoder for Node (`lzo` is a native addon npm no longer builds by default, `lzo-wasm` is a
 * browser bundle), and a page is small enough for this loop.
 */
export class LzoError extends Error {}

export function lzo1xDecompress(input: Uint8Array, outputLength: number): Uint8Array {
  const out = new Uint8Array(outputLength);
  let ip = 0;
  let op = 0;
  const inEnd = input.length;

  const need = (count: number): void => {
    if (ip + count > inEnd) throw new LzoError(`input overrun at byte ${ip}`);
  };
  const literals = (count: number): void => {
    need(count);
    if (op + count > outputLength) throw new LzoError(`output overrun: more than ${outputLength} bytes`);
    out.set(input.subarray(ip, ip + count), op);
    ip += count;
    op += count;
  };
  const copyMatch = (from: number, count: number): void => {
    if (from < 0) throw new LzoError(`match distance before the output start at byte ${ip}`);
    if (op + count > outputLength) throw new LzoError(`output overrun: more than ${outputLength} bytes`);
    for (let i = 0; i < count; i++) out[op + i] = out[from + i]!;
    op += count;
  };
  /** A run length whose base is `base`, extended by zero bytes of 255 each. */
  const longLength = (base: number): number => {
    let length = 0;
    need(1);
    while (input[ip] === 0) {
      length += 255;
      ip++;
      need(1);
      if (length > outputLength) throw new LzoError('run length past the output size');
    }
    return length + base + input[ip++]!;
  };

  type State = 'loop' | 'firstLiteralRun' | 'match' | 'matchNext';
  let state: State = 'loop';
  let t = 0;
  need(1);
  if (input[0]! > 17) {
    t = input[ip++]! - 17;
    if (t < 4) {
      state = 'matchNext';
    } else {
      literals(t);
      state = 'firstLiteralRun';
    }
  }
  for (;;) {
    if (state === 'loop') {
      need(1);
      t = input[ip++]!;
      if (t >= 16) {
        state = 'match';
        continue;
      }
      if (t === 0) t = longLength(15);
      literals(t + 3);
      state = 'firstLiteralRun';
      continue;
    }
    if (state === 'firstLiteralRun') {
      need(1);
      t = input[ip++]!;
      if (t >= 16) {
        state = 'match';
        continue;
      }
      need(1);
      const from = op - (1 + 0x0800) - (t >> 2) - (input[ip++]! << 2);
      copyMatch(from, 3);
    } else if (state === 'matchNext') {
      literals(t);
      need(1);
      t = input[ip++]!;
      state = 'match';
      continue;
    } else {
      // state === 'match': t is the instruction byte, ip is past it.
      if (t >= 64) {
        need(1);
        const from = op - 1 - ((t >> 2) & 7) - (input[ip++]! << 3);
        copyMatch(from, (t >> 5) - 1 + 2);
      } else if (t >= 32) {
        t &= 31;
        if (t === 0) t = longLength(31);
        need(2);
        const from = op - 1 - ((input[ip]! >> 2) + (input[ip + 1]! << 6));
        ip += 2;
        copyMatch(from, t + 2);
      } else if (t >= 16) {
        let from = op - ((t & 8) << 11);
        t &= 7;
        if (t === 0) t = longLength(7);
        need(2);
        from -= (input[ip]! >> 2) + (input[ip + 1]! << 6);
        ip += 2;
        if (from === op) {
          // End of stream marker (M4 with distance 0).
          if (t !== 1) throw new LzoError('malformed end-of-stream marker');
          if (ip !== inEnd) throw new LzoError(`${inEnd - ip} bytes after the end-of-stream marker`);
          if (op !== outputLength) throw new LzoError(`stream ends after ${op} of ${outputLength} bytes`);
          return out;
        }
        copyMatch(from - 0x4000, t + 2);
      } else {
        need(1);
        const from = op - 1 - (t >> 2) - (input[ip++]! << 2);
        copyMatch(from, 2);
      }
    }
    // match_done: the low two bits of the instruction's last offset byte say how many literals follow.
    t = input[ip - 2]! & 3;
    state = t === 0 ? 'loop' : 'matchNext';
  }
}
