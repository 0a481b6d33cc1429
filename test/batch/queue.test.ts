import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchSummary } from '../../src/batch/batch.js';
import { outputName } from '../../src/batch/job.js';
import type { DumpJobData, QueuedDumpResult } from '../../src/batch/queue.js';
import { fixturePath } from '../support/fixtures.js';

/**
 * Scale-out on a real BullMQ queue: a real redis-server on a loopback port, two real
 * `vmscope worker` processes and a `vmscope batch --queue --wait`, one worker SIGKILLed while
 * it holds a job. BullMQ's stalled-job check must hand that job to the other worker, and the
 * batch must still end with every dump's result exactly once.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const redisServer = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((dir) => dir !== '')
  .map((dir) => join(dir, 'redis-server'))
  .find((path) => existsSync(path));
if (!redisServer)
  console.warn('test/batch/queue.test.ts: skipped: redis-server is not installed (apt-get install redis-server)');

/** Short enough that the takeover happens within seconds; safe since jobs run on worker threads. */
const LOCK_DURATION_SECONDS = 4;
const STALLED_INTERVAL_SECONDS = 1;

/** One snapshot per format and both kernels: 6.1 (ELF, LiME with the rootkit) and 6.12 (raw). */
const DUMPS = [
  { name: 'linux61-clean', format: 'elf' },
  { name: 'linux61-rootkit', format: 'lime' },
  { name: 'linux612-clean', format: 'raw' },
  { name: 'linux61-t0', format: 'elf' },
] as const;

/** A child process whose stdout lines are kept, and awaited by pattern. */
class Child {
  readonly lines: string[] = [];
  private readonly waiters: Array<{ pattern: RegExp; resolve: (match: RegExpMatchArray) => void }> = [];
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(readonly process: ChildProcess) {
    let pending = '';
    process.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const complete = pending.split('\n');
      pending = complete.pop()!;
      for (const line of complete) this.receive(line);
    });
    process.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolveExit) => process.once('exit', (code) => resolveExit(code)));
  }

  private receive(line: string): void {
    this.lines.push(line);
    for (const waiter of [...this.waiters]) {
      const match = line.match(waiter.pattern);
      if (match) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  }

  /** The first line (already received or to come) matching the pattern. */
  line(pattern: RegExp, timeoutMs = 90_000): Promise<RegExpMatchArray> {
    const seen = this.lines.map((line) => line.match(pattern)).find((match) => match !== null);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolveLine, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no line matching ${pattern} within ${timeoutMs} ms; got:\n${this.lines.join('\n')}\n${this.stderr}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pattern,
        resolve: (match) => {
          clearTimeout(timer);
          resolveLine(match);
        },
      });
    });
  }

  get output(): string {
    return this.lines.join('\n');
  }
}

const children: ChildProcess[] = [];
function vmscope(args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/vmscope.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Child(child);
}

