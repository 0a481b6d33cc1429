import { VmscopeError } from '../../src/util/errors.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { MultiNeedleSearcher, type NeedleHit } from '../../src/kernels/multiNeedle.js';
import { compileSource } from '../../src/rules/compile.js';
import { RuleScanner } from '../../src/rules/scanner.js';
import { planScanJobs } from '../../src/workers/physicalJobs.js';
import { DECODED_JOB_BYTES, DEFAULT_JOB_BYTES, parallelSearchImage, ScanPool } from '../../src/workers/scanPool.js';
import { dumpLikeBytes, plant, pseudoRandomBytes } from '../kernels/haystacks.js';
import { fixturePath } from '../support/fixtures.js';

// Worker threads cannot load TypeScript: the pool runs the bundle `npm test` builds first.
const WORKER_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/scanWorker.js');
const THREAD_COUNTS = [1, 2, 3];
const text = (value: string) => new TextEncoder().encode(value);
const crosser = text('BOUNDARY-CROSSER'); // 16 bytes

function singleThreaded(path: string, needles: readonly Uint8Array[]): NeedleHit[] {
  const image = openImage(path);
  try {
    return MultiNeedleSearcher.create(needles).searchImage(image);
  } finally {
    image.close();
  }
}

/** Bytes below 0x40 only, so needles made of letters occur exactly where planted. */
const letterFreeBytes = (seed: number, length: number) => pseudoRandomBytes(seed, length, (random) => random & 0x3f);

/** A LiME file: a 32-byte header (magic, version 1, start, inclusive end, reserved) before each range's bytes. */
function limeFile(ranges: ReadonlyArray<{ start: number; bytes: Uint8Array }>): Buffer {
  return Buffer.concat(
    ranges.flatMap(({ start, bytes }) => {
      const header = Buffer.alloc(32);
      header.writeUInt32LE(0x4c694d45, 0);
      header.writeUInt32LE(1, 4);
      header.writeBigUInt64LE(BigInt(start), 8);
      header.writeBigUInt64LE(BigInt(start + bytes.length - 1), 16);
      return [header, bytes];
    }),
  );
}

const pools = new Map<number, ScanPool>();
let tempDir: string;

beforeAll(async () => {
  tempDir = mkdtempSync(join(tmpdir(), 'vmscope-scanpool-'));
  for (const threads of THREAD_COUNTS)
    pools.set(threads, await ScanPool.create({ threads, workerScript: WORKER_SCRIPT }));
});

afterAll(async () => {
  await Promise.all([...pools.values()].map((pool) => pool.close()));
  rmSync(tempDir, { recursive: true, force: true });
});

describe('planScanJobs', () => {
  it('cuts the present bytes into consecutive jobs of jobBytes, skipping gaps and empty ranges', () => {
    const ranges = [
      { start: 0x1000, end: 0x1800, fileOffset: 0 },
      { start: 0x1800, end: 0x1800, fileOffset: 0x800 },
      { start: 0x4000, end: 0x4300, fileOffset: 0x800 },
    ];
    expect(planScanJobs(ranges, 0x300)).toEqual([
      { start: 0x1000, end: 0x1300, bytes: 0x300 },
      { start: 0x1300, end: 0x1600, bytes: 0x300 },
      { start: 0x1600, end: 0x4100, bytes: 0x300 },
      { start: 0x4100, end: 0x4300, bytes: 0x200 },
    ]);
    expect(planScanJobs(ranges, 0x10000)).toEqual([{ start: 0x1000, end: 0x4300, bytes: 0xb00 }]);
    expect(() => planScanJobs(ranges, 0)).toThrow(RangeError);
  });
});

