import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { checkAnalysis } from '../../src/analyses/check.js';
import { DumpContext } from '../../src/analyses/context.js';
import { moduleListProvider } from '../../src/analyses/providers/modules.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { registerAnalysis } from '../../src/analyses/registry.js';
import { defineAnalysis, option, type Analysis } from '../../src/analyses/types.js';
import { yarascanAnalysis } from '../../src/analyses/yarascan.js';
import { runBatchToEnd } from '../../src/batch/batch.js';
import { inProcessRunner } from '../../src/batch/jobPool.js';
import { enqueueBatch, runWorker, waitForBatch } from '../../src/batch/queue.js';
import { main } from '../../src/cli/main.js';
import { summarizeSnapshot } from '../../src/monitor/summarize.js';
import { fixturePath, truth } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';

/**
 * The analysis model: providers computed once per context whoever asks, analyses composing
 * through typed provider results, and an analysis defined anywhere runnable everywhere
 * (CLI, batch, queue) from its declaration alone.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-model-'));
const cacheDir = join(work, 'profiles');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('providers are computed once per context, whoever asks', () => {
  it('check + yarascan (physical and --all-processes) + a summary with rules: each kernel object once', async () => {
    const rules = join(work, 'marker.yar');
    const marker = (truth('linux61-rootkit').markers as Array<{ kind: string; value: string }>).find(
      (entry) => entry.kind === 'labmark',
    )!;
    writeFileSync(rules, `rule labmark { strings: $m = "${marker.value}" condition: $m }`);
    const context = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir });
    try {
      const check = await checkAnalysis.run(context);
      expect(check.rows.map((row) => row.kind).sort()).toEqual(['hidden_module', 'hidden_process', 'syscall_hook']);
      await yarascanAnalysis.run(context, { rules, allProcesses: true });
      await yarascanAnalysis.run(context, { rules, threads: 1 });
      await summarizeSnapshot(context, { rulesFiles: [rules] });
      const counts = Object.fromEntries(context.computations);
      for (const provider of [
        'profile',
        'reader',
        'task list',
        'carved tasks',
        'pid namespace',
        'process cross-view',
        'module list',
        'hidden module search',
        'syscall tables',
        'every process',
        'reverse map',
      ]) {
        expect(counts[provider], provider).toBe(1);
      }
    } finally {
      context.close();
    }
  });

  it('check prints each warning once, however many providers report it', async () => {
    const base = new DumpContext(fixturePath('linux61-clean', 'raw'), { cacheDir });
    try {
      const reader = await base.get(readerProvider);
      expect((await base.get(moduleListProvider)).warnings).toEqual([]);
      // A module list whose head points into unmapped memory: the list walk, the hidden-module
      // search and the syscall owners all start from that list.
      const context = new OverlayContext(base);
      context.patchKernelU64(reader.profile.requireSymbol('modules'), 0xffffffffc7000000n);
      const result = await checkAnalysis.run(context);
      expect(result.partial).toBe(true);
      expect(result.warnings.length).toBeGreaterThan(0);
      expect(new Set(result.warnings).size).toBe(result.warnings.length);
      expect(result.warnings.some((warning) => warning.startsWith('module list:'))).toBe(true);
    } finally {
      base.close();
    }
  });

  it('an analysis asking for a provider it did not declare fails at once', async () => {
    const sneaky = defineAnalysis({
      name: 'sneaky',
      description: 'reads the task list undeclared',
      columns: [],
      uses: [readerProvider],
      compute: async (inputs) => {
        await inputs.get(taskListProvider);
        return { columns: [], rows: [], single: false, partial: false, warnings: [] };
      },
    });
    const context = new DumpContext(fixturePath('linux61-clean', 'raw'), { cacheDir });
    try {
      await expect(sneaky.run(context)).rejects.toThrow(/without declaring it/);
    } finally {
      context.close();
    }
  });
});

describe('check composes typed provider results, never rows', () => {
  it("check's sources import no other analysis: a renamed column cannot reach a finding", () => {
    // Findings are built in findings.ts and its siblings named *Findings.ts, from providers only.
    const findingModule = (name: string) => name === 'findings' || name.endsWith('Findings');
    const findingFiles = readdirSync(join(repoRoot, 'src/analyses')).filter((file) =>
      findingModule(file.replace(/\.ts$/, '')),
    );
    for (const file of ['check.ts', ...findingFiles]) {
      const source = readFileSync(join(repoRoot, 'src/analyses', file), 'utf8');
      const imports = [...source.matchAll(/from '\.\/([\w/]+)\.js'/g)].map((match) => match[1]!);
      for (const imported of imports)
        expect(
          imported.startsWith('providers/') ||
            imported === 'types' ||
            imported === 'context' ||
            findingModule(imported),
          `${file} imports ./${imported}`,
        ).toBe(true);
    }
    // Every provider check uses is a provider (has compute), none an analysis (has columns).
    for (const used of checkAnalysis.uses) expect('columns' in used).toBe(false);
  });
});

/** A new analysis, as a library user or a plugin would add it: one definition and a registry line. */
const userTasks: Analysis = defineAnalysis({
  name: 'test-user-tasks',
  description: 'user processes above a pid (an analysis defined by a test)',
  columns: [
    { key: 'pid', kind: 'int', title: 'PID' },
    { key: 'comm', kind: 'text', title: 'Command' },
  ],
  uses: [taskListProvider],
  options: z.object({
    abovePid: option(z.coerce.number().int().min(0), { description: 'only pids above this', placeholder: 'pid' }),
  }),
  async compute(inputs, options) {
    const { tasks, warnings } = await inputs.get(taskListProvider);
    const rows = tasks
      .filter((task) => !task.kernelThread && task.pid > options.abovePid)
      .map((task) => ({ pid: task.pid, comm: task.comm }));
    return { columns: this.columns, rows, single: false, partial: false, warnings };
  },
});

