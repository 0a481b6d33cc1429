import type { MemoryImage } from '../image/types.js';
import { ADDRESS_MASK, LARGE_PAGE, NO_EXECUTE, PRESENT, USER, WRITABLE } from '../kernels/pageTableEntry.js';
import { decodeTable, type TableDecoder, type TableRecord } from '../kernels/pageTables.js';
import { AbsentMemoryError, PageFaultError, VmscopeError } from '../util/errors.js';

export type PagingLevels = 4 | 5;

export interface Translation {
  readonly physical: number;
  /** Size of the page that maps the address: 4 KiB, 2 MiB or 1 GiB. */
  readonly pageSize: number;
  readonly writable: boolean;
  readonly user: boolean;
  readonly executable: boolean;
}

/** A run of virtual addresses mapped to consecutive physical addresses with the same permissions. */
export interface MappingRun {
  readonly virtual: bigint;
  readonly physical: number;
  readonly length: number;
  readonly writable: boolean;
  readonly user: boolean;
  readonly executable: boolean;
}

const PAGE_SIZE = 4096;
/** Page-table pages kept decoded; 4096 pages = 16 MiB covers the kernel and a few processes. */
const TABLE_CACHE_PAGES = 4096;
/** Translated 4 KiB pages kept (a few MiB): what a command's kernel objects span many times over. */
const TRANSLATION_CACHE_PAGES = 1 << 16;
/** Reads up to this long are served from a copy of their whole physical page (see readPhysical). */
const SMALL_READ = 256;
/** Physical pages kept for small reads: 4 MiB. */
const SMALL_READ_CACHE_PAGES = 1024;

/** A table mappings() has open: its decoded entries, the next to visit, and what its parents allow. */
interface TableFrame {
  readonly records: readonly TableRecord[];
  next: number;
  readonly level: number;
  /** The virtual address of entry 0, and the span of one entry (a page at level 1). */
  readonly base: bigint;
  readonly span: bigint;
  readonly pageSize: number;
  /** Entries [firstIndex, endIndex) overlap the walk's bounds. */
  readonly firstIndex: number;
  readonly endIndex: number;
  readonly writable: boolean;
  readonly user: boolean;
  readonly executable: boolean;
}

/** The same translation for an address `bytes` further in its page (written out: a spread costs more here). */
const movedBy = ({ physical, pageSize, writable, user, executable }: Translation, bytes: number): Translation => ({
  physical: physical + bytes,
  pageSize,
  writable,
  user,
  executable,
});

/**
 * An x86-64 address space: 4- or 5-level paging rooted at a DTB (CR3), 2 MiB and 1 GiB pages.
 * Everything read here comes from the guest, so a bad entry is a typed fault naming the address
 * and level, never a crash or a read of unrelated memory.
 */
export class X86AddressSpace {
  private readonly tables = new Map<number, BigUint64Array>();
  /**
   * Translations by virtual 4 KiB page number, each of the page's first byte: readers ask for a
   * task's or a module's fields one at a time, and every walk of four tables is some thirty
   * bigint operations. As consistent as the tables they come from (cached above).
   */
  private readonly translations = new Map<number, Translation>();
  /** Whole physical pages, for small reads (see readPhysical). */
  private readonly pages = new Map<number, Uint8Array>();
  private readonly scratch = new Uint8Array(8);

  constructor(
    readonly image: MemoryImage,
    readonly dtb: number,
    readonly levels: PagingLevels = 4,
    /** Decodes each table mappings() walks: this thread's WASM kernel unless given. */
    private readonly decoder: TableDecoder = decodeTable,
  ) {
    if (dtb % PAGE_SIZE !== 0)
      throw new VmscopeError('CORRUPT_STRUCTURE', `DTB 0x${dtb.toString(16)} is not page-aligned`, image.path, dtb);
  }

  /** Highest implemented virtual-address bit: 47 with 4 levels, 56 with 5. */
  get addressBits(): number {
    return this.levels === 5 ? 57 : 48;
  }

  isCanonical(virtual: bigint): boolean {
    const top = BigInt.asUintN(64, virtual) >> BigInt(this.addressBits - 1);
    return top === 0n || top === (1n << BigInt(64 - this.addressBits + 1)) - 1n;
  }

  /** In the upper canonical half, where the kernel lives (with 4 levels from 0xffff8000…, with 5 from 0xff00…). */
  isKernelAddress(virtual: bigint): boolean {
    return virtual >> 63n === 1n && this.isCanonical(virtual);
  }

