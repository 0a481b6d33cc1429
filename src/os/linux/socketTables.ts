import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { StructBytes } from './structBytes.js';

/** Where a socket was found: a process's fd table, or one of the kernel's lookup tables. */
export type SocketSource = 'fd' | 'tcp_established' | 'tcp_listening' | 'tcp_bound' | 'udp';

/** Buckets read from one kernel hash table at most: 2^24 covers the largest machines' ehash; a forged mask must not be walked. */
export const MAX_HASH_BUCKETS = 1 << 24;
/** Entries followed along one bucket chain at most (a bind bucket's owners include every accepted connection on its port). */
const MAX_CHAIN = 1 << 16;
/** Chains of one table leading to something that is not an inet socket before the table is judged forged and left. */
const MAX_BROKEN_CHAINS = 16;
const BUCKETS_PER_READ = 4096;
/** The TCP and UDP tables hold only AF_INET (2) and AF_INET6 (10) sockets (include/linux/socket.h). */
const INET_FAMILIES = new Set([2, 10]);

/**
 * Every sock in tcp_hashinfo (established, listening, bound) and udp_table, with the table it
 * was found in. A table the profile cannot describe or whose header is unreadable is a
 * problem; the others are still walked.
 */
export function tableSockets(reader: KernelReader, problems: string[]): Array<{ sock: bigint; source: SocketSource }> {
  const found: Array<{ sock: bigint; source: SocketSource }> = [];
  const walk = (
    source: SocketSource,
    symbol: string,
    struct: string,
    socks: (walk: HashTableWalk, table: StructBytes) => Iterable<bigint>,
  ) => {
    const table = reader.profile.symbol(symbol);
    if (table === undefined) {
      problems.push(`the profile has no ${symbol}: its sockets come from fd tables only`);
      return;
    }
    try {
      for (const sock of socks(
        new HashTableWalk(reader, `${symbol} (${source})`, problems),
        StructBytes.read(reader, struct, table),
      ))
        found.push({ sock, source });
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`${symbol} (${source}) cannot be walked: ${error.message}`);
    }
  };
  walk('tcp_established', 'tcp_hashinfo', 'inet_hashinfo', establishedSockets);
  walk('tcp_listening', 'tcp_hashinfo', 'inet_hashinfo', listeningSockets);
  walk('tcp_bound', 'tcp_hashinfo', 'inet_hashinfo', boundSockets);
  walk('udp', 'udp_table', 'udp_table', udpSockets);
  return found;
}

/** tcp ehash: hlist_nulls chains of established, TIME_WAIT and NEW_SYN_RECV entries. */
function* establishedSockets(walk: HashTableWalk, hashinfo: StructBytes): Generator<bigint> {
  const { reader } = walk;
  const link = reader.offset('sock_common', 'skc_nulls_node');
  for (const head of walk.heads(hashinfo.u64('ehash'), hashinfo.u32('ehash_mask') + 1, 'inet_ehash_bucket', 'chain')) {
    yield* walk.sockets(head, link, true);
  }
}

/** tcp lhash2: listeners by port and address, an hlist_nulls through sk_nulls_node (5.19+) or an hlist through icsk_listen_portaddr_node before. */
function* listeningSockets(walk: HashTableWalk, hashinfo: StructBytes): Generator<bigint> {
  const { reader } = walk;
  const nulls = reader.profile.hasField('inet_listen_hashbucket', 'nulls_head');
  const link = nulls
    ? reader.offset('sock_common', 'skc_nulls_node')
    : reader.offset('inet_connection_sock', 'icsk_listen_portaddr_node');
  for (const head of walk.heads(
    hashinfo.u64('lhash2'),
    hashinfo.u32('lhash2_mask') + 1,
    'inet_listen_hashbucket',
    nulls ? 'nulls_head' : 'head',
  )) {
    yield* walk.sockets(head, link, nulls);
  }
}

/** tcp bhash: bind buckets, each with its owners (through bind2 buckets on kernels that have them in between). */
function* boundSockets(walk: HashTableWalk, hashinfo: StructBytes): Generator<bigint> {
  const { reader } = walk;
  const { profile } = reader;
  const ownerLink = reader.offset('sock_common', 'skc_bind_node');
  const viaBind2 = !profile.hasField('inet_bind_bucket', 'owners') && profile.hasField('inet_bind_bucket', 'bhash2');
  for (const head of walk.heads(hashinfo.u64('bhash'), hashinfo.u32('bhash_size'), 'inet_bind_hashbucket', 'chain')) {
    for (const bind of walk.chain(head, reader.offset('inet_bind_bucket', 'node'), false)) {
      if (!viaBind2) {
        yield* walk.sockets(bind + reader.offset('inet_bind_bucket', 'owners'), ownerLink, false);
        continue;
      }
      for (const bind2 of walk.chain(
        bind + reader.offset('inet_bind_bucket', 'bhash2'),
        reader.offset('inet_bind2_bucket', 'bhash_node'),
        false,
      )) {
        yield* walk.sockets(bind2 + reader.offset('inet_bind2_bucket', 'owners'), ownerLink, false);
      }
    }
  }
}

