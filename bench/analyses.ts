/**
 * The integrity analyses end to end, each set run in a fresh (cold) Node process as a user runs
 * the CLI, with the profile derived from the dump (no cache) and then loaded from the profile
 * cache: pslist + psscan + psxview + syscalls + hidden-modules on one dump, then the kernel
 * tampering analyses with `check`, and `check` alone with all its finding kinds, on a 512 MiB
 * guest carrying every technique (target for `check`: under 2 s and 512 MiB, cached profile), and the
 * process-state analyses (sockstat, maps of every process, malfind, lsof) there. Prints wall time, peak RSS,
 * and, as the baseline measured in the same run, the time to read the whole dump once.
 * Usage: node dist/bench/analyses.js [dump] [tampering dump] (defaults: the linux61-rootkit LiME
 * and linux61-modern ELF fixtures).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DumpContext } from '../src/analyses/context.js';
import { findAnalysis } from '../src/analyses/registry.js';
import { openImage } from '../src/image/open.js';
import { fixturePath } from '../test/support/fixtures.js';
import { seconds } from './support/timing.js';

const CORE_ANALYSES = ['pslist', 'psscan', 'psxview', 'syscalls', 'hidden-modules'];
const TAMPERING_ANALYSES = [
  'ftrace',
  'kprobes',
  'bpf',
  'netfilter',
  'kernel-text',
  'idt',
  'proc-hooks',
  'creds',
  'dmesg',
  'check',
];
/** What each process holds and talks to, over every process (hidden ones included). */
const PROCESS_STATE_ANALYSES = ['sockstat', 'maps', 'malfind', 'lsof'];
/** The budget for `check` with every finding kind, with a cached profile. */
const TARGET_SECONDS = 2;
const TARGET_RSS_MIB = 512;

interface ChildReport {
  seconds: number;
  maxRssMiB: number;
  rows: Record<string, number>;
  /** Seconds each analysis took after those before it (providers they share are computed once, by the first). */
  split: Record<string, number>;
}

async function runInThisProcess(
  path: string,
  cacheDir: string | false,
  analyses: readonly string[],
): Promise<ChildReport> {
  const started = process.hrtime.bigint();
  const context = new DumpContext(path, { cacheDir });
  const rows: Record<string, number> = {};
  const split: Record<string, number> = {};
  for (const name of analyses) {
    const analysis = findAnalysis(name);
    if (!analysis) throw new Error(`no analysis ${name}`);
    const before = process.hrtime.bigint();
    rows[name] = (await analysis.run(context, {})).rows.length;
    split[name] = Number((process.hrtime.bigint() - before) / 1_000_000n) / 1000;
  }
  context.close();
  return {
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    rows,
    split,
  };
}

function runCold(path: string, cacheDir: string | false, analyses: readonly string[]): ChildReport {
  const child = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--child', path, cacheDir || '', analyses.join(',')],
    { encoding: 'utf8' },
  );
  if (child.status !== 0) throw new Error(`child failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as ChildReport;
}

function readWholeDump(path: string): number {
  const image = openImage(path);
  const chunk = new Uint8Array(4 << 20);
  const elapsed = seconds(() => {
    for (const range of image.ranges)
      for (let at = range.start; at < range.end; at += chunk.length)
        image.readPresent(at, chunk.subarray(0, Math.min(chunk.length, range.end - at)));
  });
  image.close();
  return elapsed;
}

/** One set of analyses on one dump: derived profile, then cached; returns the cached run. */
function benchSet(path: string, analyses: readonly string[]): ChildReport {
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-bench-profiles-'));
  readWholeDump(path); // into the page cache
  const baseline = readWholeDump(path);
  const derived = runCold(path, false, analyses);
  runCold(path, cacheDir, analyses); // fills the cache
  const cached = runCold(path, cacheDir, analyses);
  rmSync(cacheDir, { recursive: true, force: true });
  console.log(`${path}: ${analyses.join(' + ')} in a cold process`);
  console.log(`  baseline: read the whole dump once       ${baseline.toFixed(3)} s`);
  for (const [label, report] of [
    ['profile derived from the dump', derived],
    ['profile from the cache       ', cached],
  ] as const) {
    console.log(
      `  ${label}  ${report.seconds.toFixed(3)} s  (×${(report.seconds / baseline).toFixed(1)} the read)  peak RSS ${report.maxRssMiB.toFixed(0)} MiB  rows ${JSON.stringify(report.rows)}`,
    );
    console.log(`    seconds per analysis, in order: ${JSON.stringify(report.split)}`);
  }
  return cached;
}

if (process.argv[2] === '--child') {
  const report = await runInThisProcess(process.argv[3]!, process.argv[4] || false, process.argv[5]!.split(','));
  process.stdout.write(JSON.stringify(report));
} else {
  benchSet(process.argv[2] ?? fixturePath('linux61-rootkit', 'lime'), CORE_ANALYSES);
  const tamperingDump = process.argv[3] ?? fixturePath('linux61-modern', 'elf');
  benchSet(tamperingDump, TAMPERING_ANALYSES);
  benchSet(tamperingDump, PROCESS_STATE_ANALYSES);
  const check = benchSet(tamperingDump, ['check']);
  const met = check.seconds < TARGET_SECONDS && check.maxRssMiB < TARGET_RSS_MIB;
  console.log(
    `  check (all finding kinds) with a cached profile: ${check.seconds.toFixed(3)} s, ${check.maxRssMiB.toFixed(0)} MiB: ${met ? 'within' : 'OVER'} the target of ${TARGET_SECONDS} s and ${TARGET_RSS_MIB} MiB`,
  );
}
