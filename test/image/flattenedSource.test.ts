import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FlattenedSource } from '../../src/image/flattened.js';
import { BufferSource } from '../../src/image/source.js';

/**
 * The flattened stream's index and reads against `makedumpfile -R`'s rebuild: records replayed in
 * write order over zeros. Records come in any order, overlap, and are cut anywhere, so reads
 * span many records, records out of stream order, and gaps no record wrote.
 */

const HEADER_BYTES = 4096;

interface Record {
  readonly offset: number;
  readonly data: Uint8Array;
}

function flattenedStream(records: readonly Record[]): Uint8Array {
  const size = HEADER_BYTES + records.reduce((sum, record) => sum + 16 + record.data.length, 0) + 16;
  const stream = new Uint8Array(size);
  const view = new DataView(stream.buffer);
  stream.set(new TextEncoder().encode('makedumpfile'), 0);
  view.setBigInt64(16, 1n, false);
  view.setBigInt64(24, 1n, false);
  let at = HEADER_BYTES;
  for (const { offset, data } of [...records, { offset: -1, data: new Uint8Array(0) }]) {
    view.setBigInt64(at, BigInt(offset), false);
    view.setBigInt64(at + 8, offset < 0 ? -1n : BigInt(data.length), false);
    stream.set(data, at + 16);
    at += 16 + data.length;
  }
  return stream;
}

function rebuilt(records: readonly Record[]): Uint8Array {
  const size = Math.max(0, ...records.map((record) => record.offset + record.data.length));
  const file = new Uint8Array(size);
  for (const { offset, data } of records) file.set(data, offset);
  return file;
}

/** `file` cut into records of the `cuts`' lengths in turn, in order. */
function cutInto(file: Uint8Array, cuts: readonly number[]): Record[] {
  const list: Record[] = [];
  for (let at = 0, cut = 0; at < file.length; cut++) {
    const length = Math.min(cuts[cut % cuts.length]!, file.length - at);
    list.push({ offset: at, data: file.slice(at, at + length) });
    at += length;
  }
  return list;
}

/** The stream's bytes as a file another thread could read: its regions are its own offsets. */
const streamFile = (bytes: Uint8Array) =>
  Object.assign(new BufferSource('flat', bytes), {
    fileRegion: (offset: number, length: number) =>
      offset + length <= bytes.length ? { path: 'flat', offset } : undefined,
  });

/** A file cut into records written mostly in order, some moved, some written twice or over a hole. */
const records = fc
  .tuple(
    fc.uint8Array({ minLength: 1, maxLength: 40_000 }),
    fc.array(fc.integer({ min: 1, max: 6000 }), { minLength: 1, maxLength: 30 }),
    fc.array(fc.tuple(fc.nat(), fc.nat(), fc.constantFrom('move', 'repeat', 'drop')), { maxLength: 6 }),
  )
  .map(([file, cuts, changes]) => {
    const list = cutInto(file, cuts);
    for (const [from, to, change] of changes) {
      const record = list[from % list.length]!;
      if (change === 'drop' && list.length > 1) list.splice(from % list.length, 1);
      else if (change === 'move') list.splice(to % list.length, 0, ...list.splice(from % list.length, 1));
      else
        list.splice(to % (list.length + 1), 0, { offset: record.offset + (to % 64), data: record.data.slice(0, 100) });
    }
    return list;
  });

describe('a flattened stream read through its index', () => {
  it('reads what makedumpfile -R would rebuild, at any offset and length', () => {
    fc.assert(
      fc.property(
        records,
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 50_000 })), { minLength: 1, maxLength: 20 }),
        (list, reads) => {
          const expected = rebuilt(list);
          const source = new FlattenedSource(new BufferSource('flat', flattenedStream(list)));
          expect(source.size).toBe(expected.length);
          for (const [start, length] of reads) {
            const offset = start % (expected.length + 1);
            const into = new Uint8Array(length).fill(0xee);
            const got = source.readAt(offset, into);
            expect(got).toBe(Math.min(length, expected.length - offset));
            expect(into.subarray(0, got)).toEqual(expected.subarray(offset, offset + got));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('names where a read within one record lies in the stream file', () => {
    let named = 0;
    fc.assert(
      fc.property(
        records,
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 300 })), { minLength: 1, maxLength: 20 }),
        (list, reads) => {
          const expected = rebuilt(list);
          const bytes = flattenedStream(list);
          const source = new FlattenedSource(streamFile(bytes));
          for (const [start, length] of reads) {
            const offset = start % (expected.length + 1);
            const region = source.fileRegion(offset, length);
            if (region === undefined) continue;
            named++;
            expect(region.path).toBe('flat');
            expect(offset + length).toBeLessThanOrEqual(expected.length);
            expect(bytes.subarray(region.offset, region.offset + length)).toEqual(
              expected.subarray(offset, offset + length),
            );
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(named).toBeGreaterThan(0);
  });

  it('names every read that lies within one record, on records written in order', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 40_000 }),
        fc.array(fc.integer({ min: 1000, max: 6000 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 1000 })), { minLength: 1, maxLength: 20 }),
        (file, cuts, reads) => {
          const list = cutInto(file, cuts);
          const bytes = flattenedStream(list);
          const source = new FlattenedSource(streamFile(bytes));
          for (const [start, length] of reads) {
            const offset = start % file.length;
            const record = list.find(
              (candidate) => offset >= candidate.offset && offset < candidate.offset + candidate.data.length,
            )!;
            const within = offset + length <= record.offset + record.data.length;
            const region = source.fileRegion(offset, length);
            expect(region !== undefined, `${offset}+${length}`).toBe(within);
            if (region)
              expect(bytes.subarray(region.offset, region.offset + length)).toEqual(
                file.subarray(offset, offset + length),
              );
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