  private table(physical: number, virtual: bigint, level: number): BigUint64Array {
    let entries = this.tables.get(physical);
    if (entries) return entries;
    const page = new Uint8Array(PAGE_SIZE);
    try {
      this.image.read(physical, page);
    } catch (error) {
      if (error instanceof AbsentMemoryError) {
        throw new PageFaultError(
          this.image.path,
          virtual,
          level,
          `page table at physical 0x${physical.toString(16)} is not in the image`,
        );
      }
      throw error;
    }
    entries = new BigUint64Array(page.buffer);
    if (this.tables.size >= TABLE_CACHE_PAGES) this.tables.delete(this.tables.keys().next().value!);
    this.tables.set(physical, entries);
    return entries;
  }

  tryTranslate(virtual: bigint): Translation | undefined {
    try {
      return this.translate(virtual);
    } catch (error) {
      if (error instanceof PageFaultError) return undefined;
      throw error;
    }
  }

  translate(virtual: bigint): Translation {
    const address = BigInt.asUintN(64, virtual);
    // A non-canonical address has a page number no canonical one has: it is never found here.
    const page = Number(address >> 12n);
    const known = this.translations.get(page);
    if (known) return movedBy(known, Number(address & 0xfffn));
    const translation = this.walk(address);
    if (this.translations.size >= TRANSLATION_CACHE_PAGES)
      this.translations.delete(this.translations.keys().next().value!);
    this.translations.set(page, movedBy(translation, -Number(address & 0xfffn)));
    return translation;
  }

  private walk(address: bigint): Translation {
    if (!this.isCanonical(address))
      throw new PageFaultError(this.image.path, address, this.levels, 'non-canonical address');
    let tablePhysical = this.dtb;
    let writable = true;
    let user = true;
    let executable = true;
    for (let level: number = this.levels; level >= 1; level--) {
      const shift = 12n + 9n * BigInt(level - 1);
      const index = Number((address >> shift) & 0x1ffn);
      const entry = this.table(tablePhysical, address, level)[index]!;
      if ((entry & PRESENT) === 0n) throw new PageFaultError(this.image.path, address, level, 'entry not present');
      writable &&= (entry & WRITABLE) !== 0n;
      user &&= (entry & USER) !== 0n;
      executable &&= (entry & NO_EXECUTE) === 0n;
      const frame = entry & ADDRESS_MASK;
      const isLeaf = level === 1 || ((level === 2 || level === 3) && (entry & LARGE_PAGE) !== 0n);
      if (isLeaf) {
        const pageMask = (1n << shift) - 1n;
        const physical = Number((frame & ~pageMask) | (address & pageMask));
        return { physical, pageSize: Number(1n << shift), writable, user, executable };
      }
      tablePhysical = Number(frame);
    }
    throw new Error('unreachable: level 1 is always a leaf');
  }

