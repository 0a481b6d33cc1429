import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import type { Row } from '../../src/analyses/types.js';
import { yarascan } from '../../src/analyses/yarascan.js';
import { processAddressSpace } from '../../src/os/linux/processSpace.js';
import { X86AddressSpace } from '../../src/space/x86.js';
import { parallelScanRules, parallelSearchNeedles } from '../../src/workers/scanPool.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';
import { physicallySplitBoundary } from '../support/pages.js';
import { materialized } from '../support/rows.js';

interface Marker {
  kind: string;
  value: string;
  holder_pid: number;
  holder_comm: string;
}

const WORKER_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/scanWorker.js');
const work = mkdtempSync(join(tmpdir(), 'vmscope-yarascan-'));
const cacheDir = join(work, 'profiles');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A text string in YARA syntax: backslash and quote escaped, anything else as is (the markers are printable ASCII). */
const yaraText = (value: string) => `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`;
const hexString = (bytes: Uint8Array) => `{ ${Buffer.from(bytes).toString('hex').replace(/(..)/g, '$1 ')}}`;

function writeRules(name: string, rules: ReadonlyArray<{ rule: string; string: string }>): string {
  const path = join(work, `${name}.yar`);
  writeFileSync(
    path,
    rules.map(({ rule, string }) => `rule ${rule} { strings: $s = ${string} condition: $s }`).join('\n'),
  );
  return path;
}

/** One rule per truth marker, named after its kind, built from the truth file. */
function markerRules(name: string): { path: string; markers: Marker[] } {
  const markers = truth(name).markers as Marker[];
  return {
    path: writeRules(
      `${name}-markers`,
      markers.map((marker) => ({ rule: marker.kind, string: yaraText(marker.value) })),
    ),
    markers,
  };
}

const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

describe.each(snapshots)('yarascan on $name ($format)', ({ name, format }) => {
  const { path: rules, markers } = markerRules(name);
  let context: DumpContext;
  let rows: readonly Row[];

  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    const result = await materialized(yarascan(context, { rules, threads: 1 }));
    expect(result.warnings).toEqual([]);
    expect(result.exitCode).toBe(1);
    rows = result.rows;
  }, 120_000);
  afterAll(() => context.close());

  it.each(markers)(
    'matches the $kind marker and attributes a hit to its holder (pid $holder_pid, $holder_comm)',
    ({ kind, value, holder_pid, holder_comm }) => {
      const found = rows.filter((row) => row.rule === kind);
      expect(found.length).toBeGreaterThan(0);
      for (const row of found) expect(row.data).toContain(Buffer.from(value.slice(0, 32)).toString('hex'));
      expect(found.filter((row) => row.owner === 'process').map((row) => `${row.pid} ${row.comm}`)).toContain(
        `${holder_pid} ${holder_comm}`,
      );
    },
  );

  it('--pid scans the holder of the LABMARK token in its virtual memory and finds it where the physical scan placed it', async () => {
    const holder = markers.find((marker) => marker.kind === 'labmark')!;
    const virtual = await materialized(yarascan(context, { rules, pid: holder.holder_pid }));
    expect(virtual.rows.length).toBeGreaterThan(0);
    for (const row of virtual.rows)
      expect([row.pid, row.comm, row.owner]).toEqual([holder.holder_pid, holder.holder_comm, 'process']);
    const physicalOfHolder = (rule: string) =>
      rows
        .filter((row) => row.rule === rule && row.pid === holder.holder_pid)
        .map((row) => `${row.physical} ${row.virtual}`)
        .sort();
    for (const rule of ['labmark', 'eicar']) {
      expect(
        virtual.rows
          .filter((row) => row.rule === rule)
          .map((row) => `${row.physical} ${row.virtual}`)
          .sort(),
        rule,
      ).toEqual(physicalOfHolder(rule));
    }
  }, 60_000);
});

describe('yarascan on linux61-rootkit', () => {
  let context: DumpContext;
  beforeAll(() => {
    context = new DumpContext(fixturePath('linux61-rootkit', 'lime'), { cacheDir });
  });
  afterAll(() => context.close());

  it("attributes hits in a DKOM-hidden process's memory to it (the reverse map includes carved processes)", async () => {
    const hidden = (truth('linux61-rootkit').rootkit as { hidden_process: { pid: number; comm: string } })
      .hidden_process;
    const rules = writeRules('hidden', [{ rule: 'hidden_name', string: yaraText(hidden.comm) }]);
    const { rows } = await materialized(yarascan(context, { rules, threads: 1 }));
    expect(rows.filter((row) => row.owner === 'process').map((row) => row.pid)).toContain(hidden.pid);
    const listed = (await context.get(taskListProvider)).tasks.map((task) => task.pid);
    expect(listed).not.toContain(hidden.pid);
  }, 60_000);

  it('--all-processes scans every process, the hidden one included, each in its own address space', async () => {
    const { markers } = markerRules('linux61-rootkit');
    const hidden = (truth('linux61-rootkit').rootkit as { hidden_process: { pid: number; comm: string } })
      .hidden_process;
    const withHidden = writeRules('all-processes', [
      ...markers.map((marker) => ({ rule: marker.kind, string: yaraText(marker.value) })),
      { rule: 'hidden_name', string: yaraText(hidden.comm) },
    ]);
    const { rows } = await materialized(yarascan(context, { rules: withHidden, allProcesses: true }));
    expect(rows.every((row) => row.owner === 'process' && typeof row.virtual === 'string')).toBe(true);
    for (const marker of markers)
      expect(rows.filter((row) => row.rule === marker.kind).map((row) => row.pid)).toContain(marker.holder_pid);
    expect(rows.filter((row) => row.rule === 'hidden_name').map((row) => row.pid)).toContain(hidden.pid);
  }, 60_000);

  it('gives the same rows on two pool threads as on one (owners found meanwhile, tasks carved on threads too)', async () => {
    const { path: rules } = markerRules('linux61-rootkit');
    const single = await materialized(yarascan(context, { rules, threads: 1 }));
    const pooled = new DumpContext(context.path, {
      cacheDir,
      parallelRuleScan: (request) => parallelScanRules(request, { workerScript: WORKER_SCRIPT }),
      parallelNeedleSearch: (request) => parallelSearchNeedles(request, { workerScript: WORKER_SCRIPT }),
    });
    try {
      const parallel = await materialized(yarascan(pooled, { rules, threads: 2 }));
      expect(parallel.rows).toEqual(single.rows);
      expect(parallel.rows.length).toBeGreaterThan(2);
    } finally {
      pooled.close();
    }
  }, 60_000);
});

