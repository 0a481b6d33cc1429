import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executablePath } from '../../../src/os/linux/exe.js';
import { MAX_FDS, readOpenFiles } from '../../../src/os/linux/files.js';
import { MAX_HASH_BUCKETS } from '../../../src/os/linux/socketTables.js';
import { readSockets } from '../../../src/os/linux/sockets.js';
import { readMemoryRegions } from '../../../src/os/linux/vmas.js';
import { hex } from '../../../src/util/hex.js';
import { openLinuxFixture, readersOver, type LinuxFixture } from '../../support/linuxReaders.js';
import { OverlayContext } from '../../support/overlay.js';

/**
 * Guest memory is attacker-controlled: each case forges a few pointers or counts of the real
 * linux61-modern snapshot in memory and checks that the reader finishes promptly (a hang
 * guard, not a speed target), says what went wrong, and still returns what it could read.
 */
const HANG_GUARD_MS = 2000;

let base: LinuxFixture;
beforeAll(async () => {
  base = await openLinuxFixture('linux61-modern', 'elf');
});
afterAll(() => base.close());

const field = (address: bigint, struct: string, name: string) => address + base.reader.offset(struct, name);

/** Readers over a copy of the snapshot with `patches` (virtual address → u64) applied. */
async function forged(patches: Array<[bigint, bigint]>): Promise<LinuxFixture> {
  const context = new OverlayContext(base.context);
  for (const [address, value] of patches) context.patchKernelU64(address, value);
  return readersOver(context);
}

function timed<T>(read: () => T): T {
  const started = performance.now();
  const result = read();
  expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
  return result;
}

function sockets(fixture: LinuxFixture) {
  return readSockets(
    fixture.reader,
    fixture.tasks.map((task) => ({ task, ...readOpenFiles(fixture.reader, task) })),
  );
}

