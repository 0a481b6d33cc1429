import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader, ListWalk, WalkProblem } from './kernelReader.js';

/**
 * An xarray of PID_MAX_LIMIT (2^22) entries needs 65,536 leaf nodes and about a thousand
 * above them; more nodes than this is a forged tree, not a pid namespace.
 */
export const MAX_XARRAY_NODES = 1 << 17;
/** Tasks attached to one struct pid as PIDTYPE_PID: one in a sane kernel; a bound for forged lists. */
const MAX_TASKS_PER_PID = 64;
/** Internal entries (node pointers, sibling/retry/zero markers) have the low two bits 10. */
const XA_INTERNAL_MASK = 3n;
const XA_INTERNAL_TAG = 2n;
/** Internal entries at or below this value are markers, not node pointers (xa_is_node). */
const XA_MAX_MARKER = 4096n;

export interface XarrayEntry {
  readonly index: bigint;
  /** The stored pointer. */
  readonly entry: bigint;
}

/** What a walk collected, and why it may have missed some (none: it saw everything). */
export interface Collected<T> {
  readonly found: T[];
  readonly problems: WalkProblem[];
}

/**
 * Every pointer entry of the `struct xarray` at `xarray` (the radix tree under an IDR), in index
 * order. Nodes are checked as the kernel keeps them (each child's `shift` one level below its
 * parent's, its `parent` and `offset` pointing back), a node seen twice is a cycle, and at most
 * `maxNodes` are read; a node that fails is skipped with a problem and the rest is still walked.
 * Value entries and internal markers (sibling, retry, zero) hold no pointer and are left out.
 */
export function walkXarray(reader: KernelReader, xarray: bigint, maxNodes = MAX_XARRAY_NODES): Collected<XarrayEntry> {
  const { profile } = reader;
  const slots = profile.field('xa_node', 'slots').type;
  if (slots.kind !== 'array') throw new VmscopeError('NO_PROFILE', 'xa_node.slots is not an array', profile.source);
  const chunkShift = Math.log2(slots.count);
  const layout = {
    size: profile.sizeOf('xa_node'),
    shift: profile.offsetOf('xa_node', 'shift'),
    offset: profile.offsetOf('xa_node', 'offset'),
    parent: profile.offsetOf('xa_node', 'parent'),
    slots: profile.offsetOf('xa_node', 'slots'),
  };
  const entries: XarrayEntry[] = [];
  const problems: WalkProblem[] = [];
  const seen = new Set<bigint>();
  let exhausted = false;

  /** `slot` of `parent` (or the head, for the root) holds `entry`, covering indices from `index`. */
  const visit = (
    entry: bigint,
    index: bigint,
    parent: { node: bigint; shift: number } | undefined,
    slot: number,
  ): void => {
    if (entry === 0n) return;
    if ((entry & XA_INTERNAL_MASK) !== XA_INTERNAL_TAG) {
      if ((entry & 1n) === 0n) entries.push({ index, entry });
      return;
    }
    if (entry <= XA_MAX_MARKER) return;
    const node = entry - XA_INTERNAL_TAG;
    if (seen.has(node)) {
      problems.push({
        kind: 'cycle',
        at: node,
        detail: `xarray node ${hex(node)} is reached twice (a loop in the tree)`,
      });
      return;
    }
    if (seen.size >= maxNodes) {
      if (!exhausted) problems.push({ kind: 'step-limit', at: node, detail: `stopped after ${maxNodes} xarray nodes` });
      exhausted = true;
      return;
    }
    seen.add(node);
    let bytes: Uint8Array;
    try {
      bytes = reader.bytes(node, layout.size);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push({
        kind: 'unreadable',
        at: node,
        detail: `xarray node ${hex(node)} is unreadable: ${error.message}`,
      });
      return;
    }
    const view = new DataView(bytes.buffer);
    const shift = view.getUint8(layout.shift);
    const expectedShift = parent ? parent.shift - chunkShift : shift;
    const parentPointer = view.getBigUint64(layout.parent, true);
    if (
      shift !== expectedShift ||
      shift % chunkShift !== 0 ||
      parentPointer !== (parent?.node ?? 0n) ||
      (parent && view.getUint8(layout.offset) !== slot)
    ) {
      problems.push({
        kind: 'broken-link',
        at: node,
        detail: `xarray node ${hex(node)} (shift ${shift}, parent ${hex(parentPointer)}) does not fit where it hangs${parent ? ` (slot ${slot} of ${hex(parent.node)})` : ''}`,
      });
      return;
    }
    for (let child = 0; child < slots.count; child++) {
      visit(
        view.getBigUint64(layout.slots + 8 * child, true),
        index + (BigInt(child) << BigInt(shift)),
        { node, shift },
        child,
      );
    }
  };

  visit(reader.pointerField(xarray, 'xarray', 'xa_head'), 0n, undefined, 0);
  return { found: entries, problems };
}