describe('a string across two pages that are not physically adjacent', () => {
  it('is found by the virtual scan and not by the physical one', async () => {
    const base = new DumpContext(fixturePath('linux61-clean', 'elf'), { cacheDir });
    try {
      const context = new OverlayContext(base);
      const [reader, { tasks }] = [await context.get(readerProvider), await context.get(taskListProvider)];
      const holder = tasks.find((task) => task.comm === 'lab_longargs')!;
      const space = processAddressSpace(context.kernel, reader, holder.mm);
      const boundary = physicallySplitBoundary(space);
      expect(boundary, `pid ${holder.pid} has no virtually contiguous, physically split pages`).toBeDefined();
      const needle = randomBytes(32);
      context.image.patchVirtual(new X86AddressSpace(context.image, space.dtb, space.levels), boundary! - 16n, needle);
      const rules = writeRules('split', [
        { rule: 'whole', string: hexString(needle) },
        { rule: 'first_half', string: hexString(needle.subarray(0, 16)) },
      ]);

      const physical = await materialized(yarascan(context, { rules, threads: 1 }));
      // The half is there (one row per process mapping its page), the whole never is.
      expect(new Set(physical.rows.map((row) => row.rule))).toEqual(new Set(['first_half']));
      expect(physical.rows.map((row) => `${row.pid} ${row.virtual}`)).toContain(
        `${holder.pid} 0x${(boundary! - 16n).toString(16)}`,
      );
      const virtual = await materialized(yarascan(context, { rules, pid: holder.pid }));
      expect(virtual.rows.map((row) => `${row.rule} ${row.virtual}`)).toEqual([
        `whole 0x${(boundary! - 16n).toString(16)}`,
        `first_half 0x${(boundary! - 16n).toString(16)}`,
      ]);
    } finally {
      base.close();
    }
  }, 60_000);
});

describe('rules with no string to show match as yara reports them', () => {
  it('condition: true, filesize > 0 and not $absent: one row each, in the dump and per process', async () => {
    const rules = join(work, 'stringless.yar');
    writeFileSync(
      rules,
      [
        'rule always { condition: true }',
        'rule sized { condition: filesize > 0 }',
        'rule absent { strings: $a = "zz-never-in-any-dump-zz" condition: not $a }',
        'rule never { condition: false }',
      ].join('\n'),
    );
    const context = new DumpContext(fixturePath('linux61-clean', 'elf'), { cacheDir });
    try {
      const physical = await materialized(yarascan(context, { rules, threads: 1 }));
      expect(physical.rows.map((row) => row.rule).sort()).toEqual(['absent', 'always', 'sized']);
      expect(physical.rows.every((row) => row.string === null && row.owner === 'dump')).toBe(true);
      const holder = (truth('linux61-clean').markers as Array<{ holder_pid: number }>)[0]!.holder_pid;
      const virtual = await materialized(yarascan(context, { rules, pid: holder }));
      expect(virtual.rows.map((row) => [row.rule, row.pid])).toEqual([
        ['always', holder],
        ['sized', holder],
        ['absent', holder],
      ]);
    } finally {
      context.close();
    }
  });
});

describe('a dump replaced while its scan threads read it', () => {
  it.each(['truncated', 'rewritten'])(
    'a %s file is INPUT_CHANGED, never hits from one file attributed with the other',
    async (how) => {
      const copy = join(work, `changing-${how}.lime`);
      const { copyFileSync, truncateSync, utimesSync } = await import('node:fs');
      copyFileSync(fixturePath('linux61-rootkit', 'lime'), copy);
      const rules = join(work, 'changing.yar');
      writeFileSync(rules, 'rule any_elf { strings: $e = { 7f 45 4c 46 02 01 01 } condition: $e }');
      const pooled = new DumpContext(copy, {
        cacheDir,
        parallelRuleScan: (request) => parallelScanRules(request, { workerScript: WORKER_SCRIPT }),
      });
      try {
        if (how === 'truncated') truncateSync(copy, 256 << 20);
        else utimesSync(copy, new Date(), new Date(Date.now() + 60_000));
        const error = (await yarascan(pooled, { rules, threads: 2 }).catch((caught: unknown) => caught)) as {
          code?: string;
        };
        expect(error.code).toBe('INPUT_CHANGED');
      } finally {
        pooled.close();
        rmSync(copy, { force: true });
      }
    },
    120_000,
  );
});
