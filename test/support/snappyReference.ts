/**
 * A plain TypeScript decoder of raw snappy blocks, one byte at a time: the reference the WASM
 * kernel (assembly/snappy.ts) is tested against. Returns the bytes, or undefined for a block it
 * refuses (a preamble other than `length`, an element cut short, a copy before the output's start,
 * more or fewer bytes than declared).
 */
export function snappyReference(block: Uint8Array, length: number): Uint8Array | undefined {
  let at = 0;
  let declared = 0;
  for (let shift = 0; ; shift += 7) {
    if (at >= block.length || shift > 28) return undefined;
    const byte = block[at++]!;
    declared += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) break;
  }
  if (declared !== length) return undefined;
  const out = new Uint8Array(length);
  let produced = 0;
  const take = (count: number): number | undefined => {
    if (at + count > block.length) return undefined;
    let value = 0;
    for (let i = 0; i < count; i++) value += block[at + i]! * 2 ** (8 * i);
    at += count;
    return value;
  };
  while (at < block.length) {
    const tag = block[at++]!;
    let copyLength: number;
    let offset: number | undefined;
    if ((tag & 3) === 0) {
      let literal = (tag >> 2) + 1;
      if (literal > 60) {
        const value = take(literal - 60);
        if (value === undefined) return undefined;
        literal = value + 1;
      }
      if (at + literal > block.length || produced + literal > length) return undefined;
      for (let i = 0; i < literal; i++) out[produced++] = block[at++]!;
      continue;
    } else if ((tag & 3) === 1) {
      copyLength = 4 + ((tag >> 2) & 7);
      const low = take(1);
      offset = low === undefined ? undefined : ((tag >> 5) << 8) | low;
    } else {
      copyLength = 1 + (tag >> 2);
      offset = take((tag & 3) === 2 ? 2 : 4);
    }
    if (offset === undefined || offset === 0 || offset > produced || produced + copyLength > length) return undefined;
    for (let i = 0; i < copyLength; i++, produced++) out[produced] = out[produced - offset]!;
  }
  return produced === length ? out : undefined;
}