describe('hostile process memory structures in linux61-modern', () => {
  it('a maple tree whose internal node links back to the root: the cycle is cut, the regions before it are kept', async () => {
    const task = base.task('lab_injected');
    const clean = readMemoryRegions(base.reader, task.mm).regions;
    const root = base.reader.u64(field(field(task.mm, 'mm_struct', 'mm_mt'), 'maple_tree', 'ma_root'));
    const node = root & ~0xffn;
    // The root is an internal node (lab_injected has 12 regions): its second child now is the root itself.
    const types = base.reader.profile.types.enums['maple_type']!.constants;
    const rootType = Number((root >> 3n) & 0xfn);
    expect([types['maple_range_64'], types['maple_arange_64']]).toContain(rootType);
    const layout = rootType === types['maple_arange_64'] ? 'maple_arange_64' : 'maple_range_64';
    const secondSlot = node + base.reader.offset(layout, 'slot') + 8n;
    expect(base.reader.u64(secondSlot)).not.toBe(0n);
    const fixture = await forged([[secondSlot, root & ~2n]]);
    const { regions, problems } = timed(() => readMemoryRegions(fixture.reader, task.mm));
    expect(problems).toEqual([
      expect.stringMatching(new RegExp(`^maple tree 0x[0-9a-f]+ reaches node ${hex(node)} twice \\(a cycle\\)`)),
    ]);
    expect(regions.length).toBeGreaterThan(0);
    expect(regions.length).toBeLessThan(clean.length);
    expect(clean.slice(0, regions.length)).toEqual(regions);
  });

  it("a maple leaf holding another process's VMA: that entry is skipped with a problem, the others kept", async () => {
    const task = base.task('lab_http');
    const clean = readMemoryRegions(base.reader, task.mm).regions;
    const root = base.reader.u64(field(field(task.mm, 'mm_struct', 'mm_mt'), 'maple_tree', 'ma_root'));
    // lab_http's few regions fit in one leaf, the root; one of its slots holds the first region's VMA (slot 0 is the gap below it).
    const slots = Array.from(
      { length: 16 },
      (_, index) => (root & ~0xffn) + base.reader.offset('maple_range_64', 'slot') + BigInt(index * 8),
    );
    const first = slots.find((slot) => base.reader.u64(slot) === clean[0]!.vma);
    expect(first).toBeDefined();
    const foreign = readMemoryRegions(base.reader, base.task('lab_dns').mm).regions[0]!.vma;
    const fixture = await forged([[first!, foreign]]);
    const { regions, problems } = timed(() => readMemoryRegions(fixture.reader, task.mm));
    expect(problems).toEqual([
      `vm_area_struct ${hex(foreign)} belongs to mm ${hex(base.task('lab_dns').mm)}, not ${hex(task.mm)}: skipped`,
    ]);
    expect(regions).toEqual(clean.slice(1));
  });

  it('an fd table claiming max_fds 2^31: read up to MAX_FDS, with a problem, the real fds still there', async () => {
    const task = base.task('lab_http');
    const clean = readOpenFiles(base.reader, task).files;
    const fdt = base.reader.pointerField(
      base.reader.pointerField(task.task, 'task_struct', 'files'),
      'files_struct',
      'fdt',
    );
    const maxFds = field(fdt, 'fdtable', 'max_fds');
    // max_fds is a u32 sharing its word with padding: keep the upper half.
    const fixture = await forged([[maxFds, (base.reader.u64(maxFds) & ~0xffffffffn) | (1n << 31n)]]);
    const { files, problems } = timed(() => readOpenFiles(fixture.reader, task));
    expect(problems[0]).toBe(`fd table ${hex(fdt)} claims max_fds ${2 ** 31}; read only the first ${MAX_FDS}`);
    expect(files.slice(0, clean.length)).toEqual(clean);
    // Past the real table the "fds" are whatever memory follows: the walk gives up on them, bounded.
    expect(problems.at(-1)).toMatch(
      /fds point to unreadable files: the table is forged or corrupt, walk stopped$|is unreadable from fd \d+/,
    );
  });

  it('a dentry chain that loops (/bin made a child of /bin/labmodern): paths are cut at the loop, with a problem', async () => {
    const task = base.task('lab_http');
    const exeFile = base.reader.pointerField(task.mm, 'mm_struct', 'exe_file');
    const dentry = base.reader.pointerField(field(exeFile, 'file', 'f_path'), 'path', 'dentry');
    const bin = base.reader.pointerField(dentry, 'dentry', 'd_parent');
    const fixture = await forged([[field(bin, 'dentry', 'd_parent'), dentry]]);
    const exe = timed(() => executablePath(fixture.reader, task))!;
    expect(exe.problems).toEqual([`dentry chain loops back to ${hex(dentry)}: path rebuilt only up to there`]);
    expect(exe.path).toBe('/bin/labmodern');
    const { regions, problems } = timed(() => readMemoryRegions(fixture.reader, task.mm));
    expect(problems).toContain(`dentry chain loops back to ${hex(dentry)}: path rebuilt only up to there`);
    expect(regions).toHaveLength(readMemoryRegions(base.reader, task.mm).regions.length);
  });
});

