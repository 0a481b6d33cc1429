/**
 * Physical search on the scan pool: 1 thread against 2, with the single-threaded searcher as the
 * reference for the hits, in the same run. Usage: node dist/bench/parallelScan.js [dump] [job MiB]
 * (default: the linux61-clean ELF fixture, 128 MiB jobs; the first, warm-up, pass puts the dump
 * in the page cache). Thread start-up (window touch, WASM compile) is not timed: a pool is reused.
 */
import { availableParallelism, loadavg } from 'node:os';
import { openImage } from '../src/image/open.js';
import { MultiNeedleSearcher, type NeedleHit } from '../src/kernels/multiNeedle.js';
import { DEFAULT_JOB_BYTES, ScanPool } from '../src/workers/scanPool.js';
import { fixturePath } from '../test/support/fixtures.js';
import { coldAndBest, coldAndBestAsync, ROUNDS } from './support/timing.js';

const text = (value: string) => new TextEncoder().encode(value);
const NEEDLES = [text('Linux version '), text('OSRELEASE='), text('swapper/0\0\0\0\0\0\0')];
const THREAD_COUNTS = [1, 2];
// This bundle lives in dist/bench; the worker bundle one level up.
const WORKER_SCRIPT = new URL('../scanWorker.js', import.meta.url);

function sameHits(a: readonly NeedleHit[], b: readonly NeedleHit[]): boolean {
  return a.length === b.length && a.every((hit, i) => hit.offset === b[i]!.offset && hit.needle === b[i]!.needle);
}

const path = process.argv[2] ?? fixturePath('linux61-clean', 'elf');
const jobBytes = process.argv[3] ? Number(process.argv[3]) * 2 ** 20 : DEFAULT_JOB_BYTES;
const image = openImage(path);
const gigabytes = image.totalBytes / 1e9;
const rate = (seconds: number) => `${(gigabytes / seconds).toFixed(2).padStart(6)} GB/s`;
console.log(
  `${path}: ${(image.totalBytes / 2 ** 20).toFixed(0)} MiB, jobs of ${jobBytes / 2 ** 20} MiB, needles: banner, OSRELEASE=, swapper/0; best of ${ROUNDS}`,
);
// Two threads only beat one when two CPUs are free: the load says whether the run had them.
console.log(`${availableParallelism()} CPUs, load average ${loadavg()[0]!.toFixed(2)}`);

const reference = coldAndBest(() => MultiNeedleSearcher.create(NEEDLES).searchImage(image));
image.close();
console.log(`${'in-process searcher (no pool)'.padEnd(30)} ${rate(reference.best)}   ${reference.result.length} hits`);

let mismatches = 0;
const bestByThreads = new Map<number, number>();
for (const threads of THREAD_COUNTS) {
  const pool = await ScanPool.create({ threads, workerScript: WORKER_SCRIPT });
  try {
    const run = await coldAndBestAsync(() => pool.searchImage(path, NEEDLES, { jobBytes }));
    const agree = sameHits(run.result, reference.result);
    if (!agree) mismatches += 1;
    bestByThreads.set(threads, run.best);
    const speedup = (bestByThreads.get(1)! / run.best).toFixed(2);
    console.log(
      `${`pool, ${threads} thread${threads > 1 ? 's' : ''}`.padEnd(30)} ${rate(run.best)}   ×${speedup} vs 1 thread   ` +
        `${run.result.length} hits ${agree ? 'agree' : 'DIFFER from the in-process searcher'}`,
    );
  } finally {
    await pool.close();
  }
}
if (mismatches > 0) {
  console.error(`${mismatches} pool run(s) found different hits from the in-process searcher`);
  process.exit(1);
}
