import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { MultiNeedleSearcher, type NeedleHit } from '../../src/kernels/multiNeedle.js';
import type { KernelReader } from '../../src/os/linux/kernelReader.js';
import { processAddressSpace } from '../../src/os/linux/processSpace.js';
import {
  attributeHits,
  buildReverseMap,
  kernelImageSections,
  userHalfEnd,
  type AttributedHit,
  type ReverseMap,
} from '../../src/os/linux/reverseMap.js';
import type { TaskInfo } from '../../src/os/linux/tasks.js';
import { scanProcessVirtual } from '../../src/os/linux/virtualScan.js';
import { X86AddressSpace } from '../../src/space/x86.js';
import { OverlayImage } from '../support/overlay.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';
import { physicallySplitBoundary } from '../support/pages.js';

interface Marker {
  kind: string;
  value: string;
  holder_pid: number;
  holder_comm: string;
}

const PAGE = 4096;
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-attribution-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** One dump per snapshot (the first format it has). */
const snapshots = snapshotNames().map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

const ownerLabel = (row: AttributedHit<NeedleHit>) => (row.owner === 'process' ? `${row.pid} ${row.comm}` : row.owner);

describe.each(snapshots)('attribution in $name ($format)', ({ name, format }) => {
  const markers = truth(name).markers as Marker[];
  const needles = markers.map((marker) => new TextEncoder().encode(marker.value));
  let context: DumpContext;
  let reader: KernelReader;
  let users: TaskInfo[];
  let reverseMap: ReverseMap;
  let rows: AttributedHit<NeedleHit>[];

  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    const list = { ...(await context.get(taskListProvider)), reader: await context.get(readerProvider) };
    reader = list.reader;
    users = list.tasks.filter((task) => !task.kernelThread && task.mm !== 0n);
    const started = performance.now();
    reverseMap = buildReverseMap(context.kernel, reader, list.tasks);
    const built = performance.now();
    rows = attributeHits(reverseMap, MultiNeedleSearcher.create(needles).searchImage(context.image));
    console.log(
      `${name}: reverse map of ${users.length} processes, ${reverseMap.runCount} runs, built in ${(built - started).toFixed(0)} ms; ` +
        `physical scan + attribution ${(performance.now() - built).toFixed(0)} ms`,
    );
  }, 120_000);
  afterAll(() => context.close());

  const spaceOf = (pid: number) =>
    processAddressSpace(context.kernel, reader, users.find((task) => task.pid === pid)!.mm);

  it('the reverse map has walked every user process without a problem', () => {
    expect(reverseMap.problems).toEqual([]);
    expect(users.length).toBeGreaterThan(10);
  });

  it("the kernel's image sections are where the guest's /proc/iomem put Kernel code, rodata, data and bss", async () => {
    const iomem = (truth(name).layout as unknown as { iomem: string[] }).iomem
      .map((line) => /^\s*([0-9a-f]+)-([0-9a-f]+) : Kernel (code|rodata|data|bss)$/.exec(line))
      .filter((match) => match !== null)
      .map((match) => ({ physical: parseInt(match[1]!, 16), end: parseInt(match[2]!, 16) + 1 }));
    expect(iomem).toHaveLength(4);
    expect(kernelImageSections(context.kernel, await context.profile())).toEqual(iomem);
  });

  it.each(markers.map((marker, index) => ({ ...marker, index })))(
    'the physical scan finds the $kind marker and attributes a hit to its holder (pid $holder_pid, $holder_comm)',
    ({ index, holder_pid, holder_comm, kind }) => {
      const found = rows.filter((row) => row.hit.needle === index);
      expect(found.length).toBeGreaterThan(0);
      const summary = found.map(
        (row) =>
          `0x${row.physical.toString(16)} ${ownerLabel(row)}${row.owner === 'process' ? ` @0x${row.virtual.toString(16)}` : ''}`,
      );
      console.log(`${name} ${kind}: ${found.length} attributed rows: ${summary.join('; ')}`);
      expect(found.some((row) => row.owner === 'process' && row.pid === holder_pid && row.comm === holder_comm)).toBe(
        true,
      );
      // Markers live in user memory, page cache, slab and freed pages: never in the kernel's own sections.
      expect(found.filter((row) => row.owner === 'kernel')).toEqual([]);
      // The holder's comm is what pslist says for that pid.
      expect(users.find((task) => task.pid === holder_pid)?.comm).toBe(holder_comm);
    },
  );

  it.each(markers.map((marker, index) => ({ ...marker, index })))(
    'the virtual scan of $holder_comm finds the $kind marker where one of its attributed physical hits is',
    ({ index, holder_pid }) => {
      const space = spaceOf(holder_pid);
      const started = performance.now();
      const hits = scanProcessVirtual(space, needles);
      console.log(
        `${name}: virtual scan of pid ${holder_pid} in ${(performance.now() - started).toFixed(0)} ms, ${hits.length} hits`,
      );
      const attributed = new Set(
        rows.flatMap((row) =>
          row.hit.needle === index && row.owner === 'process' && row.pid === holder_pid
            ? [`${row.physical}@${row.virtual}`]
            : [],
        ),
      );
      const virtualHits = hits.filter((hit) => hit.needle === index);
      expect(virtualHits.length).toBeGreaterThan(0);
      const agreeing = virtualHits.filter((hit) =>
        attributed.has(`${space.translate(hit.virtual).physical}@${hit.virtual}`),
      );
      expect(agreeing.length).toBeGreaterThan(0);
      // Every virtual hit reads back as the marker through the process's own tables.
      for (const hit of virtualHits) {
        const bytes = new Uint8Array(needles[index]!.length);
        space.read(hit.virtual, bytes);
        expect(bytes).toEqual(needles[index]);
      }
    },
  );

  it('a virtual scan through a 64 KiB window finds exactly what one through the default window does (hits across chunk edges included)', () => {
    const holder = markers[0]!.holder_pid;
    const frequent = [
      needles[0]!,
      new TextEncoder().encode('lab_'),
      new TextEncoder().encode('\x7fELF'),
      new Uint8Array(12),
    ];
    const whole = scanProcessVirtual(spaceOf(holder), frequent);
    const chunked = scanProcessVirtual(spaceOf(holder), frequent, { windowBytes: 64 * 1024 });
    expect(new Set(whole.map((hit) => hit.needle))).toEqual(new Set([0, 1, 2, 3]));
    expect(chunked).toEqual(whole);
  });

  it('a page several processes map is listed once per process, each at the address that process maps it', () => {
    let widest: { physical: number; holders: number } = { physical: -1, holders: 0 };
    for (const task of users) {
      const space = processAddressSpace(context.kernel, reader, task.mm);
      for (const run of space.mappings(0n, userHalfEnd(space))) {
        for (let physical = run.physical; physical < run.physical + run.length; physical += PAGE) {
          const holders = reverseMap.lookup(physical).length;
          if (holders > widest.holders) widest = { physical, holders };
        }
      }
    }
    const mappings = reverseMap.lookup(widest.physical + 0x123);
    console.log(`${name}: physical 0x${widest.physical.toString(16)} is mapped by ${mappings.length} processes`);
    expect(new Set(mappings.map((mapping) => mapping.pid)).size).toBeGreaterThan(1);
    for (const { pid, virtual } of mappings)
      expect(spaceOf(pid).translate(virtual).physical).toBe(widest.physical + 0x123);
  });

  it('a string planted across two virtual pages that are not physically adjacent is found by the virtual scan only', () => {
    const holder = users.find((task) => task.comm === 'lab_longargs') ?? users[0]!;
    const space = processAddressSpace(context.kernel, reader, holder.mm);
    const boundary = physicallySplitBoundary(space);
    expect(boundary, `pid ${holder.pid} has no virtually contiguous, physically split pages`).toBeDefined();
    const secondPage = boundary!;
    const needle = randomBytes(32);
    const overlay = new OverlayImage(context.image);
    const overlaySpace = new X86AddressSpace(overlay, space.dtb, space.levels);
    overlay.patchVirtual(overlaySpace, secondPage - 16n, needle);

    const virtualHits = scanProcessVirtual(overlaySpace, [needle]);
    expect(virtualHits).toEqual([{ needle: 0, virtual: secondPage - 16n }]);

    const halves = [needle.subarray(0, 16), needle.subarray(16)];
    const physicalHits = MultiNeedleSearcher.create([needle, ...halves]).searchImage(overlay);
    console.log(
      `${name}: planted across 0x${(secondPage - 16n).toString(16)} in pid ${holder.pid} ${holder.comm} ` +
        `(frames 0x${overlaySpace.translate(secondPage - 1n).physical.toString(16)} | 0x${overlaySpace.translate(secondPage).physical.toString(16)})`,
    );
    // Both halves are in physical memory, each in its own frame, but never side by side.
    expect(physicalHits.filter((hit) => hit.needle === 0)).toEqual([]);
    expect(physicalHits.filter((hit) => hit.needle === 1).map((hit) => hit.offset)).toEqual([
      overlaySpace.translate(secondPage - 16n).physical,
    ]);
    expect(physicalHits.filter((hit) => hit.needle === 2).map((hit) => hit.offset)).toEqual([
      overlaySpace.translate(secondPage).physical,
    ]);
  }, 60_000);

  it('every user process finds itself in the reverse map at the virtual addresses it maps', () => {
    for (const task of users) {
      const space = processAddressSpace(context.kernel, reader, task.mm);
      const runs = [...space.mappings(0n, userHalfEnd(space))];
      expect(runs.length, `pid ${task.pid}`).toBeGreaterThan(0);
      const samples = [runs[0]!, runs[runs.length >> 1]!, runs[runs.length - 1]!].flatMap((run) => [
        run.virtual,
        run.virtual + BigInt(run.length) - 0x11n,
      ]);
      for (const virtual of samples) {
        const { physical } = space.translate(virtual);
        expect(reverseMap.lookup(physical), `pid ${task.pid} 0x${virtual.toString(16)}`).toContainEqual({
          pid: task.pid,
          comm: task.comm,
          virtual,
        });
      }
    }
  });
});
