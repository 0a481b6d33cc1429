import { describe, expect, it } from 'vitest';
import { diffSnapshots } from '../../src/monitor/diff.js';
import type { SnapshotProcess, SnapshotRegion, SnapshotSocket } from '../../src/monitor/snapshot.js';
import { syntheticSummary } from '../support/summaries.js';

const process = (pid: number, comm: string): SnapshotProcess => ({
  pid,
  ppid: 1,
  comm,
  cmdline: [comm],
  startTime: BigInt(pid) * 1_000_000n,
  kernelThread: false,
});
const socket = (pid: number, comm: string, parts: Partial<SnapshotSocket>): SnapshotSocket => ({
  pid,
  comm,
  proto: 'tcp',
  localAddress: '0.0.0.0',
  localPort: 8080,
  remoteAddress: '0.0.0.0',
  remotePort: 0,
  state: 'LISTEN',
  inode: 100,
  ...parts,
});
const region = (owner: SnapshotProcess, start: bigint, parts: Partial<SnapshotRegion> = {}): SnapshotRegion => ({
  pid: owner.pid,
  comm: owner.comm,
  startTime: owner.startTime,
  start,
  end: start + 0x1000n,
  perms: 'r-xp',
  path: '/bin/server',
  injected: false,
  ...parts,
});

describe('diff: sockets and executable regions', () => {
  const server = process(100, 'server');
  const client = process(200, 'client');
  const listener = socket(100, 'server', {});
  const connection = socket(200, 'client', {
    localAddress: '10.0.0.2',
    localPort: 40000,
    remoteAddress: '10.0.0.9',
    remotePort: 443,
    state: 'ESTABLISHED',
    inode: 101,
  });
  const before = syntheticSummary({
    processes: [server, client],
    sockets: [listener, connection],
    executableRegions: [region(server, 0x400000n), region(client, 0x500000n, { path: '/bin/client' })],
  });

  it('a socket opened and one closed, each once, naming its process, proto and port', () => {
    const backdoor = socket(100, 'server', { localPort: 4444, inode: 102 });
    const after = syntheticSummary({ ...before, sockets: [listener, backdoor] });
    expect(
      diffSnapshots(before, after).map(({ kind, change, pid, name, comm }) => ({ kind, change, pid, name, comm })),
    ).toEqual([
      { kind: 'socket', change: 'opened', pid: 100, name: 'tcp/4444', comm: 'server' },
      { kind: 'socket', change: 'closed', pid: 200, name: 'tcp/40000', comm: 'client' },
    ]);
  });

  it('a state change of the same socket is a change, not a close and an open', () => {
    const closing = { ...connection, state: 'CLOSE_WAIT' };
    const rows = diffSnapshots(before, syntheticSummary({ ...before, sockets: [listener, closing] }));
    expect(rows.map(({ change, detail }) => ({ change, detail }))).toEqual([
      { change: 'changed', detail: expect.stringMatching(/state ESTABLISHED → CLOSE_WAIT$/) },
    ]);
  });

  it("a new executable region of a running process appears; a new process's regions are its start, not regions", () => {
    const injected = region(server, 0x7f0000000000n, { perms: 'rwxp', path: '', injected: true });
    const newcomer = process(300, 'newcomer');
    const after = syntheticSummary({
      ...before,
      processes: [server, client, newcomer],
      executableRegions: [...before.executableRegions, injected, region(newcomer, 0x400000n)],
    });
    const rows = diffSnapshots(before, after).filter((row) => row.kind === 'executable_region');
    expect(rows.map(({ change, pid, name, detail }) => ({ change, pid, name, detail }))).toEqual([
      {
        change: 'appeared',
        pid: 100,
        name: '0x7f0000000000-0x7f0000001000',
        detail: 'rwxp 0x7f0000000000-0x7f0000001000 anonymous (injected code?)',
      },
    ]);
  });

  it('identical summaries: no rows', () => {
    expect(diffSnapshots(before, syntheticSummary({ ...before }))).toEqual([]);
  });
});
