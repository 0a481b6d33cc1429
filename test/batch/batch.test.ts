import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { findAnalysis } from '../../src/analyses/registry.js';
import {
  concurrencyFor,
  ESTIMATED_JOB_BYTES,
  runBatchToEnd,
  type BatchOptions,
  type BatchSummary,
} from '../../src/batch/batch.js';
import { expandDumpPaths } from '../../src/batch/inputs.js';
import { inProcessRunner, type DumpJobRunner } from '../../src/batch/jobPool.js';
import { parseDumpResult, runDumpJob, serializeDumpResult, type DumpResult } from '../../src/batch/job.js';
import { main } from '../../src/cli/main.js';
import { render } from '../../src/cli/render.js';
import { dumpFixtures, fixturePath, sharedFixtures, snapshotNames, truth } from '../support/fixtures.js';

/**
 * One batch over every shared fixture in every format (links to the decompressed copies), plus
 * the rootkit snapshot still zstd-compressed and a truncated ELF copy; the runs are shared by
 * the assertions below: jobs 1 (on this thread, counted), the same again (resumed), jobs 2 on
 * worker threads (dist/batchWorker.js, built by `npm test`'s pretest).
 */
const ANALYSES = ['check', 'pslist', 'yarascan'];
const WORKER_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/batchWorker.js');
const work = mkdtempSync(join(tmpdir(), 'vmscope-batch-'));
const dumpsDir = join(work, 'dumps');
const cacheDir = join(work, 'profiles');
const rulesFile = join(work, 'markers.yar');
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Marker {
  kind: string;
  value: string;
}

/** One rule per distinct truth marker (LABMARK tokens, the EICAR string) of every snapshot. */
function writeMarkerRules(): void {
  const values = new Map<string, string>();
  for (const name of snapshotNames())
    for (const marker of truth(name).markers as Marker[]) values.set(marker.value, marker.kind);
  const yaraText = (value: string) => `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`;
  writeFileSync(
    rulesFile,
    [...values]
      .map(([value, kind], i) => `rule ${kind}_${i} { strings: $s = ${yaraText(value)} condition: $s }`)
      .join('\n'),
  );
}

/** A job runner on this thread that counts the jobs it is given: the proof that a rerun does no analysis work. */
function countingRunner(): DumpJobRunner & { jobs: number } {
  const inner = inProcessRunner();
  const runner = {
    concurrency: 1,
    jobs: 0,
    run: (request: Parameters<DumpJobRunner['run']>[0]) => {
      runner.jobs++;
      return inner.run(request);
    },
    close: () => inner.close(),
  };
  return runner;
}

const fixtures = dumpFixtures().map(({ name, format }) => ({
  name,
  format,
  link: join(dumpsDir, `${name}.${format}`),
}));
const compressedRootkit = join(dumpsDir, 'rootkit-copy.lime.zst');
const truncated = join(dumpsDir, 'truncated.elf');

