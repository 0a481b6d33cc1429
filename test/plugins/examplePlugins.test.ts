import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { pluginAnalysis } from '../../src/plugins/analysis.js';
import { runBatchToEnd } from '../../src/batch/batch.js';
import { runDumpJob } from '../../src/batch/job.js';
import { policyPlugins } from '../../src/cli/policyCommand.js';
import { evaluatePolicy, parsePolicy, policyPluginNames } from '../../src/monitor/policy.js';
import { summarizeDump } from '../../src/monitor/summarize.js';
import { loadPluginDirectory, loadPluginFile } from '../../src/plugins/load.js';
import { portablePlugin, registerPluginLoader } from '../../src/plugins/portable.js';
import { fixturePath, repoRoot } from '../support/fixtures.js';
import { plantedCopy } from './plantedCopy.js';
import { materialized } from '../support/rows.js';

const pluginDir = join(repoRoot, 'build', 'plugins');
const cli = join(repoRoot, 'bin', 'vmscope.js');
const STRATUM = 'stratum+tcp://pool.supportxmr.com:3333';
// This thread checks the plugins a batch carries before its job threads run them, as the CLI does.
registerPluginLoader();

/** No fixture holds a miner or a disguised process: they are planted in a copy of linux61-clean. */
describe('example plugins on a planted copy of linux61-clean', () => {
  let copy: { path: string; remove(): void };
  beforeAll(async () => {
    copy = await plantedCopy(fixturePath('linux61-clean', 'raw'), {
      comms: { lab_worker_1: 'kworker/0:1', lab_worker_2: 'sshd', lab_worker_3: 'xmrig' },
      // lab_worker_2 holds a pool URL too, but nothing else about it looks like a miner.
      memory: { lab_worker_3: STRATUM, lab_worker_2: STRATUM },
    });
  }, 120_000);
  afterAll(() => copy?.remove());

  async function findings(plugin: string, dump: string) {
    const context = new DumpContext(dump, { cacheDir: false });
    try {
      return await materialized(pluginAnalysis(loadPluginFile(join(pluginDir, `${plugin}.wasm`))).run(context));
    } finally {
      context.close();
    }
  }

  it('masquerade finds the kernel-thread imitation and the renamed processes, nothing in the original', async () => {
    const result = await findings('masquerade', copy.path);
    expect(result.rows.map((row) => [row['kind'], row['subject']])).toEqual([
      ['kernel_thread_masquerade', 'pid 96 (kworker/0:1)'],
      ['name_mismatch', 'pid 97 (sshd)'],
      ['name_mismatch', 'pid 98 (xmrig)'],
    ]);
    expect(result.rows[0]!['detail']).toContain('exe "/bin/labproc"');
    expect((await findings('masquerade', fixturePath('linux61-clean', 'raw'))).rows).toEqual([]);
  }, 120_000);

  it('cryptominer finds the process that holds a pool URL and is named like a miner, nothing in the original', async () => {
    const result = await findings('cryptominer', copy.path);
    expect(result.rows).toEqual([
      {
        kind: 'cryptominer',
        severity: 'high',
        subject: 'pid 98 (xmrig)',
        detail: expect.stringMatching(/^memory holds stratum\+tcp:\/\/ in .*; it names "xmrig"$/) as string,
        pid: 98,
      },
    ]);
    expect((await findings('cryptominer', fixturePath('linux61-clean', 'raw'))).rows).toEqual([]);
  }, 120_000);

  it('plugin run renders rows as table, JSON and NDJSON like built-ins', () => {
    const run = (...format: string[]) => {
      try {
        execFileSync('node', [cli, 'plugin', 'run', join(pluginDir, 'masquerade.wasm'), copy.path, ...format], {
          encoding: 'utf8',
        });
        throw new Error('findings exit with 1');
      } catch (error) {
        const failed = error as { status: number; stdout: string };
        expect(failed.status).toBe(1);
        return failed.stdout;
      }
    };
    const json = JSON.parse(run('--json')) as Array<Record<string, unknown>>;
    expect(json.map((row) => row['pid'])).toEqual([96, 97, 98]);
    const ndjson = run('--ndjson')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    expect(ndjson).toEqual(json);
    const table = run();
    expect(table.split('\n')[0]).toMatch(/^Kind\s+Severity\s+Subject\s+Owner\s+Detail\s+PID$/);
    expect(table).toContain('kernel_thread_masquerade');
  }, 120_000);

  it('check --plugin adds both plugins’ findings to check’s own', () => {
    let stdout = '';
    try {
      execFileSync('node', [cli, 'check', copy.path, '--plugin', pluginDir, '--json', '--no-cache'], {
        encoding: 'utf8',
      });
    } catch (error) {
      stdout = (error as { stdout: string }).stdout;
    }
    const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
    const subjects = rows.filter((row) =>
      ['cryptominer', 'kernel_thread_masquerade', 'name_mismatch'].includes(row['kind'] as string),
    );
    expect(subjects.map((row) => `${row['kind']} ${row['subject']}`)).toEqual([
      'cryptominer pid 98 (xmrig)',
      'kernel_thread_masquerade pid 96 (kworker/0:1)',
      'name_mismatch pid 97 (sshd)',
      'name_mismatch pid 98 (xmrig)',
    ]);
  }, 300_000);

  it('batch carries the plugins to its job threads: their rows in each NDJSON, their findings in the summary', async () => {
    const out = mkdtempSync(join(tmpdir(), 'vmscope-plugin-batch-'));
    try {
      const portable = loadPluginDirectory(pluginDir).map(portablePlugin);
      const summary = await runBatchToEnd({
        dumps: [copy.path, fixturePath('linux61-clean', 'raw')],
        analyses: ['pslist', ...portable.map((plugin) => plugin.name)],
        portable,
        outDir: out,
        cacheDir: false,
        jobs: 2,
        workerScript: join(repoRoot, 'dist', 'batchWorker.js'),
      });
      const planted = summary.dumps.find((dump) => dump.path === copy.path)!;
      // An analysis that failed is in errors, not counts: its message says why.
      expect(planted.errors).toEqual([]);
      expect(planted.counts).toEqual({ pslist: expect.any(Number) as number, cryptominer: 1, masquerade: 3 });
      expect(planted.findings.map((finding) => `${finding.kind} ${finding.subject}`)).toEqual([
        'cryptominer pid 98 (xmrig)',
        'kernel_thread_masquerade pid 96 (kworker/0:1)',
        'name_mismatch pid 97 (sshd)',
        'name_mismatch pid 98 (xmrig)',
      ]);
      const clean = summary.dumps.find((dump) => dump.path !== copy.path)!;
      expect([clean.counts, clean.findings]).toEqual([
        { pslist: expect.any(Number) as number, cryptominer: 0, masquerade: 0 },
        [],
      ]);
      const lines = readFileSync(planted.output!, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines.filter((line) => line['analysis'] === 'cryptominer')).toEqual([
        { analysis: 'cryptominer', ...(await findings('cryptominer', copy.path)).rows[0] },
      ]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 300_000);

  it('a job whose plugin bytes do not match their hash is refused, naming the plugin', async () => {
    const [plugin] = loadPluginDirectory(pluginDir).map(portablePlugin);
    const tampered = { ...plugin!, sha256: '0'.repeat(64) };
    const out = mkdtempSync(join(tmpdir(), 'vmscope-plugin-job-'));
    try {
      const result = await runDumpJob({
        path: copy.path,
        analyses: [tampered.name],
        portable: [tampered],
        outDir: out,
      });
      expect(result.error).toMatch(
        new RegExp(`INPUT_CHANGED: plugin ${tampered.name}: its bytes hash to [0-9a-f]{64}, the job says 0{64}`),
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('a policy makes plugin findings violations, and says when a named plugin did not run', async () => {
    const policy = parsePolicy(
      'version: 1\nrules:\n  - { id: no-miners, severity: critical, plugin_findings: [cryptominer] }\n',
      'miners.yaml',
    );
    const summary = await summarizeDump(
      copy.path,
      { cacheDir: false },
      { findingAnalyses: policyPlugins(policyPluginNames(policy), pluginDir) },
    );
    expect(summary.analysisFindings?.ran).toEqual(['cryptominer']);
    expect(evaluatePolicy(policy, summary)).toEqual([
      {
        rule: 'no-miners',
        severity: 'critical',
        action: 'alert',
        kind: 'plugin_finding',
        pid: 98,
        name: 'cryptominer:cryptominer',
        comm: null,
        detail: expect.stringMatching(/^plugin cryptominer \(high\): pid 98 \(xmrig\): memory holds stratum/) as string,
      },
    ]);
    const { analysisFindings: _, ...withoutPlugins } = summary;
    expect(evaluatePolicy(policy, withoutPlugins).map((violation) => [violation.kind, violation.name])).toEqual([
      ['not_evaluated', 'cryptominer'],
    ]);
  }, 300_000);
});
