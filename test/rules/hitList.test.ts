import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HitList, type StringHit } from '../../src/rules/hitList.js';
import { PartMerge } from '../../src/rules/partMerge.js';

/** `count` hits in offset order with strings and lengths drawn from `seed`, as a scan lists them. */
function sortedHits(count: number, seed: number, strings: number): StringHit[] {
  let state = seed >>> 0 || 1;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  let offset = 0;
  return Array.from({ length: count }, () => {
    offset += next() % 3; // repeated offsets too (several strings at one offset)
    return { string: next() % strings, offset, length: 1 + (next() % 64) };
  });
}

function listOf(hits: readonly StringHit[]): HitList {
  const list = new HitList();
  for (const { string, offset, length } of hits) list.push(string, offset, length);
  return list;
}

describe('HitList', () => {
  it('keeps every hit across chunk boundaries, and hands out the hits of an offset range as views of its chunks', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer(),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (count, seed, from, to) => {
          const hits = sortedHits(count, seed, 7);
          const list = listOf(hits);
          expect(list.length).toBe(count);
          const probe = count > 0 ? [0, count >> 1, count - 1] : [];
          for (const index of probe) {
            expect(list.offsetAt(index)).toBe(hits[index]!.offset);
            expect(list.stringAt(index)).toBe(hits[index]!.string);
            expect(list.lengthAt(index)).toBe(hits[index]!.length);
          }
          const last = count > 0 ? hits[count - 1]!.offset + 1 : 1;
          const [start, end] = [Math.floor(Math.min(from, to) * last), Math.floor(Math.max(from, to) * last)];
          const merged = new HitList();
          for (const columns of list.columnsWithOffsetsIn(start, end)) merged.append(columns, () => true);
          expect([...merged]).toEqual(hits.filter((hit) => hit.offset >= start && hit.offset < end));
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('PartMerge', () => {
  it('gives, whatever order the parts arrive in, the in-order concatenation capped per string, rule and scan in that order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 6 }),
        fc.integer(),
        fc.record({
          perString: fc.integer({ min: 1, max: 2000 }),
          perRule: fc.integer({ min: 1, max: 3000 }),
          perScan: fc.integer({ min: 1, max: 5000 }),
        }),
        fc.infiniteStream(fc.nat()),
        (sizes, seed, limits, order) => {
          const parts = sizes.map((size, part) => ({
            hits: sortedHits(size, seed + part, 4).map((hit) => ({ ...hit, offset: hit.offset + part * 1e6 })),
            truncated: part === 1 ? [3] : [],
          }));
          const expected: StringHit[] = [];
          // Strings 0 and 1 belong to rule 0, strings 2 and 3 to rule 1.
          const ruleOfString = [0, 0, 1, 1];
          const counts = [0, 0, 0, 0];
          const ruleCounts = [0, 0];
          let total = 0;
          const truncated = new Set(parts.flatMap((part) => part.truncated));
          for (const hit of parts.flatMap((part) => part.hits)) {
            const rule = ruleOfString[hit.string]!;
            if (
              counts[hit.string]! < limits.perString &&
              ruleCounts[rule]! < limits.perRule &&
              total < limits.perScan
            ) {
              counts[hit.string]!++;
              ruleCounts[rule]!++;
              total++;
              expected.push(hit);
            } else truncated.add(hit.string);
          }
          const merge = new PartMerge(ruleOfString, limits);
          const arrival = parts.map((_, index) => index);
          const draws = order[Symbol.iterator]();
          for (let i = arrival.length - 1; i > 0; i--) {
            const j = (draws.next().value as number) % (i + 1);
            [arrival[i], arrival[j]] = [arrival[j]!, arrival[i]!];
          }
          for (const index of arrival)
            merge.add(index, {
              columns: listOf(parts[index]!.hits).columnsWithOffsetsIn(),
              truncated: parts[index]!.truncated,
            });
          const result = merge.result(parts.length);
          expect([...result.hits]).toEqual(expected);
          expect(result.truncated).toEqual([...truncated].sort((a, b) => a - b));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a part given twice and a result asked before every part is in', () => {
    const merge = new PartMerge([0], { perString: 10, perRule: 10, perScan: 10 });
    merge.add(1, { columns: [], truncated: [] });
    expect(() => merge.add(1, { columns: [], truncated: [] })).toThrow(/already merged/);
    expect(() => merge.result(2)).toThrow(/0 of 2 parts/);
    merge.add(0, { columns: [], truncated: [] });
    expect(merge.result(2).hits.length).toBe(0);
  });
});
