import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import { AtomFilter, atomFilterReference, buildAtomTables, type AtomHit } from '../../src/kernels/atomFilter.js';
import { KernelInstance } from '../../src/kernels/kernelInstance.js';
import {
  ATOM_ENTRIES_OFFSET,
  ATOM_ENTRY_BYTES,
  ATOM_ENTRY_ID_FIELD,
  ATOM_ENTRY_LENGTH_FIELD,
  ATOM_ENTRY_MASK_FIELD,
  ATOM_ENTRY_VALUE_FIELD,
  ATOM_PAIR_TABLE_OFFSET,
  ATOM_PREFIX_STARTS_OFFSET,
  ATOM_SINGLE_IDS_OFFSET,
  ATOM_SINGLE_STARTS_OFFSET,
  ATOM_TABLES_BYTES,
  HITS_ADDRESS,
  HIT_BYTES,
  HIT_CAPACITY,
  HIT_SLOT_FIELD,
  HIT_START_FIELD,
  MAX_ATOMS,
  SCAN_RESUME_ADDRESS,
  WASM_PAGE_BYTES,
  WINDOW_ADDRESS,
} from '../../src/kernels/memoryMap.js';
import { chunkEdges, plant, pseudoRandomBytes } from './haystacks.js';

const WINDOW = 64 * 1024;

/** Like a dump: mostly zero bytes, the rest uniformly random. */
function zerosAndRandom(seed: number, length: number, zeroPercent: number): Uint8Array {
  return pseudoRandomBytes(seed, length, (random) => (random % 100 < zeroPercent ? 0 : (random >>> 8) & 0xff));
}

/**
 * `count` atoms of 1–4 bytes from `seed`: random bytes (some zero-containing), copies of the
 * haystack (so they hit) and duplicates of earlier atoms. As with real atoms, one-byte atoms are
 * rare and none is all zeros: each of those would hit most of the haystack.
 */
function atomSet(seed: number, count: number, haystack: Uint8Array): Uint8Array[] {
  const random = pseudoRandomBytes(seed, count * 8, (value) => value & 0xff);
  const atoms: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const [kind, lengthRoll, at0, at1, at2, b0, b1, b2] = random.subarray(i * 8, i * 8 + 8);
    const length = lengthRoll! < 8 ? 1 : 2 + (lengthRoll! % 3);
    if (kind! < 40 && atoms.length > 0) {
      atoms.push(atoms[(at0! | (at1! << 8)) % atoms.length]!);
      continue;
    }
    const at = (at0! | (at1! << 8) | (at2! << 16)) % Math.max(1, haystack.length - length + 1);
    const copy = haystack.slice(at, at + length);
    if (kind! < 140 && copy.length === length && copy.some((byte) => byte !== 0)) {
      atoms.push(copy);
      continue;
    }
    const bytes = Uint8Array.of(b0! | 1, b1!, b2!, at2!).slice(0, length);
    if (kind! > 230 && length > 1) bytes[kind! % length] = 0;
    atoms.push(bytes);
  }
  return atoms;
}

function expectSameHits(actual: readonly AtomHit[], expected: readonly AtomHit[]): void {
  expect(actual.length).toBe(expected.length);
  const firstDifference = actual.findIndex(
    (hit, i) => hit.offset !== expected[i]!.offset || hit.atom !== expected[i]!.atom,
  );
  expect(firstDifference, `first difference at hit ${firstDifference}`).toBe(-1);
}

