import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOpenFiles } from '../../../src/os/linux/files.js';
import { readSockets } from '../../../src/os/linux/sockets.js';
import { openLinuxFixture, readersOver, type LinuxFixture } from '../../support/linuxReaders.js';
import { OverlayContext } from '../../support/overlay.js';

/**
 * Socket shapes no fixture holds, made from real sockets in memory. A unix socket: lab_dns's
 * UDP socket gets family AF_UNIX and a unix_sock->addr pointing to a unix_address written
 * beside it, as unix_bind() leaves them (len counts sun_family and, for a pathname, the NUL).
 * A TIME_WAIT entry: lab_beacon's connection in that state, read as the sock_common it is.
 */
let base: LinuxFixture;
beforeAll(async () => {
  base = await openLinuxFixture('linux61-modern', 'elf');
});
afterAll(() => base.close());

async function boundUnixSocket(sunPath: Uint8Array) {
  const { reader } = base;
  const task = base.task('lab_dns');
  const file = readOpenFiles(reader, task).files.find((candidate) => candidate.kind === 'socket')!;
  const sock = reader.pointerField(file.privateData, 'socket', 'sk');
  const context = new OverlayContext(base.context);
  const familyWord = sock + reader.offset('sock_common', 'skc_family');
  context.patchKernelU64(familyWord, (reader.u64(familyWord) & ~0xffffn) | 1n);
  // The address goes in the socket's own page, past struct unix_sock: any readable bytes do.
  const address = sock + BigInt(reader.profile.sizeOf('unix_sock'));
  const sunPathOffset = reader.profile.offsetOf('sockaddr_un', 'sun_path');
  const bytes = new Uint8Array(reader.profile.offsetOf('unix_address', 'name') + sunPathOffset + sunPath.length);
  new DataView(bytes.buffer).setInt32(
    reader.profile.offsetOf('unix_address', 'len'),
    sunPathOffset + sunPath.length,
    true,
  );
  bytes.set(sunPath, reader.profile.offsetOf('unix_address', 'name') + sunPathOffset);
  context.image.patchVirtual(context.kernel.space, address, bytes);
  context.patchKernelU64(sock + reader.offset('unix_sock', 'addr'), address);
  const fixture = await readersOver(context);
  return { row: socketsOf(fixture).find((socket) => socket.sock === sock)!, inode: file.inode, pid: task.pid };
}

function socketsOf(fixture: LinuxFixture) {
  return readSockets(
    fixture.reader,
    fixture.tasks.map((task) => ({ task, ...readOpenFiles(fixture.reader, task) })),
  ).sockets;
}

describe('unix sockets', () => {
  it('a pathname socket shows its path', async () => {
    const { row, inode, pid } = await boundUnixSocket(new TextEncoder().encode('/run/lab.sock\0'));
    expect(row).toMatchObject({
      pid,
      fd: 3,
      family: 'AF_UNIX',
      proto: 'unix',
      unixPath: '/run/lab.sock',
      localAddress: '',
      localPort: 0,
      inode,
      state: 'UNCONN',
    });
  });

  it('an abstract socket shows as @name, as ss shows it', async () => {
    const { row } = await boundUnixSocket(new Uint8Array([0, ...new TextEncoder().encode('lab-abstract')]));
    expect(row).toMatchObject({ proto: 'unix', unixPath: '@lab-abstract' });
  });
});

describe('TIME_WAIT entries of the established hash', () => {
  it('are read as a sock_common: addresses, ports and state, nothing beyond', async () => {
    const beacon = socketsOf(base).find((socket) => socket.comm === 'lab_beacon')!;
    const context = new OverlayContext(base.context);
    const tcpTimeWait = 6;
    context.image.patchVirtual(
      context.kernel.space,
      beacon.sock + base.reader.offset('sock_common', 'skc_state'),
      new Uint8Array([tcpTimeWait]),
    );
    // An inet_timewait_sock ends where sock_common does: what lies beyond (here a sk_protocol of UDP) is not read.
    const ipprotoUdp = 17;
    context.image.patchVirtual(
      context.kernel.space,
      beacon.sock + base.reader.offset('sock', 'sk_protocol'),
      new Uint8Array([ipprotoUdp, 0]),
    );
    const row = socketsOf(await readersOver(context)).find((socket) => socket.sock === beacon.sock)!;
    expect(row).toEqual({ ...beacon, state: 'TIME_WAIT' });
  });
});
