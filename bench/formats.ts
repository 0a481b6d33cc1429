/**
 * Every capture format of one paused guest against its raw file: the time of `check` as the CLI
 * runs it (profile taken from a warm cache, so the comparison is reading memory, not deriving
 * types; a decoded dump's carving pass on search threads, as carvedTasksProvider decides), of a one-
 * string scan of all physical memory on two threads (the scan pool, as yarascan runs it), and the
 * peak RSS, each format in a fresh Node process. The scan's GB/s is that of a started pool: the
 * threads' start (loading the worker bundle and the WASM kernels, the same for every format) is
 * printed on its own, and a second scan on the same pool shows what the first one paid once per
 * thread (loading the decoders, the JIT's warm-up, first writes to fresh buffers). CPU seconds
 * (all threads) are printed beside the wall times: on a shared machine they show what the format
 * costs when the wall clock mostly shows the other load. AVML is measured with its LiME twin (the
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
import { parallelSearchNeedles, ScanPool } from '../src/workers/scanPool.js';
import { fixturePath } from '../test/support/fixtures.js';
import { formatCapture } from '../test/support/formatCapture.js';

interface ChildReport {
  format: string;
  checkSeconds: number;
  checkCpuSeconds: number;
  checkRows: number;
  poolStartSeconds: number;
  scanSeconds: number;
  scanCpuSeconds: number;
  /** A second scan on the same pool: what the first pass paid once per thread is the difference. */
  warmScanSeconds: number;
  warmScanCpuSeconds: number;
  scanHits: number;
  guestBytes: number;
  maxRssMiB: number;
}

const NEEDLE = new TextEncoder().encode('LABMARK-7f3a9c');
/**
 * Runs of each format; the fastest is kept (see main). Five: with three, a slow spell of the
 * shared machine over one format's rounds decided a ratio (kdump 1.52x in one of eight runs whose
 * other seven gave 1.08-1.38x, while 15 back-to-back pairs gave a median of 1.19x).
 */
const ROUNDS = 5;
/** Run from dist/bench: the pool's thread script is the bundle's dist/scanWorker.js. */
const WORKER_SCRIPT = new URL('../scanWorker.js', import.meta.url);

