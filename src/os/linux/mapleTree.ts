import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { arrayLength, StructBytes } from './structBytes.js';

/** MAPLE_HEIGHT_MAX (lib/maple_tree.c): no real tree is deeper. */
const MAPLE_HEIGHT_MAX = 31;
/** Entries below this are the tree's reserved internal values (XA_ZERO_ENTRY, retry markers), not pointers. */
const MAPLE_RESERVED_RANGE = 4096n;
/** An encoded node pointer: the low byte holds the node type (bits 3-6) and, for the root, the root marker (bit 1). */
const MAPLE_NODE_MASK = 0xffn;
const MAPLE_NODE_TYPE_SHIFT = 3n;
const MAPLE_NODE_TYPE_MASK = 0x0fn;
const ULONG_MAX = (1n << 64n) - 1n;

export interface MapleTreeLimits {
  /** Nodes visited at most (a 65530-VMA process, vm.max_map_count's default, needs a few thousand). */
  readonly maxNodes: number;
  /** Entries collected at most. */
  readonly maxEntries: number;
}

export const DEFAULT_MAPLE_LIMITS: MapleTreeLimits = { maxNodes: 1 << 16, maxEntries: 1 << 18 };

export interface MapleTreeWalk {
  /** The stored entries (for mm->mm_mt: vm_area_struct addresses), in index order. */
  readonly entries: bigint[];
  readonly problems: string[];
}

interface NodeLayout {
  readonly struct: 'maple_range_64' | 'maple_arange_64';
  readonly slots: number;
  readonly pivots: number;
}

/**
 * Every entry of a maple tree (lib/maple_tree.c), depth first in index order. Node types come
 * from the kernel's own `enum maple_type` and the slot and pivot counts from its BTF. A slot's
 * range ends at its pivot; the node's data ends at the first zero pivot after slot 0 or at the
 * pivot that reaches the node's maximum. Depth, node count and entry count are bounded and a
 * node reached twice is a cycle: a forged tree yields what was found and problems saying why.
 */
export function walkMapleTree(
  reader: KernelReader,
  tree: bigint,
  limits: MapleTreeLimits = DEFAULT_MAPLE_LIMITS,
): MapleTreeWalk {
  const problems: string[] = [];
  const entries: bigint[] = [];
  let root: bigint;
  try {
    root = reader.pointerField(tree, 'maple_tree', 'ma_root');
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { entries, problems: [`maple tree ${hex(tree)} is unreadable: ${error.message}`] };
  }
  if (root === 0n) return { entries, problems };
  if (!isNode(root)) return { entries: root >= MAPLE_RESERVED_RANGE ? [root] : [], problems };

  const { layouts, leafType } = nodeLayouts(reader);
  const seen = new Set<bigint>();
  const stack: Array<{ encoded: bigint; max: bigint; depth: number }> = [{ encoded: root, max: ULONG_MAX, depth: 1 }];
  while (stack.length > 0) {
    const { encoded, max, depth } = stack.pop()!;
    const node = encoded & ~MAPLE_NODE_MASK;
    const type = Number((encoded >> MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK);
    if (seen.has(node)) {
      problems.push(`maple tree ${hex(tree)} reaches node ${hex(node)} twice (a cycle): its subtree is skipped`);
      continue;
    }
    if (seen.size >= limits.maxNodes) {
      problems.push(`maple tree ${hex(tree)} has more than ${limits.maxNodes} nodes: walk stopped`);
      break;
    }
    if (depth > MAPLE_HEIGHT_MAX) {
      problems.push(
        `maple tree ${hex(tree)} is deeper than ${MAPLE_HEIGHT_MAX} at node ${hex(node)}: its subtree is skipped`,
      );
      continue;
    }
    seen.add(node);
    const layout = layouts.get(type);
    if (!layout) {
      problems.push(`maple node ${hex(node)} has type ${type}, which is not a range node: skipped`);
      continue;
    }
    let bytes: StructBytes;
    try {
      bytes = StructBytes.read(reader, layout.struct, node);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`maple node ${hex(node)} is unreadable: ${error.message}`);
      continue;
    }
    const children: Array<{ encoded: bigint; max: bigint; depth: number }> = [];
    for (const { slot, pivot } of occupiedSlots(bytes, layout, max)) {
      if (type === leafType) {
        if (slot < MAPLE_RESERVED_RANGE) continue;
        if (entries.length >= limits.maxEntries) {
          problems.push(`maple tree ${hex(tree)} holds more than ${limits.maxEntries} entries: walk stopped`);
          return { entries, problems };
        }
        entries.push(slot);
      } else if (slot >= MAPLE_RESERVED_RANGE) {
        children.push({ encoded: slot, max: pivot, depth: depth + 1 });
      }
    }
    stack.push(...children.reverse());
  }
  return { entries, problems };
}

/** xa_is_node(): the root pointer tagged MAPLE_ROOT_NODE (2) above the reserved range; child pointers in internal nodes carry only their type bits. */
function isNode(entry: bigint): boolean {
  return (entry & 3n) === 2n && entry > MAPLE_RESERVED_RANGE;
}

function* occupiedSlots(
  bytes: StructBytes,
  layout: NodeLayout,
  max: bigint,
): Generator<{ slot: bigint; pivot: bigint }> {
  const pivotOffset = bytes.offset('pivot');
  const slotOffset = bytes.offset('slot');
  const view = new DataView(bytes.bytes.buffer, bytes.bytes.byteOffset, bytes.bytes.byteLength);
  for (let index = 0; index < layout.slots; index++) {
    const pivot = index < layout.pivots ? view.getBigUint64(pivotOffset + index * 8, true) : max;
    if (index > 0 && pivot === 0n) return;
    yield { slot: view.getBigUint64(slotOffset + index * 8, true), pivot };
    if (pivot >= max) return;
  }
}

/** Layouts by `enum maple_type` value: leaf and range nodes share maple_range_64, allocation-range nodes use maple_arange_64. */
function nodeLayouts(reader: KernelReader): { layouts: Map<number, NodeLayout>; leafType: number } {
  const constants = reader.profile.types.enums['maple_type']?.constants;
  if (!constants) throw new VmscopeError('NO_PROFILE', 'the profile has no enum maple_type', reader.profile.source);
  const layout = (struct: NodeLayout['struct']): NodeLayout => ({
    struct,
    slots: arrayLength(reader.profile, struct, 'slot'),
    pivots: arrayLength(reader.profile, struct, 'pivot'),
  });
  const value = (name: string): number => {
    const found = constants[name];
    if (found === undefined)
      throw new VmscopeError('NO_PROFILE', `enum maple_type has no ${name}`, reader.profile.source);
    return Number(found);
  };
  const range = layout('maple_range_64');
  const layouts = new Map<number, NodeLayout>([
    [value('maple_leaf_64'), range],
    [value('maple_range_64'), range],
    [value('maple_arange_64'), layout('maple_arange_64')],
  ]);
  return { layouts, leafType: value('maple_leaf_64') };
}
