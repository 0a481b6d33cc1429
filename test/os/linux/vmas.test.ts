import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executablePath, filelessKind } from '../../../src/os/linux/exe.js';
import { readMemoryRegions, type MemoryRegion } from '../../../src/os/linux/vmas.js';
import { hex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { openLinuxFixture, type LinuxFixture } from '../../support/linuxReaders.js';

/** A region as the truth's /proc/PID/maps rows spell it. */
const asProcMaps = (region: MemoryRegion) => ({
  start: hex(region.start),
  end: hex(region.end),
  perms: region.perms,
  offset: hex(region.offset),
  dev: region.dev,
  inode: region.inode,
  path: region.path,
});

describe("linux61-modern: memory regions and executables against the guest's /proc", () => {
  const expected = truth('linux61-modern') as unknown as {
    maps: Record<string, Array<Record<string, unknown>>>;
    exe: Record<string, string | null>;
    processes: Array<{ pid: number; comm: string }>;
  };
  let fixture: LinuxFixture;
  beforeAll(async () => {
    fixture = await openLinuxFixture('linux61-modern', 'elf');
  });
  afterAll(() => fixture.close());

  it.each(Object.keys(expected.maps).map(Number))(
    'pid %i: regions equal /proc/PID/maps (start, end, perms, offset, dev, inode, path)',
    (pid) => {
      const task = fixture.tasks.find((candidate) => candidate.pid === pid);
      expect(task, `pid ${pid} on the task list`).toBeDefined();
      const { regions, problems } = readMemoryRegions(fixture.reader, task!.mm);
      expect(problems).toEqual([]);
      expect(regions.map(asProcMaps)).toEqual(expected.maps[String(pid)]);
    },
  );

  it('the memfd and the deleted executable are named as the kernel names them', () => {
    const names = (comm: string) =>
      new Set(readMemoryRegions(fixture.reader, fixture.task(comm).mm).regions.map((region) => region.path));
    expect(names('lab_fileless')).toContain('/memfd:lab_payload (deleted)');
    expect(names('lab_deleted')).toContain('/tmp/lab_deleted (deleted)');
    expect(names('lab_injected')).toEqual(new Set(['/bin/labmodern', '', '[heap]', '[stack]', '[vvar]', '[vdso]']));
  });

  it('fileless: exactly the memfd and the deleted executable of the truth, each of its kind', () => {
    const fileless = fixture.tasks.flatMap((task) => {
      const exe = executablePath(fixture.reader, task);
      const kind = exe && filelessKind(exe);
      return kind ? [{ pid: task.pid, comm: task.comm, exe: exe.path, kind }] : [];
    });
    expect(fileless).toEqual(truth('linux61-modern').fileless);
  });

  it('exe equals /proc/PID/exe for every process (none for kernel threads)', () => {
    const listed = new Set(fixture.tasks.map((task) => task.pid));
    for (const pid of Object.keys(expected.exe).map(Number)) expect(listed.has(pid), `pid ${pid} listed`).toBe(true);
    for (const task of fixture.tasks) {
      if (!(String(task.pid) in expected.exe)) continue;
      const exe = executablePath(fixture.reader, task);
      expect(exe?.problems ?? []).toEqual([]);
      expect(exe?.path ?? null, `pid ${task.pid} (${task.comm})`).toBe(expected.exe[String(task.pid)]);
    }
  });
});

describe.each([
  ['linux61-clean', 'elf'],
  ['linux61-rootkit', 'lime'],
  ['linux612-clean', 'elf'],
] as const)('%s (%s): every user process has its executable mapped', (name, format) => {
  let fixture: LinuxFixture;
  beforeAll(async () => {
    fixture = await openLinuxFixture(name, format);
  });
  afterAll(() => fixture.close());

  it('each user process of the truth maps its exe_file executable, and the walk is whole', () => {
    const userPids = (truth(name).processes as Array<{ pid: number; kernel_thread: boolean; in_task_list: boolean }>)
      .filter((process) => !process.kernel_thread && process.in_task_list)
      .map((process) => process.pid);
    expect(userPids.length).toBeGreaterThan(10);
    for (const pid of userPids) {
      const task = fixture.tasks.find((candidate) => candidate.pid === pid);
      expect(task, `pid ${pid} on the task list`).toBeDefined();
      const exe = executablePath(fixture.reader, task!);
      expect(exe?.path, `pid ${pid} has an executable`).toMatch(/^\/\S+$/);
      expect(filelessKind(exe!)).toBeUndefined();
      const { regions, problems } = readMemoryRegions(fixture.reader, task!.mm);
      expect(problems).toEqual([]);
      expect(
        regions.some((region) => region.path === exe!.path && region.perms === 'r-xp'),
        `pid ${pid}: ${exe!.path} mapped r-x`,
      ).toBe(true);
      expect(
        regions
          .filter((region) => region.special)
          .map((region) => region.path)
          .sort(),
      ).toEqual(['[vdso]', '[vvar]']);
    }
  });
});
