import { SocketAddress } from 'node:net';
import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import { cString } from '../../util/text.js';
import type { OpenFile } from './files.js';
import type { KernelReader } from './kernelReader.js';
import { tableSockets, type SocketSource } from './socketTables.js';
import { arrayLength, StructBytes } from './structBytes.js';
import type { TaskInfo } from './tasks.js';

export type { SocketSource } from './socketTables.js';

/** Address families (include/linux/socket.h), ABI. */
const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const FAMILY_NAMES: Record<number, string> = {
  1: 'AF_UNIX',
  2: 'AF_INET',
  10: 'AF_INET6',
  16: 'AF_NETLINK',
  17: 'AF_PACKET',
  40: 'AF_VSOCK',
  44: 'AF_XDP',
};
/** IP protocol numbers (include/uapi/linux/in.h), ABI. */
const IP_PROTOCOLS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmp', 136: 'udplite' };
const SOCK_RAW = 3;
/** TCP states (include/net/tcp_states.h, the `st` column of /proc/net/tcp), named as netstat and ss name them; CLOSE is UNCONN, as ss shows an unconnected socket. */
const STATE_NAMES: Record<number, string> = {
  1: 'ESTABLISHED',
  2: 'SYN_SENT',
  3: 'SYN_RECV',
  4: 'FIN_WAIT1',
  5: 'FIN_WAIT2',
  6: 'TIME_WAIT',
  7: 'UNCONN',
  8: 'CLOSE_WAIT',
  9: 'LAST_ACK',
  10: 'LISTEN',
  11: 'CLOSING',
  12: 'NEW_SYN_RECV',
  13: 'BOUND_INACTIVE',
};
/** TIME_WAIT and NEW_SYN_RECV entries of the established hash are only a sock_common (inet_timewait_sock, request_sock). */
const TCP_TIME_WAIT = 6;
const TCP_NEW_SYN_RECV = 12;
const utf8 = new TextDecoder();

export interface SocketRecord {
  /** Address of the `struct sock` (or sock_common for TIME_WAIT entries). */
  readonly sock: bigint;
  /** The holding process and fd; null when no fd table holds the socket. */
  readonly pid: number | null;
  readonly comm: string | null;
  readonly fd: number | null;
  readonly family: string;
  /** `tcp`, `udp`, `tcp6`, `udp6`, `unix`, `raw`, `netlink`, … */
  readonly proto: string;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly state: string;
  readonly inode: number;
  /** A unix socket's bound path (`@name` for the abstract namespace), '' when unbound. */
  readonly unixPath: string;
  /** The network namespace's inode (as /proc/PID/ns/net shows it, `net:[N]`), or null when unreadable: containers reuse addresses and ports. */
  readonly netns: number | null;
  /** sk_prot->name (`TCP`, `UDPv6`, `UNIX`), or null when sk_prot does not point to a readable struct proto. */
  readonly protocolName: string | null;
  readonly sources: SocketSource[];
  /** What could not be read of this socket. */
  readonly problems: string[];
}

export interface SocketTables {
  readonly sockets: SocketRecord[];
  /** Why a table walk stopped early; per-socket problems are on each record. */
  readonly problems: string[];
}

/** A process and the files its fd table holds (from readOpenFiles). */
export interface SocketHolder {
  readonly task: TaskInfo;
  readonly files: readonly OpenFile[];
}

type SocketFacts = Omit<SocketRecord, 'pid' | 'comm' | 'fd' | 'sources'>;

/**
 * Every socket: those in the holders' fd tables (f_op is socket_file_ops: private_data is the
 * struct socket) and those in the kernel's TCP hash tables (established, listening, bound) and
 * UDP hash, so a socket no process holds and one hidden from /proc/net both appear. One record
 * per (process, fd), plus one per socket that only a table holds.
 */
