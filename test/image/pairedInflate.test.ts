import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { helperPagesInflated, inflatePaired, pairedInput } from '../../src/image/pairedInflate.js';
import { memoryLike } from '../support/memoryLike.js';

/**
 * zlib pages inflated by this thread and the helper thread together (pairedInflate.ts): every
 * page back exactly whichever thread took it, a page that does not inflate to exactly one page
 * refused, and pages already returned untouched by later batches (they are views of shared slabs).
 */

const PAGE = 4096;

type Damage = 'none' | 'checksum' | 'short' | 'long';

/** The page `bytes` fill (zeros after them), compressed, and damaged as asked. */
function stream(bytes: Uint8Array, damage: Damage): { page: Uint8Array; stored: Uint8Array } {
  const page = new Uint8Array(PAGE);
  page.set(bytes.subarray(0, PAGE));
  const source = damage === 'short' ? page.subarray(0, PAGE - 1) : damage === 'long' ? new Uint8Array(2 * PAGE) : page;
  const stored = new Uint8Array(deflateSync(source, { level: 1 }));
  if (damage === 'checksum') stored[stored.length - 1]! ^= 0x5a;
  return { page, stored };
}

/** One batch through the pair: the stored pages laid out one after another in the shared input. */
function inflateBatch(stored: readonly Uint8Array[]): (Uint8Array | undefined)[] {
  const input = pairedInput(stored.reduce((sum, bytes) => sum + bytes.length, 0));
  expect(input, 'the main thread pairs').toBeDefined();
  let at = 0;
  const jobs = stored.map((bytes) => {
    input!.set(bytes, at);
    at += bytes.length;
    return { at: at - bytes.length, length: bytes.length };
  });
  return inflatePaired(jobs, PAGE);
}

describe('pages inflated by this thread and a helper thread', () => {
  it('the helper starts and takes pages', async () => {
    const page = stream(new TextEncoder().encode('warm up '.repeat(400)), 'none').stored;
    const deadline = Date.now() + 30_000;
    while (helperPagesInflated() === 0 && Date.now() < deadline) {
      inflateBatch(Array.from({ length: 256 }, () => page));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(helperPagesInflated()).toBeGreaterThan(0);
  }, 40_000);

  it('every page comes back exactly, a damaged one refused, earlier pages untouched by later batches', () => {
    const helperBefore = helperPagesInflated();
    const returned: Array<{ got: Uint8Array; expected: Uint8Array }> = [];
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(memoryLike, fc.constantFrom<Damage>('none', 'none', 'none', 'none', 'checksum', 'short', 'long')),
          { minLength: 1, maxLength: 400 },
        ),
        (pages) => {
          const streams = pages.map(([bytes, damage]) => ({ damage, ...stream(bytes, damage) }));
          const results = inflateBatch(streams.map(({ stored }) => stored));
          streams.forEach(({ damage, page }, at) => {
            if (damage === 'none') {
              expect(results[at]).toEqual(page);
              returned.push({ got: results[at]!, expected: page });
            } else {
              expect(results[at], damage).toBeUndefined();
            }
          });
        },
      ),
      { numRuns: 60 },
    );
    for (const { got, expected } of returned) expect(got).toEqual(expected);
    expect(helperPagesInflated()).toBeGreaterThan(helperBefore);
  });
});
