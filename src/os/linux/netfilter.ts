import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { CodeOwners } from './codeOwners.js';
import type { KernelReader } from './kernelReader.js';

/** More network namespaces than a host of containers creates; bounds a forged list. */
const MAX_NAMESPACES = 1 << 14;
const MAX_DEVICES = 1 << 14;
/** MAX_HOOK_COUNT: the kernel refuses to register more hooks at one hook point. */
const MAX_HOOK_ENTRIES = 1024;
const DEVICE_NAME_BYTES = 16;

/**
 * Hook point names by family. Internet-like families number their hooks as `enum nf_inet_hooks`
 * (the bridge's NF_BR_* are #defines with the same numbers); ARP's NF_ARP_* are #defines in
 * uapi/linux/netfilter_arp.h, not in BTF.
 */
const ARP_HOOKS = ['IN', 'OUT', 'FORWARD'];

/** One hook function registered at a hook point of a network namespace (or of a device, for netdev). */
export interface NetfilterHook {
  /** The struct net whose hooks these are, and its namespace inode number (as /proc/PID/ns/net shows it). */
  readonly net: bigint;
  readonly netInode: number;
  /** `ipv4`, `ipv6`, `arp`, `bridge`, `netdev`: the `hooks_*` array (or device hook) it was found in. */
  readonly family: string;
  /** NFPROTO_* of the family. */
  readonly pf: number;
  readonly hooknum: number;
  /** `PRE_ROUTING`, `LOCAL_IN`, ... */
  readonly hookName: string | undefined;
  /** For netdev hooks: the device they hang on. */
  readonly device: string | undefined;
  /** Position in the hook point's entries (the order they run in). */
  readonly position: number;
  readonly function: bigint;
  readonly symbol: string | undefined;
  readonly owner: string;
  /** The nf_hook_ops that registered it, and the priority it gave. */
  readonly ops: bigint;
  readonly priority: number | undefined;
  /** The function runs outside kernel text, or the entry's function is not the one its ops registered. */
  readonly suspicious: boolean;
  readonly evidence: string;
}

export interface NetfilterReport {
  readonly hooks: NetfilterHook[];
  readonly problems: string[];
}

const unreadable = (error: unknown): error is VmscopeError => error instanceof VmscopeError;

interface HookPoint {
  readonly net: bigint;
  readonly netInode: number;
  readonly family: string;
  readonly pf: number;
  readonly hooknum: number;
  readonly hookName: string | undefined;
  readonly device: string | undefined;
}

/** `hooks_ipv4` → ipv4 with NFPROTO_IPV4. */
function families(reader: KernelReader): Array<{
  field: string;
  family: string;
  pf: number;
  count: number;
  hookName: (hooknum: number) => string | undefined;
}> {
  const { profile } = reader;
  const protocols = profile.enumConstants('NFPROTO_');
  const fields = profile.type('netns_nf')?.fields ?? {};
  return Object.entries(fields)
    .filter(([field]) => field.startsWith('hooks_'))
    .flatMap(([field, { type }]) => {
      const family = field.slice('hooks_'.length);
      const pf = protocols.get(`NFPROTO_${family.toUpperCase()}`);
      return pf === undefined || type.kind !== 'array'
        ? []
        : [{ field, family, pf: Number(pf), count: type.count, hookName: hookNames(reader, family) }];
    });
}

function hookNames(reader: KernelReader, family: string): (hooknum: number) => string | undefined {
  if (family === 'arp') return (hooknum) => ARP_HOOKS[hooknum];
  const [prefix, constants] =
    family === 'netdev'
      ? ['NF_NETDEV_', reader.profile.enumConstants('NF_NETDEV_')]
      : ['NF_INET_', reader.profile.enumConstants('NF_INET_')];
  return (hooknum) =>
    [...constants]
      .find(([name, value]) => value === BigInt(hooknum) && !name.endsWith('NUMHOOKS'))?.[0]
      .slice(prefix.length);
}

/**
 * The hooks of one `struct nf_hook_entries`: `num_hook_entries` {hook, priv} pairs, followed in
 * the same allocation by the `nf_hook_ops *orig_ops[]` that registered them (which hold the priority).
 */
function readEntries(
  reader: KernelReader,
  owners: CodeOwners,
  entries: bigint,
  point: HookPoint,
  problems: string[],
): NetfilterHook[] {
  const where = `${point.family}${point.device ? ` ${point.device}` : ''} ${point.hookName ?? point.hooknum} of net ${hex(point.net)}`;
  const count = reader.bytes(entries + reader.offset('nf_hook_entries', 'num_hook_entries'), 2);
  const total = count[0]! | (count[1]! << 8);
  if (total > MAX_HOOK_ENTRIES) {
    problems.push(
      `${where}: nf_hook_entries ${hex(entries)} claims ${total} hooks (the kernel allows ${MAX_HOOK_ENTRIES}): not read`,
    );
    return [];
  }
  const entrySize = reader.profile.sizeOf('nf_hook_entry');
  const first = entries + reader.offset('nf_hook_entries', 'hooks');
  const hooks = reader.bytes(first, total * entrySize);
  const opsTable = reader.bytes(first + BigInt(total * entrySize), total * 8);
  const hookOffset = reader.profile.offsetOf('nf_hook_entry', 'hook');
  const found: NetfilterHook[] = [];
  for (let position = 0; position < total; position++) {
    const hook = new DataView(hooks.buffer).getBigUint64(position * entrySize + hookOffset, true);
    const ops = new DataView(opsTable.buffer).getBigUint64(position * 8, true);
    let priority: number | undefined;
    let registered: bigint | undefined;
    try {
      priority = reader.i32Field(ops, 'nf_hook_ops', 'priority');
      registered = reader.pointerField(ops, 'nf_hook_ops', 'hook');
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`${where}: hook ${position}'s nf_hook_ops ${hex(ops)} is unreadable: ${error.message}`);
    }
    const location = owners.resolve(hook);
    const swapped = registered !== undefined && registered !== hook;
    const outside = location.owner !== 'kernel';
    const name = location.symbol ?? hex(hook);
    const reasons = [
      ...(outside ? [`runs outside kernel text (${location.owner})`] : []),
      ...(swapped ? [`replaces ${owners.resolve(registered!).symbol ?? hex(registered!)} its ops registered`] : []),
    ];
    found.push({
      ...point,
      position,
      function: hook,
      symbol: location.symbol,
      owner: location.owner,
      ops,
      priority,
      suspicious: outside || swapped,
      evidence: `${where}: ${name} at priority ${priority ?? '?'}${reasons.length > 0 ? ` ${reasons.join(', ')}` : ` (${location.owner})`}`,
    });
  }
  return found;
}

