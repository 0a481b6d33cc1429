import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ABSENT_PAGE, MigrationPageTable, ZERO_PAGE } from '../../src/image/migrationPageTable.js';

/** Runs of non-absent entries of a dense array within [first, first + count): the reference. */
function denseRuns(entries: Map<number, number>, first: number, count: number): { start: number; end: number }[] {
  const runs: { start: number; end: number }[] = [];
  for (let page = first; page < first + count; page++) {
    if (!entries.has(page)) continue;
    const last = runs.at(-1);
    if (last && last.end === page) runs.push({ start: runs.pop()!.start, end: page + 1 });
    else runs.push({ start: page, end: page + 1 });
  }
  return runs;
}

describe('MigrationPageTable', () => {
  it('reads back what was set, absent elsewhere, and finds the same runs as a dense table', () => {
    // Pages clustered near chunk edges (4,096 pages) and spread far apart, as a stream can send.
    const page = fc.oneof(
      fc.integer({ min: 0, max: 3 * 4096 }),
      fc.integer({ min: 4090, max: 4100 }),
      fc.integer({ min: 0, max: 2 ** 40 }),
    );
    const entry = fc.oneof(fc.constant(ZERO_PAGE), fc.nat());
    fc.assert(
      fc.property(
        fc.array(fc.tuple(page, entry), { maxLength: 300 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.integer({ min: 0, max: 4 * 4096 }),
        (writes, first, count) => {
          const table = new MigrationPageTable();
          const reference = new Map<number, number>();
          for (const [at, value] of writes) {
            table.set(at, value);
            reference.set(at, value);
          }
          for (const [at, value] of reference) expect(table.get(at)).toBe(value);
          for (const at of [first, first + count, 2 ** 40 + 1])
            expect(table.get(at)).toBe(reference.get(at) ?? ABSENT_PAGE);
          expect(table.presentRuns(first, count)).toEqual(denseRuns(reference, first, count));
        },
      ),
      { numRuns: 500 },
    );
  });
});