  /** Read virtual memory across page boundaries; throws PageFaultError or AbsentMemoryError at the first bad byte. */
  read(virtual: bigint, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const at = BigInt.asUintN(64, virtual + BigInt(done));
      const translation = this.translate(at);
      const inPage = Number(at & BigInt(translation.pageSize - 1));
      const length = Math.min(into.length - done, translation.pageSize - inPage);
      this.readPhysical(translation.physical, into.subarray(done, done + length));
      done += length;
    }
  }

  /**
   * A kernel object's fields are read one at a time, and each read of the image is a system call
   * (or a decompression): a small read is served from a copy of its whole physical page, read
   * once. A page not wholly in the image, and a read crossing pages, go to the image as they are,
   * so a read fails exactly where it did before.
   */
  private readPhysical(physical: number, into: Uint8Array): void {
    const offset = physical % PAGE_SIZE;
    if (into.length > SMALL_READ || offset + into.length > PAGE_SIZE) return this.image.read(physical, into);
    const start = physical - offset;
    let page = this.pages.get(start);
    if (!page) {
      page = new Uint8Array(PAGE_SIZE);
      if (this.image.readPresent(start, page) < PAGE_SIZE) return this.image.read(physical, into);
      if (this.pages.size >= SMALL_READ_CACHE_PAGES) this.pages.delete(this.pages.keys().next().value!);
      this.pages.set(start, page);
    }
    into.set(page.subarray(offset, offset + into.length));
  }

  readU64(virtual: bigint): bigint {
    this.read(virtual, this.scratch);
    return new DataView(this.scratch.buffer).getBigUint64(0, true);
  }

  /**
   * Every mapping of the space in virtual order, merged into runs. `from`/`to` bound the virtual
   * range (to exclusive, both canonical); the walk touches only present entries, so its cost is
   * bounded by the size of the page tables, not of the address space.
   *
   * Each table is decoded by the WASM kernel into its present entries, physically contiguous
   * leaves already joined (src/kernels/pageTables.ts); the walk here descends depth-first into the
   * entries that point to tables, one frame per open table, and reads a table only when it
   * reaches it. Runs of adjacent tables are joined here.
   */
  /** Table references skipped by mappings() because the table was reached before in the same walk (see openTable). */
  aliasedTables = 0;

  *mappings(from = 0n, to = 1n << 64n): Generator<MappingRun> {
    // Distinct tables cannot outnumber physical pages; more visits than that means tables that
    // point back into themselves (a hostile or corrupt space), which would otherwise walk 2^36 leaves.
    // A process's own (lower) half is a tree of tables: there, one reached twice is a crafted
    // loop or alias (see openTable). The kernel's half legitimately shares tables between mappings.
    const userHalfOnly = to <= 1n << BigInt(this.addressBits - 1);
    const budget = {
      tables: 2 * Math.ceil(this.image.totalBytes / PAGE_SIZE) + 16,
      seen: userHalfOnly ? new Set<number>() : undefined,
    };
    let pending:
      | { virtual: bigint; physical: number; length: number; writable: boolean; user: boolean; executable: boolean }
      | undefined;
    const open: TableFrame[] = [];
    const root = this.openTable(this.dtb, this.levels, 0n, true, true, true, from, to, budget);
    if (root) open.push(root);
    while (open.length > 0) {
      const frame = open[open.length - 1]!;
      const record = frame.records[frame.next++];
      if (!record) {
        open.pop();
        continue;
      }
      const writable = frame.writable && record.writable;
      const user = frame.user && record.user;
      const executable = frame.executable && !record.noExecute;
      if (!record.leaf) {
        let start = frame.base + BigInt(record.index) * frame.span;
        if (frame.level === this.levels && record.index >= 256)
          start |= ~((1n << BigInt(this.addressBits)) - 1n) & ((1n << 64n) - 1n);
        if (start + frame.span <= from || start >= to) continue;
        const table = this.openTable(
          record.physical,
          frame.level - 1,
          start,
          writable,
          user,
          executable,
          from,
          to,
          budget,
        );
        if (table) open.push(table);
        continue;
      }
      // Leaves sit at levels 1–3, never at the top where the upper half is sign-extended: entry i
      // starts at base + i × span, and those overlapping [from, to) are [firstIndex, endIndex).
      const first = Math.max(record.index, frame.firstIndex);
      const end = Math.min(record.index + record.count, frame.endIndex);
      if (first >= end) continue;
      const virtual = frame.base + BigInt(first) * frame.span;
      const physical = record.physical + (first - record.index) * frame.pageSize;
      const length = (end - first) * frame.pageSize;
      if (
        pending &&
        pending.virtual + BigInt(pending.length) === virtual &&
        pending.physical + pending.length === physical &&
        pending.writable === writable &&
        pending.user === user &&
        pending.executable === executable
      ) {
        pending.length += length;
      } else {
        if (pending) yield pending;
        pending = { virtual, physical, length, writable, user, executable };
      }
    }
    if (pending) yield pending;
  }

  /** The table at `tablePhysical` decoded for the walk, counted against the budget; undefined when it is outside the image (it maps nothing we can read). */
  private openTable(
    tablePhysical: number,
    level: number,
    base: bigint,
    writable: boolean,
    user: boolean,
    executable: boolean,
    from: bigint,
    to: bigint,
    budget: { tables: number; seen: Set<number> | undefined },
  ): TableFrame | undefined {
    // A process's tables form a tree: one table reached twice in one walk of the user half (an
    // entry pointing back at its own table, many entries aliasing one table of 1 GiB pages) is a
    // crafted loop that would make the walk yield the same mappings 2^27 times. Each table is
    // walked once.
    if (budget.seen?.has(tablePhysical)) {
      this.aliasedTables++;
      return undefined;
    }
    budget.seen?.add(tablePhysical);
    if (--budget.tables < 0) {
      throw new VmscopeError(
        'CORRUPT_STRUCTURE',
        `page tables under DTB 0x${this.dtb.toString(16)} reference more tables than the image has pages (a cycle?)`,
        this.image.path,
        tablePhysical,
      );
    }
    const span = 1n << (12n + 9n * BigInt(level - 1));
    let entries: BigUint64Array;
    try {
      entries = this.table(tablePhysical, base, level);
    } catch (error) {
      if (error instanceof PageFaultError) return undefined;
      throw error;
    }
    return {
      records: this.decoder(new Uint8Array(entries.buffer, entries.byteOffset, PAGE_SIZE), level),
      next: 0,
      level,
      base,
      span,
      pageSize: Number(span),
      firstIndex: from > base ? Number((from - base) / span) : 0,
      endIndex: to > base ? Number((to - base + span - 1n) / span) : 0,
      writable,
      user,
      executable,
    };
  }
}