describe('atom tables layout', () => {
  it('lays out disjoint tables in order inside whole pages after the window, each entry field inside its record', () => {
    const tables = [
      { name: 'pair table', start: ATOM_PAIR_TABLE_OFFSET, end: ATOM_PAIR_TABLE_OFFSET + 0x10000 },
      { name: 'single-byte starts', start: ATOM_SINGLE_STARTS_OFFSET, end: ATOM_SINGLE_STARTS_OFFSET + 257 * 4 },
      { name: 'single-byte ids', start: ATOM_SINGLE_IDS_OFFSET, end: ATOM_SINGLE_IDS_OFFSET + MAX_ATOMS * 4 },
      { name: 'prefix entries', start: ATOM_ENTRIES_OFFSET, end: ATOM_ENTRIES_OFFSET + MAX_ATOMS * ATOM_ENTRY_BYTES },
      { name: 'prefix starts', start: ATOM_PREFIX_STARTS_OFFSET, end: ATOM_PREFIX_STARTS_OFFSET + 0x10001 * 4 },
    ];
    for (let i = 1; i < tables.length; i++) {
      expect(tables[i]!.start, `${tables[i]!.name} after ${tables[i - 1]!.name}`).toBeGreaterThanOrEqual(
        tables[i - 1]!.end,
      );
    }
    expect(tables[tables.length - 1]!.end).toBeLessThanOrEqual(ATOM_TABLES_BYTES);
    expect(ATOM_TABLES_BYTES % WASM_PAGE_BYTES).toBe(0);
    for (const field of [ATOM_ENTRY_VALUE_FIELD, ATOM_ENTRY_MASK_FIELD, ATOM_ENTRY_LENGTH_FIELD, ATOM_ENTRY_ID_FIELD]) {
      expect(field + 4).toBeLessThanOrEqual(ATOM_ENTRY_BYTES);
    }
    const kernel = KernelInstance.shared(WINDOW);
    expect(kernel.atomTablesAddress).toBe(WINDOW_ADDRESS + WINDOW);
    expect(kernel.memory.length).toBe(kernel.atomTablesAddress + ATOM_TABLES_BYTES);
  });
});

