import { z } from 'zod';
import type { SocketRecord } from '../os/linux/sockets.js';
import { hex } from '../util/hex.js';
import { uniqueWarnings } from './providers/kernel.js';
import { openFilesProvider, socketsProvider } from './providers/processContext.js';
import { pidOption } from './pidFilter.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'fd', kind: 'int', title: 'FD' },
  { key: 'family', kind: 'text', title: 'Family' },
  { key: 'proto', kind: 'text', title: 'Proto' },
  { key: 'local_address', kind: 'text', title: 'Local address' },
  { key: 'local_port', kind: 'int', title: 'Local port' },
  { key: 'remote_address', kind: 'text', title: 'Remote address' },
  { key: 'remote_port', kind: 'int', title: 'Remote port' },
  { key: 'state', kind: 'text', title: 'State' },
  { key: 'inode', kind: 'int', title: 'Inode' },
  { key: 'path', kind: 'text', title: 'Unix path' },
  { key: 'netns', kind: 'int', title: 'Net ns' },
  { key: 'sources', kind: 'list', title: 'Found in' },
  { key: 'sock', kind: 'address', title: 'sock' },
];

function socketRow(socket: SocketRecord): Row {
  return {
    pid: socket.pid,
    comm: socket.comm,
    fd: socket.fd,
    family: socket.family,
    proto: socket.proto,
    local_address: socket.localAddress,
    local_port: socket.localPort,
    remote_address: socket.remoteAddress,
    remote_port: socket.remotePort,
    state: socket.state,
    inode: socket.inode,
    path: socket.unixPath,
    netns: socket.netns,
    sources: socket.sources,
    sock: hex(socket.sock),
  };
}

/** Held sockets by pid then fd, then those only a kernel table holds. */
function compareSockets(a: SocketRecord, b: SocketRecord): number {
  return (a.pid ?? Infinity) - (b.pid ?? Infinity) || (a.fd ?? 0) - (b.fd ?? 0) || (a.sock < b.sock ? -1 : 1);
}

/** Every socket of every process, and every socket the kernel's TCP and UDP tables hold. */
export const sockstatAnalysis = defineAnalysis({
  name: 'sockstat',
  description:
    "list every socket: each process's (from its fd table) and those in the kernel's TCP/UDP tables, with addresses, ports and state",
  columns,
  uses: [openFilesProvider, socketsProvider],
  options: z.object({ pid: pidOption('the sockets') }),
  help: `Sockets are found twice: in every process's fd table (hidden processes included), and in the
kernel's own lookup tables (TCP established, listening and bound hashes, the UDP hash). One row
per (process, fd), plus one (pid null) per socket only a table holds: a socket whose process is
gone, or one of a process the task list does not show. A socket a rootkit hides from
/proc/net/tcp is still in the tables and the fd table. sources says where each was found.
Addresses print as ip prints them (IPv6 compressed), states as ss names them (LISTEN,
ESTABLISHED, TIME_WAIT, ..., UNCONN for an unconnected UDP socket); unix sockets show their
bound path (@name in the abstract namespace). netns is the network namespace's inode.`,
  async compute(inputs, options) {
    const files = await inputs.get(openFilesProvider);
    const tables = await inputs.get(socketsProvider);
    const sockets = tables.sockets.filter((socket) => options.pid === undefined || socket.pid === options.pid);
    const warnings = uniqueWarnings(
      files.warnings,
      tables.problems,
      sockets.flatMap((socket) =>
        socket.problems.map(
          (problem) => `socket ${hex(socket.sock)}${socket.pid === null ? '' : ` of pid ${socket.pid}`}: ${problem}`,
        ),
      ),
    );
    return {
      columns,
      rows: [...sockets].sort(compareSockets).map(socketRow),
      single: false,
      partial: warnings.length > 0,
      warnings,
    };
  },
});