describe('ScanPool on a real dump', () => {
  // Rare ones (the banner; __START_KERNEL_map, zero-prefixed) and common ones (a word; -1 as a
  // u32 then 0, over 200 000 times), so job edges fall near many hits.
  const needles = [
    text('Linux version '),
    text('OSRELEASE='),
    Uint8Array.of(0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff),
    text('the '),
    Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0),
  ];
  let path: string;
  let expected: NeedleHit[];
  /** Puts the first job edge 3 bytes into a hit, so that hit is only found by reading past the edge. */
  let edgeInsideHit: number;

  beforeAll(() => {
    path = fixturePath('linux61-clean', 'elf');
    expected = singleThreaded(path, needles);
    expect(new Set(expected.map((hit) => hit.needle))).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(expected.length).toBeGreaterThan(100_000);
    const image = openImage(path);
    const ranges = image.ranges;
    image.close();
    const presentBytesBefore = (address: number) =>
      ranges.reduce((sum, range) => sum + Math.max(0, Math.min(range.end, address) - range.start), 0);
    edgeInsideHit =
      presentBytesBefore(
        expected.find((hit) => hit.needle === 4 && presentBytesBefore(hit.offset) >= 16 * 2 ** 20)!.offset,
      ) + 3;
  });

  for (const threads of THREAD_COUNTS) {
    for (const [jobSize, jobBytesOf] of [
      ['16 MiB', () => 16 * 2 ** 20],
      ['16 MiB + 12345', () => 16 * 2 ** 20 + 12_345],
      ['edge-inside-a-hit', () => edgeInsideHit],
    ] as const) {
      it(`${threads} thread(s), ${jobSize} jobs: the single-threaded searcher's hits, in order, with progress to the end`, async () => {
        const jobBytes = jobBytesOf();
        const progress: number[] = [];
        let total = 0;
        const hits = await pools.get(threads)!.searchImage(path, needles, {
          jobBytes,
          onProgress: (done, totalBytes) => {
            progress.push(done);
            total = totalBytes;
          },
        });
        expect(hits).toEqual(expected);
        expect(progress).toEqual([...progress].sort((a, b) => a - b));
        expect(progress.at(-1)).toBe(total);
        expect(progress.length).toBe(Math.ceil(total / jobBytes));
      });
    }
  }
});

describe('ScanPool default jobs', () => {
  it('cuts a decoded dump (AVML) into DECODED_JOB_BYTES jobs and its stored twin (LiME) into DEFAULT_JOB_BYTES, for the same hits', async () => {
    const needles = [text('LABMARK-7f3a9c'), text('Linux version ')];
    const jobsOf = async (path: string) => {
      const steps: number[] = [];
      let total = 0;
      const hits = await pools.get(2)!.searchImage(path, needles, {
        onProgress: (done, totalBytes) => {
          steps.push(done);
          total = totalBytes;
        },
      });
      return { hits, jobs: steps.length, total };
    };
    const avml = await jobsOf(fixturePath('linux61-rootkit', 'avml'));
    const lime = await jobsOf(fixturePath('linux61-rootkit', 'lime'));
    expect(avml.jobs).toBe(Math.ceil(avml.total / DECODED_JOB_BYTES));
    expect(lime.jobs).toBe(Math.ceil(lime.total / DEFAULT_JOB_BYTES));
    expect(avml.jobs).toBeGreaterThan(lime.jobs);
    // AVML leaves all-zero blocks out, which hold no hit: both files have the same ones.
    expect(avml.hits.length).toBeGreaterThan(0);
    expect(avml.hits).toEqual(lime.hits);
  });
});

