import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { CodeOwners } from './codeOwners.js';
import type { KernelReader } from './kernelReader.js';

/**
 * The operation tables the kernel reports processes and sockets through (what Volatility's
 * check_afinfo and rootkit hunters look at): /proc/net's seq_operations, /proc's root and pid
 * directory operations, and the socket layer's proto_ops/proto. BTF has no types for these
 * variables, so each is named with its struct type; those a kernel lacks are skipped.
 */
const REPORTING_TABLES: ReadonlyArray<{ readonly type: string; readonly symbols: readonly string[] }> = [
  {
    type: 'seq_operations',
    symbols: [
      'tcp4_seq_ops',
      'tcp6_seq_ops',
      'udp_seq_ops',
      'udp6_seq_ops',
      'udplite_seq_ops',
      'udplite6_seq_ops',
      'raw_seq_ops',
      'raw6_seq_ops',
      'unix_seq_ops',
      'packet_seq_ops',
      'netlink_seq_ops',
      'ping_v4_seq_ops',
      'ping_v6_seq_ops',
    ],
  },
  {
    type: 'file_operations',
    symbols: [
      'proc_root_operations',
      'proc_tgid_base_operations',
      'proc_tid_base_operations',
      'proc_fd_operations',
      'proc_net_operations',
    ],
  },
  {
    type: 'inode_operations',
    symbols: [
      'proc_root_inode_operations',
      'proc_tgid_base_inode_operations',
      'proc_tid_base_inode_operations',
      'proc_pid_link_inode_operations',
    ],
  },
  {
    type: 'proto_ops',
    symbols: [
      'inet_stream_ops',
      'inet_dgram_ops',
      'inet6_stream_ops',
      'inet6_dgram_ops',
      'unix_stream_ops',
      'unix_dgram_ops',
      'unix_seqpacket_ops',
      'packet_ops',
      'netlink_ops',
    ],
  },
  { type: 'proto', symbols: ['tcp_prot', 'udp_prot', 'tcpv6_prot', 'udpv6_prot'] },
];
const OPERATIONS_SUFFIX = /_(ops|operations)$/;

/** One function pointer of one reporting table. */
export interface OperationPointer {
  /** The table's symbol (e.g. `tcp4_seq_ops`) and struct type (`seq_operations`). */
  readonly structure: string;
  readonly type: string;
  readonly structureAddress: bigint;
  readonly field: string;
  /** Address of the field. */
  readonly slot: bigint;
  readonly pointer: bigint;
  readonly symbol: string | undefined;
  readonly owner: string;
  /**
   * What the field should hold where that is determinable: the kernel function named after the
   * table and field as the kernel names them (`tcp4_seq_ops.show` → `tcp4_seq_show`).
   */
  readonly expected: bigint | undefined;
  readonly expectedSymbol: string | undefined;
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface OperationPointers {
  readonly pointers: OperationPointer[];
  readonly problems: string[];
}

/**
 * Every non-NULL function pointer of the reporting tables this kernel has, each struct's layout
 * from BTF. A pointer outside kernel text, or inside it but not at a function's start, is a finding.
 */
export function readOperationPointers(reader: KernelReader, owners: CodeOwners): OperationPointers {
  const { profile } = reader;
  const pointers: OperationPointer[] = [];
  const problems: string[] = [];
  for (const { type, symbols } of REPORTING_TABLES) {
    const layout = profile.type(type);
    if (!layout) continue;
    const functionFields = Object.entries(layout.fields)
      .filter(([, field]) => field.type.kind === 'pointer' && field.type.subtype.kind === 'function')
      .sort(([, a], [, b]) => a.offset - b.offset);
    for (const structure of symbols) {
      const address = profile.symbol(structure);
      if (address === undefined) continue;
      let view: DataView;
      try {
        view = new DataView(reader.bytes(address, layout.size).buffer);
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        problems.push(`${structure} at ${hex(address)} is unreadable: ${error.message}`);
        continue;
      }
      for (const [field, { offset }] of functionFields) {
        const pointer = view.getBigUint64(offset, true);
        if (pointer === 0n) continue;
        const location = owners.resolve(pointer);
        const expected = profile.symbol(`${structure.replace(OPERATIONS_SUFFIX, '')}_${field}`);
        const expectedText = expected !== undefined && owners.inKernelText(expected) ? expected : undefined;
        const judgement = judge(pointer, location.owner, location.symbol, expectedText);
        pointers.push({
          structure,
          type,
          structureAddress: address,
          field,
          slot: address + BigInt(offset),
          pointer,
          symbol: location.symbol,
          owner: location.owner,
          expected: expectedText,
          expectedSymbol: expectedText === undefined ? undefined : owners.resolve(expectedText).symbol,
          ...judgement,
        });
      }
    }
  }
  return { pointers, problems };

  function judge(
    pointer: bigint,
    owner: string,
    symbol: string | undefined,
    expected: bigint | undefined,
  ): { suspicious: boolean; evidence: string } {
    const should = expected === undefined ? '' : `; the kernel's ${owners.resolve(expected).symbol} is expected there`;
    if (owner !== 'kernel') {
      const where = owner === 'unknown' ? 'memory no module owns' : `module ${owner}`;
      return {
        suspicious: true,
        evidence: `points to ${symbol ?? hex(pointer)} in ${where}, outside kernel text${should}`,
      };
    }
    if (profile.symbolsAt(pointer).length === 0)
      return {
        suspicious: true,
        evidence: `points into the middle of ${symbol ?? hex(pointer)}, not to a function${should}`,
      };
    return { suspicious: false, evidence: `${symbol} in kernel text` };
  }
}