/** udp_table: each slot's hlist through sk_node (IPv4 and IPv6 sockets alike). */
function* udpSockets(walk: HashTableWalk, table: StructBytes): Generator<bigint> {
  const link = walk.reader.offset('sock_common', 'skc_node');
  for (const head of walk.heads(table.u64('hash'), table.u32('mask') + 1, 'udp_hslot', 'head')) {
    yield* walk.sockets(head, link, false);
  }
}

/**
 * One kernel hash table's walk: bucket heads read in blocks, chains cycle-checked and bounded,
 * and a budget of broken chains (a link into unreadable memory, or to something that is not an
 * inet socket) after which the table is judged forged and left, so a forged bucket count over
 * arbitrary memory costs little.
 */
class HashTableWalk {
  private brokenChains = 0;

  constructor(
    readonly reader: KernelReader,
    private readonly table: string,
    private readonly problems: string[],
  ) {}

  /** Addresses of the non-empty chain heads (neither NULL nor a nulls marker) of an array of `count` `struct`s. */
  *heads(array: bigint, count: number, struct: string, headField: string): Generator<bigint> {
    const size = this.reader.profile.sizeOf(struct);
    const headOffset = this.reader.profile.offsetOf(struct, headField);
    if (count > MAX_HASH_BUCKETS) {
      this.problems.push(`${this.table} claims ${count} buckets; read only the first ${MAX_HASH_BUCKETS}`);
      count = MAX_HASH_BUCKETS;
    }
    for (let first = 0; first < count; first += BUCKETS_PER_READ) {
      const length = Math.min(BUCKETS_PER_READ, count - first);
      let block: Uint8Array;
      try {
        block = this.reader.bytes(array + BigInt(first * size), length * size);
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        this.problems.push(
          `${this.table} buckets at ${hex(array)} are unreadable from bucket ${first}: ${error.message}`,
        );
        return;
      }
      const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
      for (let index = 0; index < length; index++) {
        if (this.brokenChains >= MAX_BROKEN_CHAINS) {
          this.problems.push(
            `${this.table}: ${this.brokenChains} chains are broken, the table is forged or corrupt: walk stopped at bucket ${first + index}`,
          );
          return;
        }
        const firstNode = view.getBigUint64(index * size + headOffset, true);
        if (firstNode !== 0n && (firstNode & 1n) === 0n) yield array + BigInt((first + index) * size + headOffset);
      }
    }
  }

  /** The socks on a chain, each checked to be an inet socket before it is followed further. */
  sockets(head: bigint, linkOffset: bigint, nulls: boolean): Generator<bigint> {
    return this.chain(head, linkOffset, nulls, (sock) => {
      const family = this.reader.u32(sock + this.reader.offset('sock_common', 'skc_family')) & 0xffff;
      return INET_FAMILIES.has(family) ? undefined : `${hex(sock)} is not an inet socket (family ${family})`;
    });
  }

  /**
   * The objects on one hlist (NULL-terminated) or hlist_nulls (ended by an odd "nulls" marker)
   * chain whose head is at `head`, as `node - linkOffset`; cycle-checked and bounded.
   */
  *chain(
    head: bigint,
    linkOffset: bigint,
    nulls: boolean,
    invalid: (object: bigint) => string | undefined = () => undefined,
  ): Generator<bigint> {
    const seen = new Set<bigint>();
    let node = head;
    for (;;) {
      try {
        node = this.reader.u64(node);
        if (node === 0n || (nulls && (node & 1n) === 1n)) return;
        if (seen.has(node)) return this.broken(`chain at ${hex(head)} loops back to ${hex(node)}`);
        if (seen.size >= MAX_CHAIN)
          return this.broken(`chain at ${hex(head)} is longer than ${MAX_CHAIN}: walk stopped`);
        const reason = invalid(node - linkOffset);
        if (reason !== undefined) return this.broken(`chain at ${hex(head)} leads to ${reason}`);
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        return this.broken(`chain at ${hex(head)} reaches unreadable memory: ${error.message}`);
      }
      seen.add(node);
      yield node - linkOffset;
    }
  }

  private broken(problem: string): void {
    this.brokenChains++;
    this.problems.push(`${this.table} ${problem}`);
  }
}