/** The hooks at one hook point, or none when its entries pointer is NULL (nothing registered). */
function readHookPoint(
  reader: KernelReader,
  owners: CodeOwners,
  entries: bigint,
  point: HookPoint,
  problems: string[],
): NetfilterHook[] {
  if (entries === 0n) return [];
  try {
    return readEntries(reader, owners, entries, point, problems);
  } catch (error) {
    if (!unreadable(error)) throw error;
    problems.push(
      `${point.family} hook ${point.hooknum} of net ${hex(point.net)}: nf_hook_entries ${hex(entries)} is unreadable: ${error.message}`,
    );
    return [];
  }
}

/** Ingress/egress hooks hanging on the namespace's devices (CONFIG_NETFILTER_INGRESS/EGRESS). */
function deviceHooks(
  reader: KernelReader,
  owners: CodeOwners,
  net: bigint,
  netInode: number,
  problems: string[],
): NetfilterHook[] {
  const { profile } = reader;
  const pf = profile.enumConstants('NFPROTO_NETDEV').get('NFPROTO_NETDEV');
  const points = [
    ['nf_hooks_ingress', 'NF_NETDEV_INGRESS'],
    ['nf_hooks_egress', 'NF_NETDEV_EGRESS'],
  ].filter(([field]) => profile.hasField('net_device', field!));
  if (pf === undefined || points.length === 0) return [];
  const hookNumbers = profile.enumConstants('NF_NETDEV_');
  const walk = reader.walkList(net + reader.offset('net', 'dev_base_head'), reader.offset('net_device', 'dev_list'), {
    maxSteps: MAX_DEVICES,
  });
  if (walk.problem) problems.push(`devices of net ${hex(net)}: ${walk.problem.detail}`);
  const hooks: NetfilterHook[] = [];
  for (const device of walk.entries) {
    try {
      const name = reader.cString(device + reader.offset('net_device', 'name'), DEVICE_NAME_BYTES);
      for (const [field, constant] of points) {
        const hooknum = Number(hookNumbers.get(constant!) ?? 0n);
        const point = {
          net,
          netInode,
          family: 'netdev',
          pf: Number(pf),
          hooknum,
          hookName: constant!.slice('NF_NETDEV_'.length),
          device: name,
        };
        hooks.push(
          ...readHookPoint(reader, owners, reader.pointerField(device, 'net_device', field!), point, problems),
        );
      }
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`devices of net ${hex(net)}: net_device ${hex(device)} is unreadable: ${error.message}`);
    }
  }
  return hooks;
}

/**
 * Every netfilter hook of every network namespace on `net_namespace_list`: per family
 * (`net->nf.hooks_*` arrays present in this kernel's BTF, and device ingress/egress hooks) and
 * hook point, each function with its owner and the priority its nf_hook_ops registered. A
 * function outside kernel text is suspicious, as is an entry whose function is not its ops'.
 */
export function readNetfilterHooks(reader: KernelReader, owners: CodeOwners): NetfilterReport {
  const { profile } = reader;
  const list = profile.symbol('net_namespace_list');
  if (list === undefined || !profile.hasField('net', 'nf')) return { hooks: [], problems: [] }; // no CONFIG_NETFILTER
  const problems: string[] = [];
  const walk = reader.walkList(list, reader.offset('net', 'list'), { maxSteps: MAX_NAMESPACES });
  if (walk.problem) problems.push(`net_namespace_list: ${walk.problem.detail}`);
  const hooks: NetfilterHook[] = [];
  const tables = families(reader);
  for (const net of walk.entries) {
    try {
      const netInode = reader.u32(net + reader.offset('net', 'ns') + reader.offset('ns_common', 'inum'));
      const nf = net + reader.offset('net', 'nf');
      for (const { field, family, pf, count, hookName } of tables) {
        const entries = reader.bytes(nf + reader.offset('netns_nf', field), count * 8);
        for (let hooknum = 0; hooknum < count; hooknum++) {
          const point = { net, netInode, family, pf, hooknum, hookName: hookName(hooknum), device: undefined };
          hooks.push(
            ...readHookPoint(
              reader,
              owners,
              new DataView(entries.buffer).getBigUint64(hooknum * 8, true),
              point,
              problems,
            ),
          );
        }
      }
      hooks.push(...deviceHooks(reader, owners, net, netInode, problems));
    } catch (error) {
      if (!unreadable(error)) throw error;
      problems.push(`net_namespace_list: struct net ${hex(net)} is unreadable: ${error.message}`);
    }
  }
  return { hooks, problems };
}
