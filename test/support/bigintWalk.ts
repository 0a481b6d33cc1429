import type { MappingRun, X86AddressSpace } from '../../src/space/x86.js';
import { AbsentMemoryError, PageFaultError, VmscopeError } from '../../src/util/errors.js';
import { ADDRESS_MASK, LARGE_PAGE, NO_EXECUTE, PRESENT, USER, WRITABLE } from '../../src/kernels/pageTableEntry.js';

/**
 * X86AddressSpace.mappings() as it was before the WASM table decoder: every entry of every table
 * looked at with BigInt. Kept as the reference the walk is compared against (test/space/pageWalk.test.ts)
 * and timed against (bench/pageWalk.ts). It reads tables itself, into a cache of its own per space
 * (as the class kept one), so it shares no state with the walk it is compared with.
 */
export function* bigintMappings(space: X86AddressSpace, from = 0n, to = 1n << 64n): Generator<MappingRun> {
  let tables = tableCaches.get(space);
  if (!tables) tableCaches.set(space, (tables = new Map()));
  const table = (physical: number, virtual: bigint, level: number): BigUint64Array => {
    let entries = tables.get(physical);
    if (entries) return entries;
    const page = new Uint8Array(PAGE_SIZE);
    try {
      space.image.read(physical, page);
    } catch (error) {
      if (error instanceof AbsentMemoryError) {
        throw new PageFaultError(
          space.image.path,
          virtual,
          level,
          `page table at physical 0x${physical.toString(16)} is not in the image`,
        );
      }
      throw error;
    }
    entries = new BigUint64Array(page.buffer);
    if (tables.size >= TABLE_CACHE_PAGES) tables.delete(tables.keys().next().value!);
    tables.set(physical, entries);
    return entries;
  };

  function* walk(
    tablePhysical: number,
    level: number,
    base: bigint,
    writable: boolean,
    user: boolean,
    executable: boolean,
    budget: { tables: number },
  ): Generator<MappingRun> {
    if (--budget.tables < 0) {
      throw new VmscopeError(
        'CORRUPT_STRUCTURE',
        `page tables under DTB 0x${space.dtb.toString(16)} reference more tables than the image has pages (a cycle?)`,
        space.image.path,
        tablePhysical,
      );
    }
    const shift = 12n + 9n * BigInt(level - 1);
    const span = 1n << shift;
    let entries: BigUint64Array;
    try {
      entries = table(tablePhysical, base, level);
    } catch (error) {
      if (error instanceof PageFaultError) return;
      throw error;
    }
    for (let index = 0; index < 512; index++) {
      let start = base + BigInt(index) * span;
      if (level === space.levels && index >= 256)
        start |= ~((1n << BigInt(space.addressBits)) - 1n) & ((1n << 64n) - 1n);
      if (start + span <= from || start >= to) continue;
      const entry = entries[index]!;
      if ((entry & PRESENT) === 0n) continue;
      const entryWritable = writable && (entry & WRITABLE) !== 0n;
      const entryUser = user && (entry & USER) !== 0n;
      const entryExecutable = executable && (entry & NO_EXECUTE) === 0n;
      const frame = entry & ADDRESS_MASK;
      if (level === 1 || ((level === 2 || level === 3) && (entry & LARGE_PAGE) !== 0n)) {
        yield {
          virtual: start,
          physical: Number(frame & ~(span - 1n)),
          length: Number(span),
          writable: entryWritable,
          user: entryUser,
          executable: entryExecutable,
        };
      } else {
        yield* walk(Number(frame), level - 1, start, entryWritable, entryUser, entryExecutable, budget);
      }
    }
  }

  const budget = { tables: 2 * Math.ceil(space.image.totalBytes / PAGE_SIZE) + 16 };
  let pending:
    | { virtual: bigint; physical: number; length: number; writable: boolean; user: boolean; executable: boolean }
    | undefined;
  for (const leaf of walk(space.dtb, space.levels, 0n, true, true, true, budget)) {
    if (
      pending &&
      pending.virtual + BigInt(pending.length) === leaf.virtual &&
      pending.physical + pending.length === leaf.physical &&
      pending.writable === leaf.writable &&
      pending.user === leaf.user &&
      pending.executable === leaf.executable
    ) {
      pending.length += leaf.length;
    } else {
      if (pending) yield pending;
      pending = { ...leaf };
    }
  }
  if (pending) yield pending;
}

const PAGE_SIZE = 4096;
const TABLE_CACHE_PAGES = 4096;
/** The cache of table pages, per space (what X86AddressSpace.tables was, without sharing it). */
const tableCaches = new WeakMap<X86AddressSpace, Map<number, BigUint64Array>>();