export interface PidTask {
  /** The number the namespace files the struct pid under. */
  readonly pid: number;
  readonly task: bigint;
}

/**
 * Every task the pid namespace at `namespace` knows (threads included): its IDR maps each number
 * to a `struct pid`, whose `tasks[PIDTYPE_PID]` hlist holds the task_structs by `pid_links`.
 * Walking init_pid_ns finds every task of every namespace, since a pid is allocated in each
 * ancestor namespace too. DKOM on the task list leaves this untouched (/proc reads it).
 */
export function walkPidNamespace(
  reader: KernelReader,
  namespace: bigint,
  maxNodes = MAX_XARRAY_NODES,
): Collected<PidTask> {
  const { profile } = reader;
  const idr = namespace + reader.offset('pid_namespace', 'idr');
  const idrBase = BigInt(reader.u32Field(idr, 'idr', 'idr_base'));
  const level = reader.u32Field(namespace, 'pid_namespace', 'level');
  const pidType = Number(profile.types.enums.pid_type?.constants.PIDTYPE_PID ?? 0);
  const numberOffset =
    reader.offset('pid', 'numbers') + BigInt(level * profile.sizeOf('upid')) + reader.offset('upid', 'nr');
  const headOffset = reader.offset('pid', 'tasks') + BigInt(pidType * profile.sizeOf('hlist_head'));
  const linkOffset = reader.offset('task_struct', 'pid_links') + BigInt(pidType * profile.sizeOf('hlist_node'));

  const walk = walkXarray(reader, idr + reader.offset('idr', 'idr_rt'), maxNodes);
  const tasks: PidTask[] = [];
  const problems = [...walk.problems];
  for (const { index, entry: pid } of walk.found) {
    const number = index + idrBase;
    let first: bigint;
    try {
      const filed = BigInt(reader.i32(pid + numberOffset));
      if (filed !== number)
        problems.push({
          kind: 'broken-link',
          at: pid,
          detail: `struct pid ${hex(pid)} filed under ${number} says it is ${filed}`,
        });
      first = reader.u64(pid + headOffset);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push({
        kind: 'unreadable',
        at: pid,
        detail: `struct pid ${hex(pid)} (pid ${number}) is unreadable: ${error.message}`,
      });
      continue;
    }
    const hlist = walkHlist(reader, first, linkOffset, MAX_TASKS_PER_PID);
    tasks.push(...hlist.entries.map((task) => ({ pid: Number(number), task })));
    if (hlist.problem)
      problems.push({
        ...hlist.problem,
        detail: `tasks of struct pid ${hex(pid)} (pid ${number}): ${hlist.problem.detail}`,
      });
  }
  return { found: tasks, problems };
}

/**
 * The objects on an hlist (`struct hlist_node` at `linkOffset` in each) from its first node,
 * cycle-checked and bounded like KernelReader.walkList; an hlist ends at a NULL `next`.
 */
export function walkHlist(reader: KernelReader, first: bigint, linkOffset: bigint, maxSteps: number): ListWalk {
  const entries: bigint[] = [];
  const seen = new Set<bigint>();
  for (let node = first; node !== 0n;) {
    if (seen.has(node))
      return { entries, problem: { kind: 'cycle', at: node, detail: `hlist loops back to ${hex(node)}` } };
    if (entries.length >= maxSteps)
      return { entries, problem: { kind: 'step-limit', at: node, detail: `stopped after ${maxSteps} entries` } };
    try {
      const next = reader.pointerField(node, 'hlist_node', 'next');
      seen.add(node);
      entries.push(node - linkOffset);
      node = next;
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      return {
        entries,
        problem: { kind: 'unreadable', at: node, detail: `hlist node ${hex(node)} is unreadable: ${error.message}` },
      };
    }
  }
  return { entries, problem: undefined };
}
