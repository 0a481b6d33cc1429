/**
 * Multi-needle search over a whole dump: the WASM kernel against Buffer.indexOf over the same
 * chunks of the same file, in the same run. Usage: node dist/bench/multiNeedle.js [dump] [window MiB]
 * (default: the linux61-clean ELF fixture; the first, warm-up, pass puts the dump in the page cache).
 */
import { openImage } from '../src/image/open.js';
import type { MemoryImage } from '../src/image/types.js';
import { DEFAULT_WINDOW_BYTES } from '../src/kernels/memoryMap.js';
import { MultiNeedleSearcher, type NeedleHit } from '../src/kernels/multiNeedle.js';
import { fixturePath } from '../test/support/fixtures.js';
import { forEachChunk } from './support/chunks.js';
import { coldAndBest, ROUNDS } from './support/timing.js';

const text = (value: string) => new TextEncoder().encode(value);

const CASES: ReadonlyArray<{ name: string; needles: Uint8Array[] }> = [
  { name: '"OSRELEASE="', needles: [text('OSRELEASE=')] },
  {
    name: 'banner, OSRELEASE=, swapper/0',
    needles: [text('Linux version '), text('OSRELEASE='), text('swapper/0\0\0\0\0\0\0')],
  },
  // 0xffffffff80000000 (__START_KERNEL_map) little-endian: three zero bytes first.
  { name: 'pointer 00 00 00 80 ff ff ff ff', needles: [Uint8Array.from([0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff])] },
];

/** The searcher's chunking (window, overlap, hits owned by the chunk they start in) with Buffer.indexOf per needle. */
function searchWithIndexOf(
  image: MemoryImage,
  needles: readonly Uint8Array[],
  chunk: Buffer,
  scan: boolean,
): NeedleHit[] {
  const overlap = Math.max(...needles.map((needle) => needle.length)) - 1;
  const hits: NeedleHit[] = [];
  forEachChunk(image, chunk, overlap, (data, start, ownedLength) => {
    if (!scan) return;
    needles.forEach((needle, index) => {
      for (let at = data.indexOf(needle); at >= 0 && at < ownedLength; at = data.indexOf(needle, at + 1)) {
        hits.push({ needle: index, offset: start + at });
      }
    });
  });
  return hits.sort((a, b) => a.offset - b.offset || a.needle - b.needle);
}

function sameHits(a: readonly NeedleHit[], b: readonly NeedleHit[]): boolean {
  return a.length === b.length && a.every((hit, i) => hit.offset === b[i]!.offset && hit.needle === b[i]!.needle);
}

const path = process.argv[2] ?? fixturePath('linux61-clean', 'elf');
const image = openImage(path);
const gigabytes = image.totalBytes / 1e9;
const windowBytes = process.argv[3] ? Number(process.argv[3]) * 2 ** 20 : DEFAULT_WINDOW_BYTES;
const chunk = Buffer.alloc(windowBytes);
const rate = (seconds: number) => `${(gigabytes / seconds).toFixed(2).padStart(6)} GB/s`;

console.log(
  `${path}: ${image.format}, ${(image.totalBytes / 2 ** 20).toFixed(0)} MiB in ${image.ranges.length} ranges, window ${windowBytes / 2 ** 20} MiB, best of ${ROUNDS}`,
);
const readOnly = coldAndBest(() => searchWithIndexOf(image, [text('x')], chunk, false));
console.log(`reading alone (into a Buffer, same chunks): ${rate(readOnly.best)}`);

let mismatches = 0;
for (const { name, needles } of CASES) {
  const searcher = MultiNeedleSearcher.create(needles, { windowBytes });
  const kernel = coldAndBest(() => searcher.searchImage(image));
  const indexOf = coldAndBest(() => searchWithIndexOf(image, needles, chunk, true));
  const agree = sameHits(kernel.result, indexOf.result);
  if (!agree) mismatches += 1;
  console.log(
    `${name.padEnd(34)} wasm ${rate(kernel.best)}   indexOf ${rate(indexOf.best)}   ` +
      `×${(indexOf.best / kernel.best).toFixed(2)}   ${kernel.result.length} hits ${agree ? 'agree' : `DIFFER (indexOf found ${indexOf.result.length})`}`,
  );
}
image.close();
if (mismatches > 0) {
  console.error(`${mismatches} case(s) where the kernel and Buffer.indexOf found different hits`);
  process.exit(1);
}