describe('hostile sockets in linux61-modern', () => {
  const backdoorSock = () => {
    const task = base.task('lab_backdoor');
    const socketFile = readOpenFiles(base.reader, task).files.find((file) => file.fd === 3)!;
    return { task, socketFile, sock: base.reader.pointerField(socketFile.privateData, 'socket', 'sk') };
  };

  it.each([
    [
      'an unmapped address',
      (sock: bigint) => base.context.kernel.pageOffsetBase + (1n << 44n) + (sock & 0xfffn),
      /^sk_prot 0x[0-9a-f]+ is unreadable/,
    ],
    [
      'readable memory that is no struct proto',
      (sock: bigint) => sock + 0x1000n,
      /^sk_prot 0x[0-9a-f]+ does not point to a struct proto/,
    ],
  ] as const)(
    'sk_prot pointing to %s: a problem on the row, every other field still read',
    async (_, target, problem) => {
      const { sock } = backdoorSock();
      const clean = sockets(base).sockets;
      const fixture = await forged([[field(sock, 'sock_common', 'skc_prot'), target(sock)]]);
      const result = timed(() => sockets(fixture));
      const row = result.sockets.find((socket) => socket.sock === sock)!;
      expect(row.problems).toEqual([expect.stringMatching(problem)]);
      expect(row).toMatchObject({
        protocolName: null,
        pid: 120,
        fd: 3,
        proto: 'tcp',
        localAddress: '0.0.0.0',
        localPort: 4444,
        state: 'LISTEN',
        inode: 10870,
      });
      expect(result.sockets.filter((socket) => socket.sock !== sock)).toEqual(
        clean.filter((socket) => socket.sock !== sock),
      );
    },
  );

  it('a socket no fd table holds any more still appears, from the listening hash, without a pid', async () => {
    const { task, sock } = backdoorSock();
    const fdt = base.reader.pointerField(
      base.reader.pointerField(task.task, 'task_struct', 'files'),
      'files_struct',
      'fdt',
    );
    const slot = base.reader.pointerField(fdt, 'fdtable', 'fd') + 3n * 8n;
    const fixture = await forged([[slot, 0n]]);
    const row = timed(() => sockets(fixture)).sockets.find((socket) => socket.sock === sock)!;
    expect(row).toMatchObject({
      pid: null,
      comm: null,
      fd: null,
      localPort: 4444,
      state: 'LISTEN',
      inode: 10870,
      sources: ['tcp_bound', 'tcp_listening'],
    });
  });

  it('tcp_hashinfo claiming 2^32 established buckets, its ehash array unreadable: problems, every other table still walked', async () => {
    const hashinfo = base.reader.profile.requireSymbol('tcp_hashinfo');
    const mask = field(hashinfo, 'inet_hashinfo', 'ehash_mask');
    const fixture = await forged([[mask, base.reader.u64(mask) | 0xffffffffn]]);
    const result = timed(() => sockets(fixture));
    expect(result.problems[0]).toBe(
      `tcp_hashinfo (tcp_established) claims ${2 ** 32} buckets; read only the first ${MAX_HASH_BUCKETS}`,
    );
    expect(result.problems.at(-1)).toMatch(
      /^tcp_hashinfo \(tcp_established\): 16 chains are broken, the table is forged or corrupt: walk stopped at bucket \d+$|^tcp_hashinfo \(tcp_established\) buckets at 0x[0-9a-f]+ are unreadable from bucket \d+/,
    );
    expect(result.sockets.map((socket) => socket.sock).sort()).toEqual(
      sockets(base)
        .sockets.map((socket) => socket.sock)
        .sort(),
    );

    const nowhere = base.context.kernel.pageOffsetBase + (1n << 44n);
    const unreadable = await forged([[field(hashinfo, 'inet_hashinfo', 'ehash'), nowhere]]);
    const partial = timed(() => sockets(unreadable));
    expect(partial.problems).toEqual([
      expect.stringMatching(
        new RegExp(`^tcp_hashinfo \\(tcp_established\\) buckets at ${hex(nowhere)} are unreadable from bucket 0`),
      ),
    ]);
    expect(partial.sockets.find((socket) => socket.localPort === 4444)!.sources).toEqual([
      'fd',
      'tcp_bound',
      'tcp_listening',
    ]);
    expect(partial.sockets.find((socket) => socket.comm === 'lab_beacon')!.sources).toEqual(['fd', 'tcp_bound']);
  });

  it('an established-hash chain looping on itself: cut, reported, every socket still found', async () => {
    const beacon = sockets(base).sockets.find((socket) => socket.comm === 'lab_beacon')!;
    const link = field(beacon.sock, 'sock_common', 'skc_nulls_node');
    const fixture = await forged([[link, link]]);
    const result = timed(() => sockets(fixture));
    expect(result.problems).toEqual([
      expect.stringMatching(
        new RegExp(`^tcp_hashinfo \\(tcp_established\\) chain at 0x[0-9a-f]+ loops back to ${hex(link)}`),
      ),
    ]);
    expect(result.sockets.map((socket) => socket.sock).sort()).toEqual(
      sockets(base)
        .sockets.map((socket) => socket.sock)
        .sort(),
    );
  });
});
