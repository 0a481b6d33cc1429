import type { NeedleHit } from './multiNeedle.js';

/**
 * The plain-TypeScript definition the WASM kernel is tested against: every needle at every
 * offset, overlapping occurrences included, sorted by offset then needle.
 */
export function searchReference(haystack: Uint8Array, needles: readonly Uint8Array[], base = 0): NeedleHit[] {
  needles.forEach((needle, index) => {
    if (needle.length === 0) throw new RangeError(`needle ${index} is empty`);
  });
  const hits: NeedleHit[] = [];
  for (let offset = 0; offset < haystack.length; offset++) {
    needles.forEach((needle, index) => {
      if (offset + needle.length > haystack.length) return;
      for (let i = 0; i < needle.length; i++) {
        if (haystack[offset + i] !== needle[i]) return;
      }
      hits.push({ needle: index, offset: base + offset });
    });
  }
  return hits;
}
