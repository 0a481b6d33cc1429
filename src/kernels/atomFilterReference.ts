import type { AtomHit } from './atomFilter.js';
import { MAX_ATOM_LENGTH } from './memoryMap.js';

/**
 * The plain-TypeScript definition the WASM atom filter is tested against: every atom at every
 * offset where it lies wholly inside `bytes`, overlapping occurrences and duplicate atoms
 * included, sorted by offset then atom index. Atoms are looked up by their bytes (a number
 * unique per length and content), so thousands of atoms cost no more than a few.
 */
export function atomFilterReference(bytes: Uint8Array, atoms: readonly Uint8Array[], base = 0): AtomHit[] {
  const indicesByContent = new Map<number, number[]>();
  atoms.forEach((atom, index) => {
    if (atom.length === 0 || atom.length > MAX_ATOM_LENGTH)
      throw new RangeError(`atom ${index} is ${atom.length} bytes`);
    const key = contentKey(atom, 0, atom.length);
    indicesByContent.set(key, [...(indicesByContent.get(key) ?? []), index]);
  });
  const hits: AtomHit[] = [];
  for (let offset = 0; offset < bytes.length; offset++) {
    const found: number[] = [];
    for (let length = 1; length <= MAX_ATOM_LENGTH && offset + length <= bytes.length; length++) {
      found.push(...(indicesByContent.get(contentKey(bytes, offset, length)) ?? []));
    }
    found.sort((a, b) => a - b);
    for (const atom of found) hits.push({ atom, offset: base + offset });
  }
  return hits;
}

/** The length times 2^32 plus the bytes as a little-endian number. */
function contentKey(bytes: Uint8Array, offset: number, length: number): number {
  let value = 0;
  for (let i = length - 1; i >= 0; i--) value = value * 256 + bytes[offset + i]!;
  return length * 2 ** 32 + value;
}
