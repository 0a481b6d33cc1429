import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { readerProvider } from '../../src/analyses/providers/kernel.js';
import { taskListProvider } from '../../src/analyses/providers/processes.js';
import { MultiNeedleSearcher } from '../../src/kernels/multiNeedle.js';
import { decodeTableReference } from '../../src/kernels/pageTables.js';
import { MODULES_END, MODULES_VADDR, START_KERNEL_MAP } from '../../src/os/linux/layout.js';
import { processAddressSpace } from '../../src/os/linux/processSpace.js';
import { userHalfEnd } from '../../src/os/linux/reverseMap.js';
import { X86AddressSpace, type MappingRun } from '../../src/space/x86.js';
import { bigintMappings } from '../support/bigintWalk.js';
import { dumpFixtures, fixturePath } from '../support/fixtures.js';

const { name, format } = dumpFixtures().find((fixture) => fixture.name === 'linux61-clean') ?? dumpFixtures()[0]!;
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-pagewalk-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** The half itself and bounds inside it that cut runs in the middle, off page boundaries. */
function boundsWithin(from: bigint, to: bigint, runs: readonly MappingRun[]): Array<[bigint, bigint]> {
  const bounds: Array<[bigint, bigint]> = [[from, to]];
  for (const [a, b] of [
    [0, runs.length - 1],
    [runs.length >> 2, (3 * runs.length) >> 2],
    [runs.length >> 1, runs.length >> 1],
  ] as const) {
    const first = runs[a]!;
    const last = runs[b]!;
    bounds.push([first.virtual + BigInt(first.length >> 1) + 0x17n, last.virtual + BigInt(last.length >> 1) + 0x1001n]);
    bounds.push([first.virtual, last.virtual + BigInt(last.length)]);
  }
  return bounds;
}

describe(`the kernel-decoded page walk in ${name} (${format})`, () => {
  let context: DumpContext;
  let spaces: Array<{ label: string; space: X86AddressSpace }>;

  beforeAll(async () => {
    context = new DumpContext(fixturePath(name, format), { cacheDir });
    const list = { ...(await context.get(taskListProvider)), reader: await context.get(readerProvider) };
    const users = list.tasks.filter((task) => !task.kernelThread && task.mm !== 0n);
    spaces = [
      { label: 'kernel', space: context.kernel.space },
      ...users.map((task) => ({
        label: `pid ${task.pid} ${task.comm}`,
        space: processAddressSpace(context.kernel, list.reader, task.mm),
      })),
    ];
    expect(users.length).toBeGreaterThan(10);
  }, 120_000);
  afterAll(() => context.close());

  it('maps every user process and the kernel to exactly the runs of the BigInt walk, whatever the bounds', () => {
    let runCount = 0;
    const compare = (label: string, space: X86AddressSpace, from: bigint, to: bigint) => {
      const runs = [...space.mappings(from, to)];
      expect(runs, `${label} [0x${from.toString(16)}, 0x${to.toString(16)})`).toEqual([
        ...bigintMappings(space, from, to),
      ]);
      runCount += runs.length;
    };
    for (const { label, space } of spaces) {
      // A process's upper half is the kernel's own mapping: walked once, for the kernel.
      const [from, to] = label === 'kernel' ? [userHalfEnd(space), 1n << 64n] : [0n, userHalfEnd(space)];
      const runs = [...bigintMappings(space, from, to)];
      expect(runs.length, label).toBeGreaterThan(0);
      for (const [start, end] of boundsWithin(from, to, runs)) compare(label, space, start, end);
    }
    const kernel = context.kernel.space;
    compare('kernel', kernel, 0n, 1n << 64n);
    compare('kernel', kernel, START_KERNEL_MAP, MODULES_VADDR);
    compare('kernel', kernel, MODULES_VADDR, MODULES_END);
    console.log(`${name}: ${spaces.length} spaces, ${runCount} runs compared`);
  }, 120_000);

  it('walks the same with the pure-TS table decoder', () => {
    for (const { label, space } of spaces) {
      const reference = new X86AddressSpace(space.image, space.dtb, space.levels, decodeTableReference);
      const [from, to] = label === 'kernel' ? [0n, 1n << 64n] : [0n, userHalfEnd(space)];
      expect([...reference.mappings(from, to)], label).toEqual([...space.mappings(from, to)]);
    }
  });

  it('gives the same runs when walks are interleaved with each other and with scans', () => {
    const [first, second] = [spaces[1]!.space, spaces[2]!.space];
    const [to1, to2] = [userHalfEnd(first), userHalfEnd(second)];
    const expected = [[...first.mappings(0n, to1)], [...second.mappings(0n, to2)]];
    const walks = [first.mappings(0n, to1), second.mappings(0n, to2)];
    const got: MappingRun[][] = [[], []];
    const searcher = MultiNeedleSearcher.create([new TextEncoder().encode('ELF')]);
    const haystack = new TextEncoder().encode('..ELF..'.repeat(1000));
    const scanned = searcher.searchBuffer(haystack);
    let done = 0;
    for (let step = 0; done < 2; step++) {
      done = 0;
      for (const [i, walk] of walks.entries()) {
        const next = walk.next();
        if (next.done) done++;
        else got[i]!.push(next.value);
      }
      if (step % 7 === 0) expect(searcher.searchBuffer(haystack)).toEqual(scanned);
    }
    expect(got).toEqual(expected);
    // A walk from inside a scan (a stream filled through page tables) leaves the scan whole.
    const walkingStream = {
      start: 0,
      length: haystack.length,
      fill: (offset: number, into: Uint8Array) => {
        expect([...first.mappings(0n, to1)]).toEqual(expected[0]);
        into.set(haystack.subarray(offset, offset + into.length));
      },
    };
    expect(searcher.searchStreams([walkingStream])).toEqual(scanned);
  });
});
