import fc from 'fast-check';

/** Deterministic bytes (xorshift32), so a failing property reproduces from its seed. */
export function pseudoRandomBytes(seed: number, length: number, pick: (random: number) => number): Uint8Array {
  let state = seed | 1;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = pick(state >>> 0);
  }
  return bytes;
}

/** Like a memory dump in miniature: mostly zeros and 0xff, a few letters, so short needles recur. */
export function dumpLikeBytes(seed: number, length: number): Uint8Array {
  return pseudoRandomBytes(seed, length, (random) => {
    const roll = random % 100;
    if (roll < 55) return 0;
    if (roll < 65) return 0xff;
    if (roll < 90) return 0x61 + ((random >>> 8) % 3);
    return (random >>> 16) & 0xff;
  });
}

const alphabetByte = fc.constantFrom(0x00, 0x00, 0xff, 0x61, 0x62, 0x63, 0x80, 0x88);

/** How a test needle is made: literal short bytes, literal with a zero prefix, or a slice of the haystack (long ones included). */
export type NeedleSpec =
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array }
  | { readonly kind: 'zeroPrefixed'; readonly zeros: number; readonly bytes: Uint8Array }
  | { readonly kind: 'slice'; readonly at: number; readonly length: number };

export const needleSpec: fc.Arbitrary<NeedleSpec> = fc.oneof(
  fc.record({
    kind: fc.constant('bytes' as const),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 3 }).map((b) => b.map((x) => [0x00, 0xff, 0x61, 0x62][x % 4]!)),
  }),
  fc.record({
    kind: fc.constant('bytes' as const),
    bytes: fc.array(alphabetByte, { minLength: 1, maxLength: 40 }).map((b) => Uint8Array.from(b)),
  }),
  fc.record({
    kind: fc.constant('zeroPrefixed' as const),
    zeros: fc.integer({ min: 1, max: 12 }),
    bytes: fc.array(alphabetByte, { minLength: 1, maxLength: 8 }).map((b) => Uint8Array.from(b)),
  }),
  fc.record({ kind: fc.constant('slice' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 300 }) }),
);

export function makeNeedle(spec: NeedleSpec, haystack: Uint8Array): Uint8Array {
  switch (spec.kind) {
    case 'bytes':
      return spec.bytes;
    case 'zeroPrefixed':
      return Uint8Array.from([...new Uint8Array(spec.zeros), ...spec.bytes]);
    case 'slice': {
      if (haystack.length === 0) return Uint8Array.of(0x61);
      const length = Math.min(spec.length, haystack.length);
      const at = spec.at % (haystack.length - length + 1);
      return haystack.slice(at, at + length);
    }
  }
}

/** Writes `needle` at `at`, clipped to the haystack, so copies straddling its ends are exercised too. */
export function plant(haystack: Uint8Array, needle: Uint8Array, at: number): void {
  for (let i = 0; i < needle.length; i++) {
    const position = at + i;
    if (position >= 0 && position < haystack.length) haystack[position] = needle[i]!;
  }
}

/** Where chunks of a stream start and end, for a window and an overlap: the places hits are most easily lost or doubled. */
export function chunkEdges(streamLength: number, windowBytes: number, overlap: number): number[] {
  const edges: number[] = [];
  for (let start = 0; start < streamLength; start += windowBytes - overlap) {
    edges.push(start, start + windowBytes);
    if (start + windowBytes >= streamLength) break;
  }
  return edges;
}