async function measure(path: string, cacheDir: string): Promise<ChildReport> {
  let format = '';
  let guestBytes = 0;
  const check = await timed(async () => {
    // As the CLI runs it: a decoded dump's carving pass goes to search threads (carvedTasksProvider).
    // The dump is opened once, by the check: opening a kdump starts its inflate-ahead thread.
    const context = new DumpContext(path, {
      cacheDir,
      parallelNeedleSearch: (request) => parallelSearchNeedles(request, { workerScript: WORKER_SCRIPT }),
    });
    const rows = (await findAnalysis('check')!.run(context, {})).rows.length;
    const { image } = context;
    format = image.format + (image.details?.layout === 'flattened' ? ' (flattened)' : '');
    guestBytes = image.totalBytes;
    context.close();
    return rows;
  });
  const pool = await timed(() => ScanPool.create({ threads: 2, workerScript: WORKER_SCRIPT }));
  try {
    const scan = await timed(() => pool.value.searchImage(path, [NEEDLE]));
    const warmScan = await timed(() => pool.value.searchImage(path, [NEEDLE]));
    if (warmScan.value.length !== scan.value.length)
      throw new Error(`${path}: the second scan found ${warmScan.value.length} hits, the first ${scan.value.length}`);
    return {
      format,
      checkSeconds: check.seconds,
      checkCpuSeconds: check.cpuSeconds,
      checkRows: check.value,
      poolStartSeconds: pool.seconds,
      scanSeconds: scan.seconds,
      scanCpuSeconds: scan.cpuSeconds,
      warmScanSeconds: warmScan.seconds,
      warmScanCpuSeconds: warmScan.cpuSeconds,
      scanHits: scan.value.length,
      guestBytes,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    await pool.value.close();
  }
}

/** Wall and CPU seconds (every thread of the process) of `work`. */
async function timed<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number; cpuSeconds: number }> {
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const value = await work();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  return { value, seconds, cpuSeconds: (used.user + used.system) / 1e6 };
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
    const targetLines: string[] = [];
    for (const { baseline, others } of groups) {
      runCold(baseline, cacheDir); // derives the profile into the cache: every measured run then loads it
      const reports = new Map<string, ChildReport>();
      // Rounds alternate the formats, and each keeps its fastest round: the other sessions' load comes and goes.
      for (let round = 0; round < ROUNDS; round++) {
        for (const path of [baseline, ...others]) {
          const report = runCold(path, cacheDir);
          const best = reports.get(path);
          reports.set(path, {
            ...report,
            checkSeconds: Math.min(report.checkSeconds, best?.checkSeconds ?? Infinity),
            checkCpuSeconds: Math.min(report.checkCpuSeconds, best?.checkCpuSeconds ?? Infinity),
            poolStartSeconds: Math.min(report.poolStartSeconds, best?.poolStartSeconds ?? Infinity),
            scanSeconds: Math.min(report.scanSeconds, best?.scanSeconds ?? Infinity),
            scanCpuSeconds: Math.min(report.scanCpuSeconds, best?.scanCpuSeconds ?? Infinity),
            warmScanSeconds: Math.min(report.warmScanSeconds, best?.warmScanSeconds ?? Infinity),
            warmScanCpuSeconds: Math.min(report.warmScanCpuSeconds, best?.warmScanCpuSeconds ?? Infinity),
            maxRssMiB: Math.max(report.maxRssMiB, best?.maxRssMiB ?? 0),
          });
        }
      }
      const base = reports.get(baseline)!;
      console.log(
        '\nformat               check s (cpu)  vs base (cpu)   pool start  scan s (cpu)  GB/s  vs base  2nd scan s (cpu)  GB/s  peak RSS  rows hits',
      );
      for (const path of [baseline, ...others]) {
        const report = reports.get(path)!;
        const ratio = (mine: number, theirs: number): string => `${(mine / theirs).toFixed(2)}x`;
        console.log(
          [
            report.format.padEnd(20),
            `${report.checkSeconds.toFixed(2).padStart(6)} (${report.checkCpuSeconds.toFixed(2).padStart(5)})`,
            `${ratio(report.checkSeconds, base.checkSeconds).padStart(6)} (${ratio(report.checkCpuSeconds, base.checkCpuSeconds)})`,
            `${report.poolStartSeconds.toFixed(2).padStart(9)} s`,
            `${report.scanSeconds.toFixed(2).padStart(6)} (${report.scanCpuSeconds.toFixed(2).padStart(4)})`,
            (report.guestBytes / report.scanSeconds / 1e9).toFixed(2).padStart(5),
            ratio(report.scanSeconds, base.scanSeconds).padStart(7),
            `${report.warmScanSeconds.toFixed(2).padStart(10)} (${report.warmScanCpuSeconds.toFixed(2).padStart(4)})`,
            (report.guestBytes / report.warmScanSeconds / 1e9).toFixed(2).padStart(5),
            `${report.maxRssMiB.toFixed(0).padStart(5)} MiB`,
            `${String(report.checkRows).padStart(4)} ${String(report.scanHits).padStart(4)}`,
          ].join('  '),
        );
        if (path !== baseline) targetLines.push(...targets(report, base));
        if (report.checkRows !== base.checkRows || report.scanHits !== base.scanHits)
          console.log(
            `  !! ${path}: ${report.checkRows} check rows and ${report.scanHits} hits, the baseline ${base.checkRows} and ${base.scanHits}`,
          );
      }
    }
    console.log(`\ntargets (issue 18):\n${targetLines.join('\n')}`);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

/** Check within 1.5x of raw for kdump and migration; every compressed format scanned at >= 1 GB/s. */
function targets(report: ChildReport, base: ChildReport): string[] {
  const verdict = (met: boolean) => (met ? 'met' : 'NOT met');
  const lines: string[] = [];
  if (/^(kdump|migration)/.test(report.format)) {
    const ratio = report.checkSeconds / base.checkSeconds;
    lines.push(`  check ${report.format}: ${ratio.toFixed(2)}x raw (target <= 1.5x: ${verdict(ratio <= 1.5)})`);
  }
  if (report.format !== 'elf') {
    const rate = report.guestBytes / report.scanSeconds / 1e9;
    lines.push(`  scan ${report.format}: ${rate.toFixed(2)} GB/s (target >= 1 GB/s: ${verdict(rate >= 1)})`);
  }
  return lines;
}

await main();
