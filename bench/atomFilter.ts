/**
 * The atom prefilter over a whole dump: the WASM kernel against a plain JS hashed-anchor loop (a
 * 64 Ki prefix table, then a Map from the u32 at each candidate to its atoms) over the same chunks
 * of the same file, in the same run, with 10 to 4000 random 4-byte atoms drawn from the dump's own
 * content (so they hit) and from random bytes. Usage: node dist/bench/atomFilter.js [dump]
 * (default: the linux61-clean ELF fixture; each case's first, cold, run is not counted).
 */
import { openImage } from '../src/image/open.js';
import type { MemoryImage } from '../src/image/types.js';
import { AtomFilter, type AtomHit } from '../src/kernels/atomFilter.js';
import { DEFAULT_WINDOW_BYTES } from '../src/kernels/memoryMap.js';
import { fixturePath } from '../test/support/fixtures.js';
import { forEachChunk } from './support/chunks.js';
import { coldAndBest, ROUNDS } from './support/timing.js';

const ATOM_LENGTH = 4;
const ATOM_COUNTS = [10, 100, 1000, 4000];
/** The bytes a rule compiler's atom choice avoids (byteFrequency.ts): zero, int3 padding, 0xff. */
const COMMON_BYTES = new Set([0x00, 0xcc, 0xff]);

/** Deterministic xorshift32, so every run draws the same atoms. */
function randomSource(seed: number): () => number {
  let state = seed | 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
}

/** 4-byte atoms copied from random places of the dump holding none of the common bytes, as a rule compiler would pick them. */
function atomsFromDump(image: MemoryImage, count: number, random: () => number): Uint8Array[] {
  const atoms: Uint8Array[] = [];
  while (atoms.length < count) {
    const range = image.ranges[random() % image.ranges.length]!;
    if (range.end - range.start < ATOM_LENGTH) continue;
    const atom = new Uint8Array(ATOM_LENGTH);
    image.read(range.start + (random() % (range.end - range.start - ATOM_LENGTH + 1)), atom);
    if (!atom.some((byte) => COMMON_BYTES.has(byte))) atoms.push(atom);
  }
  return atoms;
}

function randomAtoms(count: number, random: () => number): Uint8Array[] {
  return Array.from({ length: count }, () => Uint8Array.from({ length: ATOM_LENGTH }, () => random() & 0xff));
}

/** The filter's chunking (window, overlap, hits owned by the chunk they start in) with the JS hashed-anchor loop per chunk. */
function filterWithMap(image: MemoryImage, atoms: readonly Uint8Array[], chunk: Uint8Array): AtomHit[] {
  const prefixes = new Uint8Array(0x10000);
  const atomsByWord = new Map<number, number[]>();
  atoms.forEach((atom, index) => {
    prefixes[atom[0]! | (atom[1]! << 8)] = 1;
    const word = (atom[0]! | (atom[1]! << 8) | (atom[2]! << 16) | (atom[3]! << 24)) >>> 0;
    const list = atomsByWord.get(word);
    if (list) list.push(index);
    else atomsByWord.set(word, [index]);
  });
  const hits: AtomHit[] = [];
  forEachChunk(image, chunk, ATOM_LENGTH - 1, (data, start, ownedLength) => {
    // The last chunk owns its last bytes too, but no 4-byte atom starts there.
    const end = Math.min(ownedLength, data.length - (ATOM_LENGTH - 1));
    for (let at = 0; at < end; at++) {
      if (prefixes[data[at]! | (data[at + 1]! << 8)] === 0) continue;
      const found = atomsByWord.get(
        (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0,
      );
      if (found) for (const atom of found) hits.push({ atom, offset: start + at });
    }
  });
  return hits;
}

function sameHits(a: readonly AtomHit[], b: readonly AtomHit[]): boolean {
  return a.length === b.length && a.every((hit, i) => hit.offset === b[i]!.offset && hit.atom === b[i]!.atom);
}

const path = process.argv[2] ?? fixturePath('linux61-clean', 'elf');
const image = openImage(path);
const gigabytes = image.totalBytes / 1e9;
const chunk = new Uint8Array(DEFAULT_WINDOW_BYTES);
const rate = (seconds: number) => `${(gigabytes / seconds).toFixed(2).padStart(6)} GB/s`;
const random = randomSource(0x5eed);

console.log(
  `${path}: ${image.format}, ${(image.totalBytes / 2 ** 20).toFixed(0)} MiB in ${image.ranges.length} ranges, window ${DEFAULT_WINDOW_BYTES / 2 ** 20} MiB, best of ${ROUNDS}`,
);
let mismatches = 0;
for (const [source, draw] of [
  ['from the dump', (count: number) => atomsFromDump(image, count, random)],
  ['random bytes', (count: number) => randomAtoms(count, random)],
] as const) {
  for (const count of ATOM_COUNTS) {
    const atoms = draw(count);
    const filter = AtomFilter.create(atoms);
    const kernel = coldAndBest(() => filter.filterImage(image));
    const map = coldAndBest(() => filterWithMap(image, atoms, chunk));
    const agree = sameHits(kernel.result, map.result);
    if (!agree) mismatches += 1;
    console.log(
      `${`${count} atoms ${source}`.padEnd(26)} wasm ${rate(kernel.best)}   JS map ${rate(map.best)}   ` +
        `×${(map.best / kernel.best).toFixed(2)}   ${kernel.result.length} hits ${agree ? 'agree' : `DIFFER (JS found ${map.result.length})`}`,
    );
  }
}
image.close();
if (mismatches > 0) {
  console.error(`${mismatches} case(s) where the kernel and the JS loop found different hits`);
  process.exit(1);
}