export function readSockets(reader: KernelReader, holders: readonly SocketHolder[]): SocketTables {
  const problems: string[] = [];
  const socketFileOps = reader.profile.symbol('socket_file_ops');
  const facts = new Map<bigint, SocketFacts>();
  const sourcesOf = new Map<bigint, Set<SocketSource>>();
  const note = (sock: bigint, source: SocketSource, inode?: number) => {
    if (!facts.has(sock)) facts.set(sock, readSocket(reader, sock, inode));
    let sources = sourcesOf.get(sock);
    if (!sources) sourcesOf.set(sock, (sources = new Set()));
    sources.add(source);
  };

  const held: Array<{ holder: SocketHolder; file: OpenFile; sock: bigint }> = [];
  if (socketFileOps === undefined)
    problems.push('the profile has no socket_file_ops: sockets are found in the kernel tables only');
  for (const holder of holders) {
    for (const file of holder.files) {
      if (socketFileOps === undefined || file.operations !== socketFileOps) continue;
      try {
        const sock = reader.pointerField(file.privateData, 'socket', 'sk');
        if (sock === 0n) continue;
        note(sock, 'fd', file.inode);
        held.push({ holder, file, sock });
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        problems.push(
          `pid ${holder.task.pid} fd ${file.fd}: struct socket ${hex(file.privateData)} is unreadable: ${error.message}`,
        );
      }
    }
  }
  for (const { sock, source } of tableSockets(reader, problems)) note(sock, source);

  const sources = (sock: bigint): SocketSource[] => [...sourcesOf.get(sock)!].sort();
  const sockets: SocketRecord[] = held.map(({ holder, file, sock }) => ({
    ...facts.get(sock)!,
    pid: holder.task.pid,
    comm: holder.task.comm,
    fd: file.fd,
    sources: sources(sock),
  }));
  const heldSocks = new Set(held.map(({ sock }) => sock));
  for (const [sock, socket] of facts) {
    if (!heldSocks.has(sock)) sockets.push({ ...socket, pid: null, comm: null, fd: null, sources: sources(sock) });
  }
  return { sockets, problems };
}

/** One socket's facts; what cannot be read is a problem on the record, never an exception. */
function readSocket(reader: KernelReader, sock: bigint, fileInode: number | undefined): SocketFacts {
  const problems: string[] = [];
  const empty: SocketFacts = {
    sock,
    family: 'unknown',
    proto: 'unknown',
    localAddress: '',
    localPort: 0,
    remoteAddress: '',
    remotePort: 0,
    state: 'unknown',
    inode: fileInode ?? 0,
    unixPath: '',
    netns: null,
    protocolName: null,
    problems,
  };
  let common: StructBytes;
  try {
    common = StructBytes.read(reader, 'sock_common', sock);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`sock ${hex(sock)} is unreadable: ${error.message}`);
    return empty;
  }
  const familyNumber = common.unsigned('skc_family');
  const stateNumber = common.unsigned('skc_state');
  const family = FAMILY_NAMES[familyNumber] ?? `AF_${familyNumber}`;
  const state = STATE_NAMES[stateNumber] ?? `STATE_${stateNumber}`;
  const addresses = inetAddresses(common, familyNumber);
  const protocolName = protoName(reader, common.u64('skc_prot'), problems);
  const netns = namespaceInode(reader, common, problems);
  const facts = { ...empty, family, state, ...addresses, netns, protocolName };
  if (
    (familyNumber === AF_INET || familyNumber === AF_INET6) &&
    (stateNumber === TCP_TIME_WAIT || stateNumber === TCP_NEW_SYN_RECV)
  ) {
    return { ...facts, proto: familyNumber === AF_INET6 ? 'tcp6' : 'tcp' };
  }
  let full: StructBytes;
  try {
    full = StructBytes.read(reader, 'sock', sock);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`sock ${hex(sock)} beyond its sock_common is unreadable: ${error.message}`);
    return facts;
  }
  const proto = protoOf(familyNumber, full.unsigned('sk_type'), full.unsigned('sk_protocol'));
  const inode = fileInode ?? socketInode(reader, full.u64('sk_socket'), problems);
  const unixPath = familyNumber === AF_UNIX ? unixAddress(reader, sock, problems) : '';
  return { ...facts, proto, inode, unixPath };
}