/** The first 32 MiB of an ELF fixture: its program headers promise memory the file no longer holds. */
function writeTruncatedCopy(source: string, target: string): void {
  const buffer = Buffer.alloc(32 * 2 ** 20);
  const input = openSync(source, 'r');
  const output = openSync(target, 'w');
  try {
    writeSync(output, buffer, 0, readSync(input, buffer, 0, buffer.length, 0));
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

const batchOptions = (outDir: string, extra: Partial<BatchOptions> = {}): BatchOptions => ({
  dumps: [dumpsDir],
  analyses: ANALYSES,
  options: { rules: rulesFile },
  outDir,
  cacheDir,
  ...extra,
});
/** What a run leaves in outDir for a dump, by dump path. */
const byPath = (summary: BatchSummary) => new Map(summary.dumps.map((dump) => [dump.path, dump]));
const ndjsonLines = (result: DumpResult) =>
  readFileSync(result.output!, 'utf8')
    .split('\n')
    .filter((line) => line !== '');

let firstRunner: ReturnType<typeof countingRunner>;
let first: BatchSummary;
let yielded: DumpResult[];

beforeAll(async () => {
  mkdirSync(dumpsDir);
  writeMarkerRules();
  for (const fixture of fixtures) symlinkSync(fixturePath(fixture.name, fixture.format), fixture.link);
  symlinkSync(join(sharedFixtures, 'linux61-rootkit.lime.zst'), compressedRootkit);
  writeTruncatedCopy(fixturePath('linux61-clean', 'elf'), truncated);
  writeFileSync(join(dumpsDir, 'notes.txt'), 'not a dump');
  writeFileSync(join(dumpsDir, 'meta.json'), '{}');
  symlinkSync(join(sharedFixtures, 'linux61-clean.kallsyms.txt.zst'), join(dumpsDir, 'clean.kallsyms.txt.zst'));
  firstRunner = countingRunner();
  yielded = [];
  first = await runBatchToEnd(batchOptions(join(work, 'out-1'), { runner: firstRunner }), (result) =>
    yielded.push(result),
  );
}, 300_000);

describe('batch over every shared fixture (check, pslist, yarascan)', () => {
  it('takes the dumps of the directory and nothing else', () => {
    expect(first.dumps.map((dump) => basename(dump.path)).sort()).toEqual(
      [...fixtures.map((fixture) => basename(fixture.link)), 'rootkit-copy.lime.zst', 'truncated.elf'].sort(),
    );
    expect(firstRunner.jobs).toBe(fixtures.length + 2);
    expect(yielded.map((result) => result.path).sort()).toEqual(first.dumps.map((dump) => dump.path));
  });

  it.each(fixtures)(
    '$name ($format): the same rows, in the same order, as each analysis run on its own',
    async ({ link }) => {
      const result = byPath(first).get(link)!;
      expect(result.error).toBeUndefined();
      expect(result.errors).toEqual([]);
      const lines = ndjsonLines(result).map((line) => JSON.parse(line) as Record<string, unknown>);
      const context = new DumpContext(link, { cacheDir });
      try {
        for (const name of ANALYSES) {
          const single = await findAnalysis(name)!.run(
            context,
            name === 'yarascan' ? { rules: rulesFile, threads: 1 } : {},
          );
          const batched = lines
            .filter((line) => line.analysis === name && !('warning' in line) && !('error' in line))
            .map(({ analysis: _analysis, ...row }) => JSON.stringify(row) + '\n');
          expect(batched.join('')).toBe(render(single, 'ndjson'));
          expect(result.counts[name]).toBe(single.rows.length);
          expect(
            lines.filter((line) => line.analysis === name && 'warning' in line).map((line) => line.warning),
          ).toEqual(single.warnings);
        }
      } finally {
        context.close();
      }
      expect(result.kernel?.release).toBe(
        truth(fixtures.find((fixture) => fixture.link === link)!.name).kernel.release,
      );
    },
    120_000,
  );

  it("lists the rootkit's findings (in both its plain and compressed copies), the modern guest's kernel hooks, injected code and fileless processes, and no finding elsewhere", () => {
    const { rootkit } = truth('linux61-rootkit') as unknown as {
      rootkit: {
        hidden_process: { pid: number; comm: string };
        module: { name: string };
        syscall_hook: { index: number; syscall: string };
      };
    };
    const expected = [
      `hidden_module ${rootkit.module.name}`,
      `hidden_process pid ${rootkit.hidden_process.pid} ${rootkit.hidden_process.comm}`,
      `syscall_hook sys_call_table[${rootkit.syscall_hook.index}] ${rootkit.syscall_hook.syscall}`,
    ];
    // linux61-modern's eight kernel techniques, one finding each (tampering.test.ts checks them in
    // detail), its two injected regions and two fileless processes (processContext.test.ts).
    const modernKinds = [
      'bpf_program',
      'cred_escalation',
      'fileless_process',
      'fileless_process',
      'ftrace_hook',
      'idt_hook',
      'injected_code',
      'injected_code',
      'inline_hook',
      'kprobe',
      'netfilter_hook',
      'proc_hook',
    ];
    const modern = fixtures.find((fixture) => fixture.name === 'linux61-modern')!.link;
    for (const dump of first.dumps) {
      const isRootkit = dump.path.includes('rootkit');
      if (dump.path === modern) {
        expect(dump.findings.map((finding) => finding.kind).sort()).toEqual(modernKinds);
        continue;
      }
      expect(dump.findings.map((finding) => `${finding.kind} ${finding.subject}`).sort(), dump.path).toEqual(
        isRootkit ? expected : [],
      );
    }
    const rootkitFindings = first.dumps.filter((dump) => dump.path.includes('rootkit')).map((dump) => dump.findings);
    expect(rootkitFindings).toHaveLength(2);
    expect(rootkitFindings[1]).toEqual(rootkitFindings[0]);
    expect(first.totals.withFindings).toBe(3);
    expect(first.totals.findings).toBe(6 + modernKinds.length);
    // Hits are not findings: every snapshot holds its markers.
    for (const dump of first.dumps.filter((dump) => dump.error === undefined))
      expect(dump.hits, dump.path).toBeGreaterThan(0);
  });

  it('decompresses a compressed dump to a temporary file, deletes it after, and gives the same rows as the plain copy', () => {
    const compressed = byPath(first).get(compressedRootkit)!;
    const plain = byPath(first).get(fixtures.find((fixture) => fixture.name === 'linux61-rootkit')!.link)!;
    expect(ndjsonLines(compressed)).toEqual(ndjsonLines(plain));
    expect(compressed.counts).toEqual(plain.counts);
  });

  it('reports the truncated copy with its error and goes on with the others', () => {
    const broken = byPath(first).get(truncated)!;
    expect(broken.error).toMatch(/truncated\.elf: offset 0x[0-9a-f]+: TRUNCATED_FILE: program header/);
    expect(broken.complete).toBe(true);
    expect(first.totals.failed).toBe(1);
    expect(first.dumps.filter((dump) => dump.error === undefined)).toHaveLength(fixtures.length + 1);
  });

  it('writes summary.json with the same summary, and results that survive JSON (as the queue stores them)', () => {
    const written = JSON.parse(readFileSync(join(work, 'out-1', 'summary.json'), 'utf8')) as BatchSummary;
    expect(written.totals).toEqual(first.totals);
    expect(written.dumps.map((dump) => dump.path)).toEqual(first.dumps.map((dump) => dump.path));
    for (const dump of first.dumps) expect(parseDumpResult(serializeDumpResult(dump))).toEqual(dump);
  });

  it('a rerun does no analysis work: no job reaches the runner, every dump is skipped, no output is rewritten', async () => {
    const outputs = first.dumps
      .filter((dump) => dump.output)
      .map((dump) => [dump.output!, statSync(dump.output!).mtimeMs] as const);
    const runner = countingRunner();
    const again = await runBatchToEnd(batchOptions(join(work, 'out-1'), { runner }));
    expect(runner.jobs).toBe(0);
    expect(again.totals.analysed).toBe(0);
    expect(again.totals.skipped).toBe(first.dumps.length);
    expect(again.dumps.every((dump) => dump.skipped)).toBe(true);
    for (const [output, mtimeMs] of outputs) expect(statSync(output).mtimeMs).toBe(mtimeMs);
    const strip = ({ skipped: _skipped, ...rest }: DumpResult) => rest;
    expect(again.dumps.map(strip)).toEqual(first.dumps);
  });

  it('--jobs 2 on worker threads gives the same results as --jobs 1', async () => {
    const parallel = await runBatchToEnd(batchOptions(join(work, 'out-2'), { jobs: 2, workerScript: WORKER_SCRIPT }));
    expect(parallel.jobs).toBe(2);
    const comparable = ({ seconds: _seconds, output, ...rest }: DumpResult) => ({
      ...rest,
      output: output && basename(output),
    });
    expect(parallel.dumps.map(comparable)).toEqual(first.dumps.map(comparable));
    for (const dump of parallel.dumps.filter((dump) => dump.output))
      expect(ndjsonLines(dump)).toEqual(ndjsonLines(byPath(first).get(dump.path)!));
  }, 300_000);
});

describe('vmscope batch', () => {
  it('exits 1 with a failed dump and writes its summary; exits 2 on usage errors before any work', async () => {
    const outDir = join(work, 'out-cli');
    expect(await main(['batch', truncated, '--run', 'pslist', '--out', outDir, '--no-progress', '--ndjson'])).toBe(1);
    const summary = JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')) as BatchSummary;
    expect(summary.totals).toMatchObject({ dumps: 1, failed: 1 });
    expect(await main(['batch', truncated, '--run', 'types', '--out', outDir])).toBe(2);
    expect(await main(['batch', truncated, '--run', 'pslist', '--out', outDir, '--memory-budget', '1M'])).toBe(2);
  });
});

describe('batch inputs and budgets', () => {
  it('refuses to decompress a dump larger than its temporary-space budget, without writing anything', async () => {
    const tempDir = join(work, 'temp');
    mkdirSync(tempDir, { recursive: true });
    const result = await runDumpJob({
      path: compressedRootkit,
      analyses: ['pslist'],
      outDir: join(work, 'out-budget'),
      cacheDir,
      tempBudget: { directory: tempDir, bytes: 64 * 2 ** 20 },
    });
    expect(result.error).toMatch(/USAGE: decompressed, this dump needs 537133120 bytes of temporary space/);
    expect(result.output).toBeNull();
    expect(readdirSync(tempDir)).toEqual([]);
  });

  it('finds dumps by magic or name in directories, skipping other files and the output directory', () => {
    const found = expandDumpPaths([dumpsDir, truncated], join(dumpsDir, 'out')).map((path) => basename(path));
    expect(found).not.toContain('notes.txt');
    expect(found).not.toContain('meta.json');
    expect(found).not.toContain('clean.kallsyms.txt.zst');
    expect(found.filter((name) => name === 'truncated.elf')).toHaveLength(1);
  });

  it('never runs more jobs than the memory budget holds, and refuses a budget below one job', () => {
    expect(concurrencyFor(4, 10 * ESTIMATED_JOB_BYTES)).toBe(4);
    expect(concurrencyFor(4, 2.5 * ESTIMATED_JOB_BYTES)).toBe(2);
    expect(() => concurrencyFor(1, ESTIMATED_JOB_BYTES / 2)).toThrow(/cannot hold one dump job/);
  });

  it('refuses unknown analyses and yarascan without rules before any work', async () => {
    await expect(
      runBatchToEnd({ dumps: [dumpsDir], analyses: ['nonesuch'], outDir: join(work, 'out-usage') }),
    ).rejects.toThrow(/unknown analysis "nonesuch"/);
    await expect(
      runBatchToEnd({ dumps: [dumpsDir], analyses: ['yarascan'], outDir: join(work, 'out-usage') }),
    ).rejects.toThrow(/needs --rules/);
  });
});
