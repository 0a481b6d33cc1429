/**
 * Every capture format of one paused guest against its raw file: the time of `check` (profile
 * taken from a warm cache, so the comparison is reading memory, not deriving types), of a one-
 * string scan of all physical memory on two threads (the scan pool, as yarascan runs it), and the
 * peak RSS, each format in a fresh Node process. AVML is measured with its LiME twin (the
 * linux61-rootkit fixture) as the baseline. Targets (issue 18): check on kdump or migration within
 * 1.5x of raw; a compressed format scanned at >= 1 GB/s of guest memory on two threads.
 * Usage: node dist/bench/formats.js   (boots the fixtures' guest once when the capture is not cached)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DumpContext } from '../src/analyses/context.js';
import { findAnalysis } from '../src/analyses/registry.js';
import { openImage } from '../src/image/open.js';
import { parallelSearchImage } from '../src/workers/scanPool.js';
import { fixturePath } from '../test/support/fixtures.js';
import { formatCapture } from '../test/support/formatCapture.js';

interface ChildReport {
  format: string;
  checkSeconds: number;
  checkRows: number;
  scanSeconds: number;
  scanHits: number;
  guestBytes: number;
  maxRssMiB: number;
}

const NEEDLE = new TextEncoder().encode('LABMARK-7f3a9c');
/** Run from dist/bench: the pool's thread script is the bundle's dist/scanWorker.js. */
const WORKER_SCRIPT = new URL('../scanWorker.js', import.meta.url);

async function measure(path: string, cacheDir: string): Promise<ChildReport> {
  const image = openImage(path);
  const format = image.format + (image.details?.layout === 'flattened' ? ' (flattened)' : '');
  const guestBytes = image.totalBytes;
  image.close();
  let started = process.hrtime.bigint();
  const context = new DumpContext(path, { cacheDir });
  const rows = (await findAnalysis('check')!.run(context, {})).rows.length;
  context.close();
  const checkSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  started = process.hrtime.bigint();
  const hits = await parallelSearchImage(path, [NEEDLE], { threads: 2, workerScript: WORKER_SCRIPT });
  const scanSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    format,
    checkSeconds,
    checkRows: rows,
    scanSeconds,
    scanHits: hits.length,
    guestBytes,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

function runCold(path: string, cacheDir: string): ChildReport {
  const result = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', path, cacheDir], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (result.status !== 0) throw new Error(`measuring ${path} failed: ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as ChildReport;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--one') {
    console.log(JSON.stringify(await measure(process.argv[3]!, process.argv[4]!)));
    return;
  }
  const capture = await formatCapture();
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-bench-formats-'));
  try {
    const groups: Array<{ baseline: string; others: string[] }> = [
      {
        baseline: capture.raw,
        others: [
          capture.elf,
          ...(capture.kdumpZlib ? [capture.kdumpZlib] : []),
          ...Object.values(capture.kdumpFlat),
          capture.migration,
        ],
      },
      { baseline: fixturePath('linux61-rootkit', 'lime'), others: [fixturePath('linux61-rootkit', 'avml')] },
    ];
    for (const { baseline, others } of groups) {
      runCold(baseline, cacheDir); // derives the profile into the cache: every measured run then loads it
      const base = runCold(baseline, cacheDir);
      console.log(
        `\nbaseline ${base.format}: check ${base.checkSeconds.toFixed(2)} s, scan ${base.scanSeconds.toFixed(2)} s (${(base.guestBytes / base.scanSeconds / 1e9).toFixed(2)} GB/s), peak RSS ${base.maxRssMiB.toFixed(0)} MiB`,
      );
      console.log('format                 check      vs base  scan (2 threads)   GB/s  vs base  peak RSS  rows hits');
      for (const path of others) {
        const report = runCold(path, cacheDir);
        console.log(
          `${report.format.padEnd(22)} ${report.checkSeconds.toFixed(2).padStart(6)} s  ${(report.checkSeconds / base.checkSeconds).toFixed(2).padStart(6)}x  ` +
            `${report.scanSeconds.toFixed(2).padStart(10)} s  ${(report.guestBytes / report.scanSeconds / 1e9).toFixed(2).padStart(10)}  ${(report.scanSeconds / base.scanSeconds).toFixed(2).padStart(6)}x  ` +
            `${report.maxRssMiB.toFixed(0).padStart(5)} MiB  ${String(report.checkRows).padStart(4)} ${String(report.scanHits).padStart(4)}`,
        );
        if (report.checkRows !== base.checkRows)
          console.log(`  !! ${path}: ${report.checkRows} check rows, the baseline has ${base.checkRows}`);
      }
    }
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

await main();