describe('a new analysis runs everywhere from its declaration', () => {
  const dump = () => fixturePath('linux61-clean', 'elf');
  const expectedPids = () =>
    (truth('linux61-clean').processes as Array<{ pid: number; kernel_thread: boolean; in_task_list?: boolean }>)
      .filter((process) => !process.kernel_thread && process.pid > 100)
      .map((process) => process.pid)
      .sort((a, b) => a - b);

  beforeAll(() => registerAnalysis(userTasks));

  it('from the CLI, with its generated flag validated', async () => {
    let printed = '';
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((printed += String(chunk)), true));
    try {
      expect(await main(['test-user-tasks', dump(), '--above-pid', '100', '--json', '--cache-dir', cacheDir])).toBe(0);
    } finally {
      write.mockRestore();
    }
    expect((JSON.parse(printed) as Array<{ pid: number }>).map((row) => row.pid).sort((a, b) => a - b)).toEqual(
      expectedPids(),
    );
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['test-user-tasks', dump(), '--above-pid', 'many'])).toBe(2);
    } finally {
      stderr.mockRestore();
    }
  });

  it('in batch --run', async () => {
    const outDir = join(work, 'batch');
    const summary = await runBatchToEnd({
      dumps: [dump()],
      analyses: ['test-user-tasks'],
      options: { abovePid: 100, rules: 'unused.yar' },
      outDir,
      cacheDir,
    });
    const [result] = summary.dumps;
    expect(result!.errors).toEqual([]);
    expect(result!.counts['test-user-tasks']).toBe(expectedPids().length);
    expect(summary.options).toEqual({ abovePid: 100 }); // the rules option is no analysis's here: dropped
    const rows = readFileSync(result!.output!, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { analysis: string; pid: number });
    expect(rows.every((row) => row.analysis === 'test-user-tasks')).toBe(true);
  });

  const redisServer = (process.env.PATH ?? '')
    .split(delimiter)
    .map((dir) => join(dir, 'redis-server'))
    .find((path) => existsSync(path));
  it.skipIf(!redisServer)('through the queue (real redis-server, a worker in this process)', async () => {
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as { port: number }).port;
    await new Promise((done) => server.close(done));
    const redis: ChildProcess = spawn(
      redisServer!,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work],
      { stdio: 'ignore' },
    );
    const abort = new AbortController();
    try {
      await new Promise((done) => setTimeout(done, 500));
      const url = `redis://127.0.0.1:${port}/model-test`;
      const outDir = join(work, 'queue');
      const worker = runWorker(url, {
        runner: inProcessRunner(),
        outDir,
        cacheDir,
        signal: abort.signal,
        log: () => {},
      });
      const enqueued = await enqueueBatch(url, [dump()], { analyses: ['test-user-tasks'], options: { abovePid: 100 } });
      const finished = (
        await waitForBatch(
          url,
          enqueued.map((job) => job.jobId),
        )
      )[0]!;
      expect(finished.state).toBe('completed');
      if (finished.state !== 'completed') return;
      expect(finished.value.result.counts['test-user-tasks']).toBe(expectedPids().length);
      expect(readdirSync(outDir).some((name) => name.endsWith('.ndjson'))).toBe(true);
      abort.abort();
      await worker;
    } finally {
      abort.abort();
      redis.kill('SIGKILL');
    }
  });
});