describe('ScanPool at job, range and gap edges', () => {
  const repeated = text('QQQQ');
  const needles = [crosser, repeated];

  it('finds a needle crossing a job edge exactly once, whichever byte of it the edge falls after', async () => {
    const jobBytes = 100_003;
    const data = letterFreeBytes(7, 5 * jobBytes + 777);
    const edge = (k: number) => k * jobBytes;
    const planted: NeedleHit[] = [
      { needle: 0, offset: 0 },
      { needle: 0, offset: edge(1) - 1 }, // one byte in the first job
      { needle: 0, offset: edge(2) - 15 }, // one byte in the second job
      { needle: 0, offset: edge(3) - 16 }, // ends exactly at the edge
      { needle: 0, offset: edge(3) }, // starts exactly at the edge
      { needle: 0, offset: data.length - 16 },
    ];
    for (const hit of planted) plant(data, crosser, hit.offset);
    plant(data, text('QQQQQQQQ'), edge(4) - 4); // five overlapping occurrences, the last starting on the edge
    for (let at = edge(4) - 4; at <= edge(4); at++) planted.push({ needle: 1, offset: at });
    planted.sort((a, b) => a.offset - b.offset || a.needle - b.needle);
    const path = join(tempDir, 'edges.raw');
    writeFileSync(path, data);

    expect(singleThreaded(path, needles)).toEqual(planted);
    for (const [threads, pool] of pools) {
      for (const jobBytesTried of [jobBytes, jobBytes - 1, jobBytes + 1, 4099, data.length]) {
        expect(
          await pool.searchImage(path, needles, { jobBytes: jobBytesTried }),
          `${threads} threads, ${jobBytesTried}-byte jobs`,
        ).toEqual(planted);
      }
    }
  });

  it('reads on across touching ranges but never across a gap (LiME with two gaps)', async () => {
    const r1 = { start: 0x10000, bytes: letterFreeBytes(1, 0x20000) };
    const r2 = { start: 0x30000, bytes: letterFreeBytes(2, 0x20000) }; // touches r1: one stream
    const r3 = { start: 0x80000, bytes: letterFreeBytes(3, 0x20000) };
    const r4 = { start: 0xc0000, bytes: letterFreeBytes(4, 0x10000) };
    plant(r1.bytes, crosser.subarray(0, 5), r1.bytes.length - 5);
    plant(r2.bytes, crosser.subarray(5), 0);
    plant(r2.bytes, crosser.subarray(0, 6), r2.bytes.length - 6); // the rest after the gap: no match
    plant(r3.bytes, crosser.subarray(6), 0);
    plant(r3.bytes, crosser, r3.bytes.length - 16);
    plant(r4.bytes, crosser, 0);
    plant(r4.bytes, crosser, r4.bytes.length - 16);
    const path = join(tempDir, 'gaps.lime');
    writeFileSync(path, limeFile([r1, r2, r3, r4]));
    const planted: NeedleHit[] = [0x30000 - 5, 0xa0000 - 16, 0xc0000, 0xd0000 - 16].map((offset) => ({
      needle: 0,
      offset,
    }));

    expect(singleThreaded(path, needles)).toEqual(planted);
    for (const [threads, pool] of pools) {
      // 0x20000: a job edge on the r1/r2 seam; 0x40000: one on the r2/r3 gap.
      for (const jobBytes of [0x20000, 0x20000 - 3, 0x40000, 4099, 2 ** 20]) {
        expect(
          await pool.searchImage(path, needles, { jobBytes }),
          `${threads} threads, ${jobBytes}-byte jobs`,
        ).toEqual(planted);
      }
    }
  });

  it('matches the single-threaded searcher on dense short-needle hits with tiny jobs', async () => {
    const path = join(tempDir, 'dense.raw');
    writeFileSync(path, dumpLikeBytes(11, 300_000));
    const denseNeedles = [text('ab'), Uint8Array.of(0, 0, 0xff), text('aaa'), text('abcab'), Uint8Array.of(0xff)];
    const expected = singleThreaded(path, denseNeedles);
    expect(expected.length).toBeGreaterThan(10_000);
    for (const [threads, pool] of pools) {
      for (const jobBytes of [997, 4096, 65_537]) {
        expect(
          await pool.searchImage(path, denseNeedles, { jobBytes }),
          `${threads} threads, ${jobBytes}-byte jobs`,
        ).toEqual(expected);
      }
    }
  });
});

describe('ScanPool rule scans', () => {
  const rulesSource = `rule word { strings: $w = "needle" fullword $x = /ne+dle[0-9]{2}/ condition: any of them }
rule widened { strings: $w = "crosser" wide nocase condition: $w }`;
  const scannerOf = () => RuleScanner.create(compileSource(rulesSource, 'edges.yar'));

  it('gives the single-threaded scan at job edges: fullword looks back across the edge, matches cross it', async () => {
    const jobBytes = 100_003;
    const data = letterFreeBytes(9, 4 * jobBytes + 99);
    plant(data, text('xneedle'), jobBytes - 1); // "x" ends job 1: "needle" starting job 2 is no full word
    plant(data, text(' needle '), 2 * jobBytes - 1); // a full word starting exactly on the edge
    plant(data, text('neeedle42'), 3 * jobBytes - 4); // a regex match across the edge
    plant(data, new Uint8Array(Buffer.from('CrOsSeR', 'utf16le')), 4 * jobBytes - 7);
    const path = join(tempDir, 'rule-edges.raw');
    writeFileSync(path, data);
    const scanner = scannerOf();
    const image = openImage(path);
    const expected = scanner.scanImage(image);
    image.close();
    expect([...expected.hits].map((hit) => `${scanner.describe(hit.string)}@${hit.offset}`)).toEqual([
      `word:$w@${2 * jobBytes}`,
      `word:$x@${3 * jobBytes - 4}`,
      `widened:$w@${4 * jobBytes - 7}`,
    ]);
    for (const [threads, pool] of pools) {
      for (const jobBytesTried of [jobBytes, jobBytes - 1, jobBytes + 2, 4099]) {
        const result = await pool.scanRules(path, scanner, { jobBytes: jobBytesTried });
        expect(result.truncated).toEqual(expected.truncated);
        expect([...result.hits], `${threads} threads, ${jobBytesTried}-byte jobs`).toEqual([...expected.hits]);
      }
    }
  });

  it('gives the single-threaded scan of the yara corpus on a real dump, and caps matches per string over all jobs', async () => {
    const path = fixturePath('linux61-rootkit', 'lime');
    const corpus = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../rules/corpus/corpus.yar'), 'utf8');
    const scanner = RuleScanner.create(compileSource(corpus, 'corpus.yar'), { limits: { perString: 20_000 } });
    const image = openImage(path);
    const expected = scanner.scanImage(image);
    image.close();
    expect(expected.hits.length).toBeGreaterThan(50_000);
    expect(expected.truncated.length).toBeGreaterThan(0);
    const result = await pools.get(2)!.scanRules(path, scanner, { jobBytes: 48 * 2 ** 20 + 7 });
    expect(result.truncated).toEqual(expected.truncated);
    expect([...result.hits]).toEqual([...expected.hits]);
  });
});

