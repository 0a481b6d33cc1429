import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOpenFiles } from '../../../src/os/linux/files.js';
import { readSockets } from '../../../src/os/linux/sockets.js';
import { readMemoryRegions } from '../../../src/os/linux/vmas.js';
import { openLinuxFixture, readersOver, type LinuxFixture } from '../../support/linuxReaders.js';
import { OverlayContext } from '../../support/overlay.js';

/**
 * Random damage to the real structures of linux61-modern (maple nodes, fd tables, socks):
 * whatever the words become, the readers return (problems, never exceptions) and promptly.
 */
const HANG_GUARD_MS = 2000;
const RUNS = 40;

let base: LinuxFixture;
beforeAll(async () => {
  base = await openLinuxFixture('linux61-modern', 'elf');
});
afterAll(() => base.close());

/** Words a forger would write: small counts, pointers into or near the structures, anything at all. */
function forgedWords(structures: bigint[], size: number) {
  const value = fc.oneof(
    fc.bigInt({ min: 0n, max: 0xffffn }),
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    fc
      .tuple(fc.constantFrom(...structures), fc.integer({ min: -512, max: 512 }))
      .map(([at, delta]) => at + BigInt(delta)),
  );
  const place = fc
    .tuple(fc.constantFrom(...structures), fc.integer({ min: 0, max: size / 8 - 1 }))
    .map(([at, word]) => at + BigInt(word * 8));
  return fc.array(fc.tuple(place, value), { minLength: 1, maxLength: 6 });
}

async function damaged(patches: Array<[bigint, bigint]>): Promise<LinuxFixture> {
  const context = new OverlayContext(base.context);
  for (const [address, value] of patches) context.patchKernelU64(address, BigInt.asUintN(64, value));
  return readersOver(context);
}

function promptly<T>(read: () => T): T {
  const started = performance.now();
  const result = read();
  expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
  return result;
}

describe('readers over randomly damaged linux61-modern structures', () => {
  it('maple tree nodes of lab_injected', async () => {
    const task = base.task('lab_injected');
    const root = base.reader.u64(
      task.mm + base.reader.offset('mm_struct', 'mm_mt') + base.reader.offset('maple_tree', 'ma_root'),
    );
    const rootNode = root & ~0xffn;
    const children = Array.from({ length: 4 }, (_, slot) =>
      base.reader.u64(rootNode + base.reader.offset('maple_arange_64', 'slot') + BigInt(slot * 8)),
    )
      .filter((child) => child > 4096n)
      .map((child) => child & ~0xffn);
    await fc.assert(
      fc.asyncProperty(
        forgedWords([rootNode, ...children], base.reader.profile.sizeOf('maple_node')),
        async (patches) => {
          const fixture = await damaged(patches);
          const { regions } = promptly(() => readMemoryRegions(fixture.reader, task.mm));
          for (const [index, region] of regions.entries()) {
            expect(region.end).toBeGreaterThan(region.start);
            if (index > 0) expect(region.start).toBeGreaterThanOrEqual(regions[index - 1]!.start);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('the fd table and open files of lab_http', async () => {
    const task = base.task('lab_http');
    const files = base.reader.pointerField(task.task, 'task_struct', 'files');
    const fdt = base.reader.pointerField(files, 'files_struct', 'fdt');
    const open = readOpenFiles(base.reader, task).files.map((file) => file.file);
    await fc.assert(
      fc.asyncProperty(forgedWords([files, fdt, ...open], base.reader.profile.sizeOf('fdtable')), async (patches) => {
        const fixture = await damaged(patches);
        const { files: found } = promptly(() => readOpenFiles(fixture.reader, task));
        expect(new Set(found.map((file) => file.fd)).size).toBe(found.length);
      }),
      { numRuns: RUNS },
    );
  });

  it("every socket's sock", async () => {
    const holders = (fixture: LinuxFixture) =>
      fixture.tasks.map((task) => ({ task, ...readOpenFiles(fixture.reader, task) }));
    const socks = readSockets(base.reader, holders(base)).sockets.map((socket) => socket.sock);
    await fc.assert(
      fc.asyncProperty(forgedWords(socks, base.reader.profile.sizeOf('sock')), async (patches) => {
        const fixture = await damaged(patches);
        const { sockets } = promptly(() => readSockets(fixture.reader, holders(fixture)));
        // Sockets held by an fd are found whatever their sock says.
        expect(sockets.filter((socket) => socket.fd !== null).length).toBeGreaterThanOrEqual(socks.length);
      }),
      { numRuns: RUNS },
    );
  });
});
