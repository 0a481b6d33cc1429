import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { HELPER_BUSY, InflateAhead } from '../../src/image/inflateAhead.js';
import { memoryLike } from '../support/memoryLike.js';

/**
 * zlib pages inflated ahead by a helper thread that reads them from the file itself
 * (inflateAhead.ts), while this thread takes them in any order: every page back exactly whichever
 * thread inflated it, a page that does not inflate to exactly one page refused, a page the helper
 * may not read inflated here, and pages already returned untouched by everything after.
 */

const PAGE = 4096;
const work = mkdtempSync(join(tmpdir(), 'vms-ahead-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Damage = 'none' | 'checksum' | 'short' | 'long';

interface StoredPage {
  readonly page: Uint8Array;
  readonly stored: Uint8Array;
  readonly damage: Damage;
}

function storedPage(bytes: Uint8Array, damage: Damage): StoredPage {
  const page = new Uint8Array(PAGE);
  page.set(bytes.subarray(0, PAGE));
  const source = damage === 'short' ? page.subarray(0, PAGE - 1) : damage === 'long' ? new Uint8Array(2 * PAGE) : page;
  const stored = new Uint8Array(deflateSync(source, { level: 1 }));
  if (damage === 'checksum') stored[stored.length - 1]! ^= 0x5a;
  return { page, stored, damage };
}

/** The stored pages written to a file with `gaps` between them; pages marked unreadable get -1 (this thread's only). */
function planFile(
  name: string,
  pages: readonly StoredPage[],
  gaps: readonly number[],
  unreadable: readonly boolean[],
): { path: string; fileOffsets: Float64Array; storedLengths: Int32Array } {
  const fileOffsets = new Float64Array(pages.length);
  const parts: Uint8Array[] = [];
  let at = 0;
  pages.forEach(({ stored }, slot) => {
    const gap = gaps[slot % gaps.length] ?? 0;
    parts.push(new Uint8Array(gap).fill(0xa5), stored);
    at += gap;
    fileOffsets[slot] = unreadable[slot % unreadable.length] ? -1 : at;
    at += stored.length;
  });
  const path = join(work, name);
  writeFileSync(path, Buffer.concat(parts));
  return { path, fileOffsets, storedLengths: Int32Array.from(pages, ({ stored }) => stored.length) };
}

/** A helper set on `plan`'s pages, after `before` (a hint given between spawn and begin, as a kdump may). */
function startAhead(
  plan: { path: string; fileOffsets: Float64Array; storedLengths: Int32Array },
  before: (ahead: InflateAhead) => void = () => {},
): InflateAhead {
  const ahead = InflateAhead.spawn()!;
  before(ahead);
  ahead.begin({ ...plan, pageLength: PAGE });
  return ahead;
}

/** Page `slot` as a reader gets it: taken, or inflated here when it is this thread's. */
const read = (ahead: InflateAhead, slot: number, pages: readonly StoredPage[]): Uint8Array | undefined =>
  ahead.take(slot) ?? ahead.inflateHere(slot, pages[slot]!.stored);

/**
 * Pages `from`..`to - 1` as a long read gets them (kdump.fillPages): those done already, then an
 * announcement, the others claimed upwards while the helper takes them downwards, and the ones
 * the helper was on taken last.
 */
function readBatch(
  ahead: InflateAhead,
  from: number,
  to: number,
  pages: readonly StoredPage[],
): Map<number, Uint8Array | undefined> {
  const got = new Map<number, Uint8Array | undefined>();
  const pending: number[] = [];
  for (let slot = from; slot < to; slot++) {
    const ready = ahead.peek(slot);
    if (ready) got.set(slot, ready);
    else pending.push(slot);
  }
  if (pending.length > 0) ahead.announce(pending[0]!, pending.at(-1)! + 1);
  const busy: number[] = [];
  for (const slot of pending) {
    const claimed = ahead.claim(slot);
    if (claimed === HELPER_BUSY) busy.push(slot);
    else got.set(slot, claimed ?? ahead.inflateHere(slot, pages[slot]!.stored));
  }
  for (const slot of busy) got.set(slot, read(ahead, slot, pages));
  return got;
}

const damages = fc.constantFrom<Damage>('none', 'none', 'none', 'none', 'checksum', 'short', 'long');

describe('zlib pages inflated ahead by a helper thread', () => {
  it('the helper reads and inflates pages while this thread does not ask', async () => {
    const pages = Array.from({ length: 512 }, (_, slot) =>
      storedPage(new TextEncoder().encode(`page ${slot} `.repeat(300)), 'none'),
    );
    const plan = planFile('warm', pages, [0, 17], [false]);
    const ahead = startAhead(plan);
    try {
      const deadline = Date.now() + 30_000;
      while (ahead.helperPages() < pages.length && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 5));
      expect(ahead.helperPages()).toBe(pages.length);
      pages.forEach(({ page }, slot) => expect(read(ahead, slot, pages)).toEqual(page));
    } finally {
      ahead.close();
    }
  }, 40_000);

  it('every page comes back exactly whichever thread inflated it, a damaged one refused', async () => {
    let run = 0;
    let helperPages = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(memoryLike, damages), { minLength: 1, maxLength: 300 }),
        fc.array(fc.nat({ max: 70_000 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 120 })), { maxLength: 30 }),
        fc.nat({ max: 40 }),
        async (generated, gaps, unreadable, batches, delayMs) => {
          const pages = generated.map(([bytes, damage]) => storedPage(bytes, damage));
          const plan = planFile(`run-${run++}`, pages, gaps, unreadable);
          const ahead = startAhead(plan);
          try {
            // The helper gets a head start of up to 40 ms; then this thread reads batches anywhere, then every page.
            await new Promise((resolve) => setTimeout(resolve, delayMs));
            const returned: Array<[number, Uint8Array | undefined]> = [];
            for (const [start, length] of batches) {
              const from = start % pages.length;
              returned.push(...readBatch(ahead, from, Math.min(pages.length, from + length), pages));
            }
            for (const slot of pages.keys()) returned.push([slot, read(ahead, slot, pages)]);
            for (const [slot, got] of returned) {
              const { page, damage } = pages[slot]!;
              if (damage === 'none') expect(got).toEqual(page);
              else expect(got, damage).toBeUndefined();
            }
            helperPages += ahead.helperPages();
          } finally {
            ahead.close();
          }
        },
      ),
      { numRuns: 40 },
    );
    expect(helperPages).toBeGreaterThan(0);
  }, 120_000);

  it('pages deferred to last (a kernel text) are inflated after every other page', async () => {
    // Enough pages, each with letters to decode one by one, that the helper's two passes last long
    // enough to be sampled from this thread on a loaded machine.
    const letters = Uint8Array.from(
      { length: 2 * PAGE },
      (_, at) => 0x41 + (Math.imul(at ^ (at >> 3), 0x9e3779b1) >>> 27),
    );
    const pages = Array.from({ length: 4096 }, (_, slot) => {
      const bytes = letters.slice((slot % PAGE) >> 2, ((slot % PAGE) >> 2) + PAGE);
      bytes.set(new TextEncoder().encode(`page ${slot}`));
      return storedPage(bytes, 'none');
    });
    const [deferFrom, deferTo] = [1024, 3072];
    const ahead = startAhead(planFile('deferred', pages, [0], [false]), (helper) =>
      helper.deferLast(deferFrom, deferTo),
    );
    try {
      // The helper goes from the top down: the others end with page 0, the deferred pass starts at deferTo - 1.
      const deferredWatched = [deferTo - 1, (deferFrom + deferTo) >> 1, deferFrom];
      const othersWatched = [0, deferFrom - 1, deferTo, pages.length - 1];
      const done = (slot: number) => ahead.peek(slot) !== undefined;
      const seen = { whileWorking: 0, deferredBeforeOthers: 0 };
      const deadline = Date.now() + 30_000;
      for (let inflated = 0; inflated < pages.length && Date.now() < deadline;) {
        // The deferred first, then the others: a deferred page done now means every other was done before it.
        const deferredDone = deferredWatched.some(done);
        if (deferredDone && !othersWatched.every(done)) seen.deferredBeforeOthers++;
        inflated = ahead.helperPages();
        if (inflated > 0 && inflated < pages.length) seen.whileWorking++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(ahead.helperPages()).toBe(pages.length);
      expect(seen.deferredBeforeOthers).toBe(0);
      // States were sampled while the helper worked: the check above had something to judge.
      expect(seen.whileWorking).toBeGreaterThan(0);
      // Compared as buffers: toEqual walks 4096 pages of 4 KiB a byte at a time for half a minute.
      const wrong = pages.filter(({ page }, slot) => Buffer.compare(read(ahead, slot, pages)!, page) !== 0);
      expect(wrong).toHaveLength(0);
    } finally {
      ahead.close();
    }
  }, 40_000);
});