function inetAddresses(
  common: StructBytes,
  family: number,
): Pick<SocketRecord, 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort'> {
  if (family !== AF_INET && family !== AF_INET6)
    return { localAddress: '', localPort: 0, remoteAddress: '', remotePort: 0 };
  // skc_num is the local port in host order; skc_dport is in network order, as are the addresses.
  const dport = common.fieldBytes('skc_dport', 2);
  const ports = { localPort: common.unsigned('skc_num'), remotePort: (dport[0]! << 8) | dport[1]! };
  if (family === AF_INET) {
    return {
      localAddress: common.fieldBytes('skc_rcv_saddr', 4).join('.'),
      remoteAddress: common.fieldBytes('skc_daddr', 4).join('.'),
      ...ports,
    };
  }
  return {
    localAddress: ipv6(common.fieldBytes('skc_v6_rcv_saddr', 16)),
    remoteAddress: ipv6(common.fieldBytes('skc_v6_daddr', 16)),
    ...ports,
  };
}

/** An IPv6 address as `ip` prints it: compressed, lowercase, IPv4-mapped in dotted form. */
function ipv6(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let index = 0; index < 16; index += 2) groups.push(((bytes[index]! << 8) | bytes[index + 1]!).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

function protoOf(family: number, type: number, protocol: number): string {
  if (family === AF_UNIX) return 'unix';
  if (family !== AF_INET && family !== AF_INET6)
    return (FAMILY_NAMES[family] ?? `af${family}`).replace(/^AF_/, '').toLowerCase();
  const suffix = family === AF_INET6 ? '6' : '';
  if (type === SOCK_RAW) return `raw${suffix}`;
  return `${IP_PROTOCOLS[protocol] ?? `ipproto${protocol}`}${suffix}`;
}

/** sk_prot->name, checked to be a short printable C string: anything else means sk_prot is not a struct proto. */
function protoName(reader: KernelReader, prot: bigint, problems: string[]): string | null {
  const size = arrayLength(reader.profile, 'proto', 'name');
  try {
    const bytes = reader.bytes(prot + reader.offset('proto', 'name'), size);
    const name = cString(bytes);
    if (name.length > 0 && name.length < bytes.length && /^[\x21-\x7e]+$/.test(name)) return name;
    problems.push(`sk_prot ${hex(prot)} does not point to a struct proto (its name is not a short printable string)`);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`sk_prot ${hex(prot)} is unreadable: ${error.message}`);
  }
  return null;
}

/** sock_net(sk)->ns.inum; on a kernel without CONFIG_NET_NS skc_net holds no pointer and every socket is in init_net. */
function namespaceInode(reader: KernelReader, common: StructBytes, problems: string[]): number | null {
  const net = reader.profile.hasField('sock_common', 'skc_net.net')
    ? common.u64('skc_net.net')
    : reader.profile.symbol('init_net');
  if (net === undefined) return null;
  try {
    return reader.u32(net + reader.offset('net', 'ns') + reader.offset('ns_common', 'inum'));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`network namespace ${hex(net)} is unreadable: ${error.message}`);
    return null;
  }
}

/** SOCK_INODE(): the inode allocated with the struct socket (struct socket_alloc). */
function socketInode(reader: KernelReader, socket: bigint, problems: string[]): number {
  if (socket === 0n) return 0;
  try {
    const inode = socket - reader.offset('socket_alloc', 'socket') + reader.offset('socket_alloc', 'vfs_inode');
    return Number(reader.pointerField(inode, 'inode', 'i_ino'));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`socket ${hex(socket)} is unreadable: ${error.message}`);
    return 0;
  }
}

/** unix_sock->addr: sun_path of `len - sizeof(sun_family)` bytes; a leading NUL is the abstract namespace, shown `@name` as ss does. */
function unixAddress(reader: KernelReader, sock: bigint, problems: string[]): string {
  try {
    const address = reader.pointerField(sock, 'unix_sock', 'addr');
    if (address === 0n) return '';
    const length = reader.i32Field(address, 'unix_address', 'len') - reader.profile.offsetOf('sockaddr_un', 'sun_path');
    const pathLength = Math.min(Math.max(length, 0), arrayLength(reader.profile, 'sockaddr_un', 'sun_path'));
    const bytes = reader.bytes(
      address + reader.offset('unix_address', 'name') + reader.offset('sockaddr_un', 'sun_path'),
      pathLength,
    );
    if (bytes[0] === 0) return '@' + utf8.decode(bytes.subarray(1));
    const end = bytes.indexOf(0);
    return utf8.decode(end < 0 ? bytes : bytes.subarray(0, end));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`unix address of sock ${hex(sock)} is unreadable: ${error.message}`);
    return '';
  }
}
