import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEnvironment } from '../../../src/os/linux/environment.js';
import { readOpenFiles } from '../../../src/os/linux/files.js';
import { findSuspiciousRegions } from '../../../src/os/linux/malfind.js';
import { readSockets, type SocketRecord } from '../../../src/os/linux/sockets.js';
import { readMemoryRegions } from '../../../src/os/linux/vmas.js';
import { hex, parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { openLinuxFixture, type LinuxFixture } from '../../support/linuxReaders.js';

interface TruthSocket {
  pid: number;
  comm: string;
  proto: string;
  local_addr: string;
  local_port: number;
  remote_addr: string;
  remote_port: number;
  state: string;
  inode: number;
  fd: number;
  in_proc_net: boolean;
}
interface TruthInjected {
  pid: number;
  comm: string;
  start: string;
  end: string;
  perms: string;
  marker: string;
  marker_offset: number;
  code_hex: string;
}
const modern = truth('linux61-modern') as unknown as {
  sockets: TruthSocket[];
  fds: Record<string, Record<string, string>>;
  environ: Record<string, string[]>;
  injected: TruthInjected[];
};

/** A socket in the truth's words. */
const asTruth = (socket: SocketRecord) => ({
  pid: socket.pid,
  comm: socket.comm,
  proto: socket.proto,
  local_addr: socket.localAddress,
  local_port: socket.localPort,
  remote_addr: socket.remoteAddress,
  remote_port: socket.remotePort,
  state: socket.state,
  inode: socket.inode,
  fd: socket.fd,
});
const byPidAndFd = (a: { pid: number | null; fd: number | null }, b: { pid: number | null; fd: number | null }) =>
  a.pid! - b.pid! || a.fd! - b.fd!;

function allSockets(fixture: LinuxFixture) {
  const holders = fixture.tasks.map((task) => ({ task, ...readOpenFiles(fixture.reader, task) }));
  return readSockets(fixture.reader, holders);
}

function allSuspiciousRegions(fixture: LinuxFixture) {
  return fixture.tasks
    .filter((task) => !task.kernelThread)
    .flatMap((task) => {
      const found = findSuspiciousRegions(
        fixture.context.kernel,
        fixture.reader,
        task,
        readMemoryRegions(fixture.reader, task.mm).regions,
      );
      expect(found.problems).toEqual([]);
      return found.regions;
    });
}

describe("linux61-modern: what each process holds, against the guest's /proc", () => {
  let fixture: LinuxFixture;
  beforeAll(async () => {
    fixture = await openLinuxFixture('linux61-modern', 'elf');
  });
  afterAll(() => fixture.close());

  it('sockets: every truth socket, and no other, with pid, fd, proto, addresses, ports, state and inode', () => {
    const { sockets, problems } = allSockets(fixture);
    expect(problems).toEqual([]);
    expect(sockets.flatMap((socket) => socket.problems)).toEqual([]);
    const expected = modern.sockets.map(
      ({ pid, comm, proto, local_addr, local_port, remote_addr, remote_port, state, inode, fd }) => ({
        pid,
        comm,
        proto,
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        state,
        inode,
        fd,
      }),
    );
    expect(sockets.map(asTruth).sort(byPidAndFd)).toEqual(expected.sort(byPidAndFd));
    // The lab runs in the initial network namespace.
    const initNet = fixture.reader.profile.requireSymbol('init_net');
    const initNamespace = fixture.reader.u32(
      initNet + fixture.reader.offset('net', 'ns') + fixture.reader.offset('ns_common', 'inum'),
    );
    expect(initNamespace).toBeGreaterThan(0);
    expect(new Set(sockets.map((socket) => socket.netns))).toEqual(new Set([initNamespace]));
  });

  it("sockets: the listener on 4444 that /proc/net/tcp hides is in the kernel's listening hash as well as lab_backdoor's fd table", () => {
    const hidden = modern.sockets.filter((socket) => !socket.in_proc_net);
    expect(hidden.map((socket) => socket.local_port)).toEqual([4444]);
    const found = allSockets(fixture).sockets.find((socket) => socket.localPort === 4444)!;
    expect(found).toMatchObject({
      comm: 'lab_backdoor',
      state: 'LISTEN',
      protocolName: 'TCP',
      inode: hidden[0]!.inode,
    });
    expect(found.sources).toEqual(expect.arrayContaining(['fd', 'tcp_listening']));
  });

  it('sockets: the IPv6 listener is printed as ip prints it', () => {
    expect(allSockets(fixture).sockets.find((socket) => socket.proto === 'tcp6')).toMatchObject({
      family: 'AF_INET6',
      localAddress: '::',
      localPort: 8443,
      protocolName: 'TCPv6',
    });
  });

  it.each(Object.keys(modern.fds).map(Number))('fds of pid %i equal /proc/PID/fd, socket inodes included', (pid) => {
    const task = fixture.tasks.find((candidate) => candidate.pid === pid)!;
    const { files, problems } = readOpenFiles(fixture.reader, task);
    expect(problems).toEqual([]);
    expect(Object.fromEntries(files.map((file) => [String(file.fd), file.path]))).toEqual(modern.fds[String(pid)]);
    for (const socket of modern.sockets.filter((candidate) => candidate.pid === pid)) {
      expect(files.find((file) => file.fd === socket.fd)).toMatchObject({
        path: `socket:[${socket.inode}]`,
        kind: 'socket',
        inode: socket.inode,
      });
    }
  });

  it.each(Object.keys(modern.environ).map(Number))('environment of pid %i equals /proc/PID/environ', (pid) => {
    const task = fixture.tasks.find((candidate) => candidate.pid === pid)!;
    expect(readEnvironment(fixture.context.kernel, fixture.reader, task)).toEqual({
      variables: modern.environ[String(pid)],
      problems: [],
    });
  });

  it("malfind: exactly lab_injected's two regions among user processes, with their bytes and code", () => {
    const found = allSuspiciousRegions(fixture);
    const expected = [...modern.injected].sort((a, b) => (parseHex(a.start) < parseHex(b.start) ? -1 : 1));
    expect(
      found.map(({ pid, comm, start, end, perms }) => ({
        pid,
        comm,
        start: hex(start),
        end: hex(end),
        perms: perms.slice(0, 3),
      })),
    ).toEqual(expected.map(({ pid, comm, start, end, perms }) => ({ pid, comm, start, end, perms })));
    for (const [index, region] of found.entries()) {
      const truthRegion = expected[index]!;
      expect(region.problems).toEqual([]);
      expect(region.bytes).toHaveLength(64);
      expect(Buffer.from(region.bytes).toString('hex').startsWith(truthRegion.code_hex)).toBe(true);
      if (truthRegion.marker_offset + truthRegion.marker.length <= 64) {
        expect(Buffer.from(region.bytes).toString('latin1').indexOf(truthRegion.marker)).toBe(
          truthRegion.marker_offset,
        );
      }
      expect(region.elfHeader).toBe(false);
      expect(region.reason).toMatch(/backed by no file.*JIT/);
      expect(region.disassembly[0]).toMatch(new RegExp(`^${truthRegion.start}: \\S`));
    }
    expect(found[1]!.reason).toMatch(/writable and executable/);
    // The execve("/bin/sh") shellcode ends in a syscall.
    expect(found[1]!.disassembly).toContain(`${hex(parseHex(expected[1]!.start) + 25n)}: syscall`);
  });
});

describe.each([
  ['linux61-clean', 'elf'],
  ['linux61-rootkit', 'lime'],
  ['linux612-clean', 'elf'],
] as const)('%s (%s): ordinary processes', (name, format) => {
  let fixture: LinuxFixture;
  beforeAll(async () => {
    fixture = await openLinuxFixture(name, format);
  });
  afterAll(() => fixture.close());

  it('sockets: loopback or unbound only, and every table walk whole', () => {
    const { sockets, problems } = allSockets(fixture);
    expect(problems).toEqual([]);
    const local = /^(127\.|0\.0\.0\.0$|::1?$|::ffff:127\.)/;
    const inet = sockets.filter((socket) => socket.family === 'AF_INET' || socket.family === 'AF_INET6');
    expect(inet.filter((socket) => !local.test(socket.localAddress) || !local.test(socket.remoteAddress))).toEqual([]);
  });

  it('malfind: nothing', () => {
    expect(allSuspiciousRegions(fixture)).toEqual([]);
  });

  it('every user process has an fd table that reads whole', () => {
    for (const task of fixture.tasks.filter((candidate) => !candidate.kernelThread)) {
      const { files, problems } = readOpenFiles(fixture.reader, task);
      expect(problems).toEqual([]);
      expect(files.length, `pid ${task.pid} (${task.comm})`).toBeGreaterThan(0);
    }
  });
});