function killAll(signal: NodeJS.Signals): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  const address = server.address();
  await new Promise((resolveClose) => server.close(resolveClose));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe.skipIf(!redisServer)('batch on a BullMQ queue (real redis-server, two workers, one killed)', () => {
  let work = '';
  let outDir = '';
  let env: NodeJS.ProcessEnv = {};
  let redis: ChildProcess | undefined;
  let queueUrl = '';
  let port = 0;
  // Whatever happens to the test, no redis-server or worker outlives it.
  const killOnExit = () => {
    redis?.kill('SIGKILL');
    killAll('SIGKILL');
  };

  beforeAll(async () => {
    process.once('exit', killOnExit);
    work = mkdtempSync(join(tmpdir(), 'vmscope-queue-'));
    outDir = join(work, 'out');
    env = { VMSCOPE_CACHE_DIR: join(work, 'profiles') };
    for (const dump of DUMPS) fixturePath(dump.name, dump.format); // decompress before any clock starts
    port = await freeLoopbackPort();
    queueUrl = `redis://127.0.0.1:${port}/vmscope-test`;
    // No RDB snapshots, no AOF: nothing of the test's Redis outlives it.
    const server = spawn(
      redisServer!,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    redis = server; // skipIf above: redisServer is set here
    await new Child(server).line(/Ready to accept connections/, 20_000);
  });

  afterAll(async () => {
    killAll('SIGKILL');
    if (redis && redis.exitCode === null) {
      const stopped = new Promise((resolveExit) => redis!.once('exit', resolveExit));
      redis.kill('SIGTERM');
      await stopped;
    }
    process.off('exit', killOnExit);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs every dump exactly once although a worker is killed mid-job', async () => {
    const workerArgs = (name: string) => [
      'worker',
      '--queue',
      queueUrl,
      '--out',
      outDir,
      '--name',
      name,
      '--lock-duration',
      String(LOCK_DURATION_SECONDS),
      '--stalled-interval',
      String(STALLED_INTERVAL_SECONDS),
    ];
    const doomed = vmscope(workerArgs('worker-a'), env);
    const survivor = vmscope(workerArgs('worker-b'), env);
    await Promise.all([doomed.line(/^worker worker-a ready/), survivor.line(/^worker worker-b ready/)]);

    const paths = DUMPS.map((dump) => fixturePath(dump.name, dump.format));
    const batchStarted = performance.now();
    const batch = vmscope(
      ['batch', ...paths, '--run', 'check,pslist', '--out', outDir, '--queue', queueUrl, '--wait', '--json'],
      env,
    );

    // Killed as soon as it says it has a job: the job is active under worker-a's lock.
    const [, killedJobId, killedPath] = await doomed.line(/^job (\S+) started (.+) \(attempt 1\)/);
    doomed.process.kill('SIGKILL');
    const killedAt = performance.now();
    await doomed.exited;
    await survivor.line(new RegExp(`^job ${killedJobId} started`));
    const takeoverSeconds = (performance.now() - killedAt) / 1000;

    const code = await batch.exited;
    const batchSeconds = (performance.now() - batchStarted) / 1000;
    expect(batch.stderr).toBe('');
    expect(code).toBe(1); // the rootkit's findings
    console.log(
      `queued batch: ${paths.length} dumps in ${batchSeconds.toFixed(1)} s with 2 workers (one killed); takeover of the stalled job ${takeoverSeconds.toFixed(1)} s after SIGKILL (lock ${LOCK_DURATION_SECONDS} s, stalled check every ${STALLED_INTERVAL_SECONDS} s)`,
    );

    // Every dump's result exactly once, in the printed summary and in summary.json alike.
    const summary = JSON.parse(batch.output) as BatchSummary;
    expect(JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8'))).toEqual(summary);
    expect(summary.dumps.map((dump) => dump.path).sort()).toEqual([...paths].sort());
    expect(summary.totals).toMatchObject({ dumps: 4, analysed: 4, skipped: 0, failed: 0, withFindings: 1 });
    for (const dump of summary.dumps) {
      expect(dump.error).toBeUndefined();
      expect(dump.findings.length > 0).toBe(dump.path === fixturePath('linux61-rootkit', 'lime'));
    }

    // One NDJSON per dump, nothing half-written left by the killed worker; the manifest lets a local rerun skip them.
    const leftovers = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
        entry.isDirectory() ? leftovers(join(dir, entry.name)) : [entry.name],
      );
    expect(leftovers(outDir).sort()).toEqual([...paths.map(outputName), 'manifest.json', 'summary.json'].sort());

    // The killed job was finished by the other worker, once: its stored result names worker-b.
    const queue = new Queue<DumpJobData, QueuedDumpResult>('vmscope-test', { connection: { host: '127.0.0.1', port } });
    try {
      const job = (await queue.getJob(killedJobId!))!;
      expect(await job.getState()).toBe('completed');
      expect(job.returnvalue.worker).toBe('worker-b');
      expect(job.data.path).toBe(killedPath);
    } finally {
      await queue.close();
    }
    expect(survivor.lines.filter((line) => line.startsWith(`job ${killedJobId} done`))).toHaveLength(1);

    // The taken-over dump's rows are the single-dump commands' rows.
    const rows = readFileSync(join(outDir, outputName(killedPath!)), 'utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const analysis of ['check', 'pslist']) {
      const single = spawnSync(
        process.execPath,
        [join(repoRoot, 'bin/vmscope.js'), analysis, killedPath!, '--ndjson'],
        { encoding: 'utf8', env: { ...process.env, ...env } },
      );
      const expected = single.stdout
        .trimEnd()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const batched = rows.filter((row) => row.analysis === analysis).map(({ analysis: _, ...row }) => row);
      expect(batched).toEqual(expected);
    }

    // Enqueueing the same batch again adds no job and runs nothing: the stored results are reused.
    const startedBefore = survivor.lines.filter((line) => / started /.test(line)).length;
    const again = vmscope(
      ['batch', ...paths, '--run', 'check,pslist', '--out', outDir, '--queue', queueUrl, '--wait', '--json'],
      env,
    );
    expect(await again.exited).toBe(1);
    expect((JSON.parse(again.output) as BatchSummary).totals).toMatchObject({ dumps: 4, analysed: 0, skipped: 4 });
    expect(survivor.lines.filter((line) => / started /.test(line)).length).toBe(startedBefore);

    // A local batch into the same --out skips them too: the queued results are in its manifest.
    const local = vmscope(['batch', ...paths, '--run', 'check,pslist', '--out', outDir, '--json'], env);
    expect(await local.exited).toBe(1);
    expect((JSON.parse(local.output) as BatchSummary).totals).toMatchObject({ dumps: 4, analysed: 0, skipped: 4 });

    // SIGTERM: the surviving worker closes gracefully.
    survivor.process.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);
    expect(survivor.output).toMatch(/worker worker-b closed/);
    expect(existsSync(join(outDir, '.vmscope-jobs'))).toBe(false);
  });
});
