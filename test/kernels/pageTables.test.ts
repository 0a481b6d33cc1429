import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KernelInstance } from '../../src/kernels/kernelInstance.js';
import * as map from '../../src/kernels/memoryMap.js';
import { decodeTable, decodeTableReference } from '../../src/kernels/pageTables.js';

const PRESENT = 1n;
const WRITABLE = 2n;
const USER = 4n;
const LARGE_PAGE = 0x80n;
const NO_EXECUTE = 1n << 63n;
/** Bits a walk must ignore: accessed, dirty, global, the OS-available bits 9–11 and 52–58, protection key 59–62. */
const IGNORED_BITS = [0x8n, 0x10n, 0x20n, 0x40n, 0x100n, 0x200n, 0x800n, 1n << 52n, 1n << 58n, 1n << 62n];
const PAGE_SIZES = [1n << 12n, 1n << 21n, 1n << 30n];
const LEVELS = [1, 2, 3, 4, 5];

function tableOf(entries: readonly bigint[]): Uint8Array {
  const table = new Uint8Array(map.PAGE_TABLE_BYTES);
  const view = new DataView(table.buffer);
  entries.forEach((entry, index) => view.setBigUint64(index * 8, entry, true));
  return table;
}

/**
 * A run of entries: absent ones, or present ones whose frames advance by `step` (one of the page
 * sizes, so each level sees contiguous runs, or an odd step that never is), with permission and
 * page-size bits that may change part-way through.
 */
const segment = fc.record({
  length: fc.integer({ min: 1, max: 96 }),
  present: fc.integer({ min: 0, max: 3 }).map((roll) => roll > 0),
  frame: fc.oneof(
    fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }),
    fc.bigInt({ min: 0n, max: 63n }),
    fc.constant((1n << 40n) - 4n),
  ),
  step: fc.oneof(
    { arbitrary: fc.constantFrom(...PAGE_SIZES), weight: 4 },
    { arbitrary: fc.constantFrom(0n, 1n << 13n, -(1n << 12n)), weight: 1 },
  ),
  bits: fc.constantFrom(0n, WRITABLE, USER, WRITABLE | USER, NO_EXECUTE, WRITABLE | USER | NO_EXECUTE),
  large: fc.boolean(),
  ignored: fc.subarray(IGNORED_BITS),
  changes: fc.array(
    fc.record({
      at: fc.nat({ max: 95 }),
      flip: fc.constantFrom(WRITABLE, USER, NO_EXECUTE, LARGE_PAGE, PRESENT, ...IGNORED_BITS),
    }),
    { maxLength: 3 },
  ),
});

type Segment = typeof segment extends fc.Arbitrary<infer T> ? T : never;

function buildTable(segments: readonly Segment[]): bigint[] {
  const entries: bigint[] = [];
  for (const part of segments) {
    for (let i = 0; i < part.length && entries.length < map.PAGE_TABLE_ENTRIES; i++) {
      if (!part.present) {
        entries.push(0n);
        continue;
      }
      const frame = BigInt.asUintN(40, (part.frame << 12n) / 4096n + (part.step * BigInt(i)) / 4096n) << 12n;
      let entry = frame | PRESENT | part.bits | (part.large ? LARGE_PAGE : 0n);
      for (const bit of part.ignored) entry |= bit;
      for (const change of part.changes) if (change.at <= i) entry ^= change.flip;
      entries.push(entry);
    }
  }
  while (entries.length < map.PAGE_TABLE_ENTRIES) entries.push(0n);
  return entries;
}

describe('page-table records layout', () => {
  it('puts the table and its records after the hits and before the window, each field inside its record', () => {
    expect(map.PAGE_TABLE_ADDRESS).toBeGreaterThanOrEqual(map.HITS_ADDRESS + map.HIT_CAPACITY * map.HIT_BYTES);
    expect(map.TABLE_RECORDS_ADDRESS).toBeGreaterThanOrEqual(map.PAGE_TABLE_ADDRESS + map.PAGE_TABLE_BYTES);
    expect(map.TABLE_RECORDS_ADDRESS + map.TABLE_RECORD_CAPACITY * map.TABLE_RECORD_BYTES).toBeLessThanOrEqual(
      map.WINDOW_ADDRESS,
    );
    expect(map.TABLE_RECORD_PHYSICAL_FIELD + 8).toBeLessThanOrEqual(map.TABLE_RECORD_INDEX_FIELD);
    expect(map.TABLE_RECORD_INDEX_FIELD + 4).toBeLessThanOrEqual(map.TABLE_RECORD_COUNT_FIELD);
    // The host reads count and flags as one u32: count in the low half, flags in the high half.
    expect(map.TABLE_RECORD_COUNT_FIELD % 4).toBe(0);
    expect(map.TABLE_RECORD_FLAGS_FIELD).toBe(map.TABLE_RECORD_COUNT_FIELD + 2);
    expect(map.TABLE_RECORD_FLAGS_FIELD + 2).toBeLessThanOrEqual(map.TABLE_RECORD_BYTES);
  });
});