describe('ScanPool failures', () => {
  it('rejects a job error, and the pool keeps working', async () => {
    const path = join(tempDir, 'small.raw');
    writeFileSync(path, letterFreeBytes(5, 10_000));
    const pool = pools.get(2)!;
    await expect(pool.searchImage(path, [new Uint8Array(0)], { jobBytes: 1000 })).rejects.toThrow(
      /needle 0 is 0 bytes/,
    );
    await expect(pool.searchImage(join(tempDir, 'absent.raw'), [text('x')])).rejects.toThrow(/ENOENT|absent\.raw/);
    expect(await pool.searchImage(path, [text('BOUNDARY')], { jobBytes: 1000 })).toEqual([]);
  });

  it('a typed error in a thread arrives typed, with its code and file, not as an internal error', async () => {
    const pool = pools.get(2)!;
    const absent = join(tempDir, 'absent-typed.raw');
    const error = (await pool.searchImage(absent, [text('x')]).catch((caught: unknown) => caught)) as VmscopeError;
    expect(error).toBeInstanceOf(VmscopeError);
    expect(error.code).toBe('UNREADABLE_FILE');
    expect(error.file).toBe(absent);
    const truncated = join(tempDir, 'truncated.lime');
    // A LiME header announcing 1 MiB that the file does not hold.
    const header = Buffer.alloc(32);
    header.writeUInt32LE(0x4c694d45, 0);
    header.writeUInt32LE(1, 4);
    header.writeBigUInt64LE(0n, 8);
    header.writeBigUInt64LE(0xfffffn, 16);
    writeFileSync(truncated, Buffer.concat([header, Buffer.alloc(4096)]));
    const cut = (await pool.searchImage(truncated, [text('x')]).catch((caught: unknown) => caught)) as VmscopeError;
    expect(cut).toBeInstanceOf(VmscopeError);
    expect(cut.code).toBe('TRUNCATED_FILE');
  });

  it('refuses to start without the worker bundle, and a closed pool refuses work', async () => {
    await expect(ScanPool.create({ threads: 1, workerScript: join(tempDir, 'noWorker.js') })).rejects.toThrow(
      /missing \(run npm run build\)/,
    );
    const pool = await ScanPool.create({ threads: 1, workerScript: WORKER_SCRIPT });
    await pool.close();
    await expect(pool.searchImage(WORKER_SCRIPT, [text('x')])).rejects.toThrow(/closed/);
  });

  it('parallelSearchImage runs one search on a pool of its own, even with jobs shorter than the needle', async () => {
    const data = letterFreeBytes(9, 5_000);
    plant(data, crosser, 2_500 - 3);
    const path = join(tempDir, 'once.raw');
    writeFileSync(path, data);
    const hits = await parallelSearchImage(path, [crosser], { threads: 2, jobBytes: 5, workerScript: WORKER_SCRIPT });
    expect(hits).toEqual([{ needle: 0, offset: 2_500 - 3 }]);
  });
});
