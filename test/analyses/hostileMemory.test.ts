import { spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { analyses } from '../../src/analyses/registry.js';
import { fixturePath, truth } from '../support/fixtures.js';

/**
 * The hostile-memory suite: every analysis, in one process (a batch), over copies of a real
 * snapshot whose guest-controlled structures were rewritten the way an intruder could. Each run
 * must end in bounded time with a peak RSS under 512 MiB, no internal error, and findings that
 * were there before still there.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-hostile-memory-'));
const cacheDir = join(work, 'profiles');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const RSS_LIMIT_KIB = 512 * 1024;
const SPRAYED_TASKS = 3000;
/** Seconds per GiB of dump for the whole batch of analyses: generous for a loaded 2-core machine. */
const SECONDS_PER_GIB = 240;

/** Page-table entry bits: present, writable, user, accessed, dirty; PS for a large page. */
const TABLE_FLAGS = 0x67n;
const PS = 0x80n;

interface Mutation {
  readonly name: string;
  /** Physical address → u64 to write there (the raw file's offset is the physical address). */
  readonly writes: ReadonlyMap<number, bigint>;
}

let mutations: Mutation[] = [];
const source = () => fixturePath('linux61-clean', 'raw');

beforeAll(async () => {
  const context = new DumpContext(source(), { cacheDir });
  try {
    const reader = await context.get(readerProvider);
    const { tasks } = await context.get(taskListProvider);
    const victim = tasks.find((task) => !task.kernelThread && task.mm !== 0n)!;
    const pgdVirtual = reader.pointerField(victim.mm, 'mm_struct', 'pgd');
    const pgd = context.kernel.space.translate(pgdVirtual).physical;
    // (a) 254 entries of a process's top table pointing back at the table itself.
    const selfReference = new Map<number, bigint>();
    for (let index = 1; index < 255; index++) selfReference.set(pgd + index * 8, BigInt(pgd) | TABLE_FLAGS);
    // (b) the whole user half aliasing one PDPT of 512 1 GiB pages, written into the last page of RAM.
    const pdpt = context.image.totalBytes - 0x1000;
    const alias = new Map<number, bigint>();
    for (let index = 0; index < 512; index++) alias.set(pdpt + index * 8, (BigInt(index) << 30n) | TABLE_FLAGS | PS);
    for (let index = 0; index < 256; index++) alias.set(pgd + index * 8, BigInt(pdpt) | TABLE_FLAGS);
    // (c) 3000 copies of a real task_struct sprayed into free (all-zero) memory, as any process
    // can fill its heap with such bytes: carving finds them all, nothing may multiply with them.
    const taskBytes = reader.profile.sizeOf('task_struct');
    const original = new Uint8Array(taskBytes);
    context.kernel.space.read(victim.task, original);
    const words = new DataView(original.buffer);
    const spray = new Map<number, bigint>();
    const span = Math.ceil((taskBytes + 64) / 0x1000) * 0x1000;
    const page = new Uint8Array(span);
    for (
      let at = 64 << 20;
      at + span <= context.image.totalBytes && spray.size < SPRAYED_TASKS * (taskBytes / 8);
      at += span
    ) {
      context.image.read(at, page);
      if (page.some((byte) => byte !== 0)) continue;
      for (let offset = 0; offset + 8 <= taskBytes; offset += 8)
        spray.set(at + 64 + offset, words.getBigUint64(offset, true));
    }
    expect(spray.size).toBe(SPRAYED_TASKS * (taskBytes / 8));
    mutations = [
      { name: 'PGD entries pointing at their own table', writes: selfReference },
      { name: 'every user PGD entry aliasing one PDPT of 1 GiB pages', writes: alias },
      { name: `${SPRAYED_TASKS} task_structs sprayed into free memory`, writes: spray },
    ];
  } finally {
    context.close();
  }
});

function mutatedCopy(mutation: Mutation): string {
  const path = join(work, `${mutation.name.replace(/\W+/g, '-')}.raw`);
  copyFileSync(source(), path);
  const fd = openSync(path, 'r+');
  try {
    const word = Buffer.alloc(8);
    for (const [physical, value] of mutation.writes) {
      word.writeBigUInt64LE(value);
      writeSync(fd, word, 0, 8, physical);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

describe('every analysis over hostile copies of linux61-clean', () => {
  const everyAnalysis = analyses.filter((analysis) => analysis.arguments.length === 0).map((analysis) => analysis.name);
  const rules = join(work, 'marker.yar');
  beforeAll(() => {
    const marker = (truth('linux61-clean').markers as Array<{ kind: string; value: string }>).find(
      (entry) => entry.kind === 'labmark',
    )!;
    writeFileSync(rules, `rule labmark { strings: $m = "${marker.value}" condition: $m }`);
  });

  it.each([0, 1, 2])('mutation %i: bounded time and memory, no internal error, warnings saying why', (index) => {
    const mutation = mutations[index]!;
    const dump = mutatedCopy(mutation);
    const out = join(work, `out-${index}`);
    const result = spawnSync(
      '/usr/bin/time',
      [
        '-f',
        '%M %e',
        process.execPath,
        join(repoRoot, 'bin/vmscope.js'),
        'batch',
        dump,
        '--run',
        everyAnalysis.join(','),
        '--rules',
        rules,
        '--out',
        out,
        '--json',
        '--no-progress',
        '--cache-dir',
        cacheDir,
      ],
      { encoding: 'utf8', timeout: 20 * 60_000 },
    );
    const [rssKib, seconds] = result.stderr.trim().split('\n').at(-1)!.split(' ').map(Number) as [number, number];
    console.log(`${mutation.name}: peak RSS ${Math.round(rssKib / 1024)} MiB, ${seconds} s`);
    expect(result.status, result.stderr).toBeLessThanOrEqual(1);
    expect(rssKib).toBeLessThan(RSS_LIMIT_KIB);
    expect(seconds).toBeLessThan(SECONDS_PER_GIB / 2); // a 512 MiB dump
    const summary = JSON.parse(result.stdout) as { dumps: Array<{ errors: string[]; error?: string; output: string }> };
    const [dumpResult] = summary.dumps;
    expect(dumpResult!.error).toBeUndefined();
    expect(dumpResult!.errors.filter((error) => /INTERNAL/.test(error))).toEqual([]);
    const lines = readFileSync(dumpResult!.output, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    // The marker is still found and attributed, and the walk says what it skipped.
    expect(lines.some((line) => line.analysis === 'yarascan' && line.comm === 'lab_secret')).toBe(true);
    if (index < 2)
      expect(lines.some((line) => typeof line.warning === 'string' && /a second time/.test(line.warning))).toBe(true);
    else {
      // Every copy is carved; none is a hidden process (its links were never its own), and the
      // copies naming one mm are walked once.
      expect(lines.filter((line) => line.analysis === 'psscan').length).toBeGreaterThan(SPRAYED_TASKS);
      expect(lines.filter((line) => line.analysis === 'check' && line.kind === 'hidden_process')).toEqual([]);
      expect(
        lines.some((line) => typeof line.warning === 'string' && /name an mm another task has/.test(line.warning)),
      ).toBe(true);
    }
  });
});