describe('decodeTable', () => {
  it('makes a fully contiguous page table one record, and splits it where a frame or a permission changes', () => {
    const frames = Array.from(
      { length: 512 },
      (_, i) => ((0x12345n + BigInt(i)) << 12n) | PRESENT | WRITABLE | USER | NO_EXECUTE | 0x60n,
    );
    expect(decodeTable(tableOf(frames), 1)).toEqual([
      { index: 0, count: 512, physical: 0x12345000, writable: true, user: true, noExecute: true, leaf: true },
    ]);
    const split = [...frames];
    split[100] = split[100]! & ~WRITABLE;
    split[300] = 0n;
    split[400] = split[400]! + 0x1000n;
    expect(
      decodeTable(tableOf(split), 1).map(({ index, count, physical, writable }) => ({
        index,
        count,
        physical,
        writable,
      })),
    ).toEqual([
      { index: 0, count: 100, physical: 0x12345000, writable: true },
      { index: 100, count: 1, physical: 0x12345000 + 100 * 0x1000, writable: false },
      { index: 101, count: 199, physical: 0x12345000 + 101 * 0x1000, writable: true },
      { index: 301, count: 99, physical: 0x12345000 + 301 * 0x1000, writable: true },
      { index: 400, count: 1, physical: 0x12345000 + 401 * 0x1000, writable: true },
      { index: 401, count: 111, physical: 0x12345000 + 401 * 0x1000, writable: true },
    ]);
  });

  it('takes large pages as leaves at levels 2 and 3 only, masking their frames to the page size; never merges tables', () => {
    const entries = [
      ((1n << 30n) + 0x1ff000n) | PRESENT | LARGE_PAGE,
      ((1n << 30n) + (2n << 20n)) | PRESENT | LARGE_PAGE,
      0xffff000000001000n | PRESENT,
    ];
    const table = tableOf(entries);
    expect(decodeTable(table, 2).map(({ index, count, physical, leaf }) => ({ index, count, physical, leaf }))).toEqual(
      [
        { index: 0, count: 2, physical: 2 ** 30, leaf: true },
        { index: 2, count: 1, physical: 0xf_0000_0000_1000, leaf: false },
      ],
    );
    expect(decodeTable(table, 3).map(({ physical, count, leaf }) => ({ physical, count, leaf }))).toEqual([
      { physical: 2 ** 30, count: 1, leaf: true },
      { physical: 2 ** 30, count: 1, leaf: true },
      { physical: 0xf_0000_0000_1000, count: 1, leaf: false },
    ]);
    for (const level of [4, 5])
      expect(decodeTable(table, level).map(({ count, leaf }) => ({ count, leaf }))).toEqual([
        { count: 1, leaf: false },
        { count: 1, leaf: false },
        { count: 1, leaf: false },
      ]);
    expect(decodeTable(tableOf([]), 1)).toEqual([]);
  });

  it('gives the records of the reference on random tables at every level', () => {
    const kernel = KernelInstance.shared();
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 24 }), (segments) => {
        const table = tableOf(buildTable(segments));
        for (const level of LEVELS)
          expect(decodeTable(table, level, kernel)).toEqual(decodeTableReference(table, level));
      }),
      { numRuns: 300 },
    );
  });

  it('leaves the window, the hits and the scan resume address alone, so a walk may run in the middle of a scan', () => {
    const kernel = KernelInstance.shared();
    const guarded = [
      [map.SCAN_RESUME_ADDRESS, map.HITS_ADDRESS + map.HIT_CAPACITY * map.HIT_BYTES],
      [map.WINDOW_ADDRESS, kernel.memory.length],
    ] as const;
    const before = guarded.map(([start, end]) => kernel.memory.slice(start, end));
    const entries = Array.from({ length: 512 }, (_, i) => (BigInt(i * 7) << 12n) | PRESENT);
    expect(decodeTable(tableOf(entries), 1, kernel)).toHaveLength(512);
    guarded.forEach(([start, end], i) =>
      expect(kernel.memory.subarray(start, end).every((byte, at) => byte === before[i]![at])).toBe(true),
    );
  });
});