describe('AtomFilter.filterBuffer', () => {
  it('finds atoms of every length, overlapping and duplicated, in offset then atom order', () => {
    const bytes = Uint8Array.from([0x41, 0x42, 0x43, 0x44, 0x41, 0x42, 0x41, 0x42, 0x43]);
    const atoms = [
      Uint8Array.of(0x42, 0x43),
      Uint8Array.of(0x41),
      Uint8Array.of(0x41, 0x42, 0x43, 0x44),
      Uint8Array.of(0x42, 0x43),
      Uint8Array.of(0x41, 0x42, 0x43),
    ];
    expect(AtomFilter.create(atoms, { windowBytes: WINDOW }).filterBuffer(bytes, 100)).toEqual([
      { atom: 1, offset: 100 },
      { atom: 2, offset: 100 },
      { atom: 4, offset: 100 },
      { atom: 0, offset: 101 },
      { atom: 3, offset: 101 },
      { atom: 1, offset: 104 },
      { atom: 1, offset: 106 },
      { atom: 4, offset: 106 },
      { atom: 0, offset: 107 },
      { atom: 3, offset: 107 },
    ]);
  });

  it('reports an atom ending on the last byte and none running past it', () => {
    const bytes = new Uint8Array(1000);
    bytes.set([0x11, 0x22, 0x33], 997);
    const atoms = [
      Uint8Array.of(0x33),
      Uint8Array.of(0x22, 0x33),
      Uint8Array.of(0x11, 0x22, 0x33),
      Uint8Array.of(0x11, 0x22, 0x33, 0x00),
      Uint8Array.of(0x33, 0x00),
    ];
    expect(AtomFilter.create(atoms, { windowBytes: WINDOW }).filterBuffer(bytes)).toEqual([
      { atom: 2, offset: 997 },
      { atom: 1, offset: 998 },
      { atom: 0, offset: 999 },
    ]);
  });

  it('finds zero-containing atoms among zero pages, with and without the zero-page skip', () => {
    const bytes = new Uint8Array(50_000);
    bytes.set([0x80, 0x88, 0xff, 0xff], 4096);
    bytes[30_000] = 7;
    for (const atoms of [
      [Uint8Array.of(0, 0x80, 0x88), Uint8Array.of(0xff, 0), Uint8Array.of(0, 7, 0)],
      [Uint8Array.of(0, 0x80, 0x88), Uint8Array.of(0xff, 0), Uint8Array.of(0, 7, 0), Uint8Array.of(0, 0, 0, 7)],
    ]) {
      const hits = AtomFilter.create(atoms, { windowBytes: WINDOW }).filterBuffer(bytes);
      expect(hits).toEqual(atomFilterReference(bytes, atoms));
      expect(hits.length).toBe(atoms.length);
    }
  });

  it('returns nothing for empty input or no atoms, and rejects bad atom sets', () => {
    expect(AtomFilter.create([Uint8Array.of(1)], { windowBytes: WINDOW }).filterBuffer(new Uint8Array(0))).toEqual([]);
    expect(AtomFilter.create([], { windowBytes: WINDOW }).filterBuffer(Uint8Array.of(1, 2))).toEqual([]);
    expect(() => AtomFilter.create([new Uint8Array(0)])).toThrow(RangeError);
    expect(() => AtomFilter.create([new Uint8Array(5)])).toThrow(RangeError);
    expect(() => AtomFilter.create(Array.from({ length: MAX_ATOMS + 1 }, () => Uint8Array.of(1)))).toThrow(RangeError);
  });

  it('keeps each filter’s tables apart on a shared instance', () => {
    const bytes = Uint8Array.from([1, 2, 3, 4, 5]);
    const first = AtomFilter.create([Uint8Array.of(2, 3)], { windowBytes: WINDOW });
    const second = AtomFilter.create([Uint8Array.of(4), Uint8Array.of(1, 2, 3)], { windowBytes: WINDOW });
    expect(first.filterBuffer(bytes)).toEqual([{ atom: 0, offset: 1 }]);
    expect(second.filterBuffer(bytes)).toEqual([
      { atom: 1, offset: 0 },
      { atom: 0, offset: 3 },
    ]);
    expect(first.filterBuffer(bytes)).toEqual([{ atom: 0, offset: 1 }]);
  });

  it('loses no hit when one window holds more hits than the hit area', () => {
    // 128 KiB of zeros and five zero atoms: five hits per byte, ten times the hit slots.
    const bytes = new Uint8Array(300 * 1024);
    const atoms = [
      Uint8Array.of(0),
      Uint8Array.of(0, 0),
      Uint8Array.of(0, 0, 0),
      Uint8Array.of(0, 0, 0, 0),
      Uint8Array.of(0),
    ];
    expectSameHits(
      AtomFilter.create(atoms, { windowBytes: 128 * 1024 }).filterBuffer(bytes),
      atomFilterReference(bytes, atoms),
    );
  });

  it('agrees with the reference on dump-like bytes, 1 to 4096 random atoms and hits at window edges', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 50, max: 95 }),
        fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: MAX_ATOMS })),
        fc.constantFrom(WINDOW, 2 * WINDOW),
        fc.array(fc.integer({ min: -6, max: 4 }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (seed, length, zeroPercent, atomCount, windowBytes, edgeShifts, base) => {
          const bytes = zerosAndRandom(seed, length, zeroPercent);
          const atoms = atomSet(seed ^ 0x5a5a, atomCount, bytes);
          const overlap = Math.max(...atoms.map((atom) => atom.length)) - 1;
          const edges = chunkEdges(bytes.length, windowBytes, overlap);
          atoms.slice(0, 64).forEach((atom, index) => {
            plant(bytes, atom, bytes.length - atom.length);
            for (const edge of edges) plant(bytes, atom, edge + edgeShifts[index % edgeShifts.length]!);
          });
          expectSameHits(
            AtomFilter.create(atoms, { windowBytes }).filterBuffer(bytes, base),
            atomFilterReference(bytes, atoms, base),
          );
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('AtomFilter.filterImage', () => {
  it('streams touching ranges as one, finds nothing across a gap, and reports progress', () => {
    const KiB = 1024;
    const file = zerosAndRandom(11, 400 * KiB, 90);
    const ranges = [
      { start: 0, end: 100 * KiB, fileOffset: 0 },
      { start: 100 * KiB, end: 300 * KiB, fileOffset: 100 * KiB },
      { start: 512 * KiB, end: 612 * KiB, fileOffset: 300 * KiB },
    ];
    const atoms = [Uint8Array.of(0xde, 0xad, 0xbe, 0xef), Uint8Array.of(0xca, 0xfe), Uint8Array.of(0x77, 0x66, 0x55)];
    plant(file, atoms[0]!, 100 * KiB - 2); // across the touching ranges: found
    plant(file, atoms[1]!, 300 * KiB - 1); // across the gap in physical memory: not found
    plant(file, atoms[2]!, WINDOW - 1); // across the first chunk edge
    const image = new RangeMappedImage(new BufferSource('memory', file), 'raw', ranges);
    const reports: number[] = [];
    const hits = AtomFilter.create(atoms, { windowBytes: WINDOW }).filterImage(image, {
      onProgress: (done) => reports.push(done),
    });
    const expected = [
      ...atomFilterReference(file.subarray(0, 300 * KiB), atoms, 0),
      ...atomFilterReference(file.subarray(300 * KiB), atoms, 512 * KiB),
    ];
    expect(hits).toEqual(expected);
    expect(hits).toContainEqual({ atom: 0, offset: 100 * KiB - 2 });
    expect(hits).toContainEqual({ atom: 2, offset: WINDOW - 1 });
    expect(hits).not.toContainEqual({ atom: 1, offset: 300 * KiB - 1 });
    expect(reports[reports.length - 1]).toBe(image.totalBytes);
  });

  it('stops at the limit with the first hits by offset', () => {
    const file = zerosAndRandom(3, 300_000, 60);
    const image = new RangeMappedImage(new BufferSource('memory', file), 'raw', [
      { start: 0, end: file.length, fileOffset: 0 },
    ]);
    const atoms = [Uint8Array.of(0), Uint8Array.of(0, 0)];
    for (const limit of [0, 7, 70_000]) {
      expect(AtomFilter.create(atoms, { windowBytes: WINDOW }).filterImage(image, { limit })).toEqual(
        atomFilterReference(file, atoms).slice(0, limit),
      );
    }
  });
});

/** The raw kernel contract below the filter: where it stops when the hit area fills, and resuming from there. */
describe('filterAtoms', () => {
  it('stops between addresses before overflowing the hit area, and resumes without loss or repeats', () => {
    const kernel = KernelInstance.shared(192 * 1024);
    kernel.loadAtomTables(buildAtomTables([Uint8Array.of(0), Uint8Array.of(0, 0), Uint8Array.of(0)]));
    kernel.window.fill(0);
    const dataEnd = WINDOW_ADDRESS + kernel.window.length;
    const hitAt = (i: number) => ({
      start: kernel.words[(HITS_ADDRESS + i * HIT_BYTES + HIT_START_FIELD) / 4]!,
      atom: kernel.words[(HITS_ADDRESS + i * HIT_BYTES + HIT_SLOT_FIELD) / 4]!,
    });

    const first = kernel.kernels.filterAtoms(kernel.atomTablesAddress, dataEnd, WINDOW_ADDRESS, dataEnd);
    const resume = kernel.words[SCAN_RESUME_ADDRESS / 4]!;
    expect(first).toBe(3 * Math.floor(HIT_CAPACITY / 3));
    expect(resume).toBe(WINDOW_ADDRESS + first / 3);
    expect(hitAt(first - 1)).toEqual({ start: resume - 1, atom: 2 });

    let total = first;
    for (let from = resume; from < dataEnd; from = kernel.words[SCAN_RESUME_ADDRESS / 4]!) {
      const count = kernel.kernels.filterAtoms(kernel.atomTablesAddress, dataEnd, from, dataEnd);
      expect(hitAt(0)).toEqual({ start: from, atom: 0 });
      total += count;
    }
    // Every address holds all three atoms but the last, where the two-byte one would run past the data.
    expect(total).toBe(3 * kernel.window.length - 1);
  });
});
