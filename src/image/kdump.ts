import { VmscopeError } from '../util/errors.js';
import { decodeExactly, type Codec } from './codecs.js';
import { DecodedImage, readExactly } from './decodedImage.js';
import { cpuStates, parseNotes } from './elf.js';
import { HELPER_BUSY, InflateAhead, type AheadPlan } from './inflateAhead.js';
import { inflatePaired, pairedInput } from './pairedInflate.js';
import { rangesWithout } from './rangeView.js';
import { readHeader, type ByteSource } from './source.js';
import type { ElfNote, FormatDetails, PhysicalRange } from './types.js';

/**
 * The kdump-compressed format (makedumpfile, QEMU `dump-guest-memory -z/-l/-s`, `virsh dump
 * --format=kdump-*`; `DISKDUMP` is its uncompressed ancestor), as makedumpfile's diskdump_mod.h
 * lays it out, in blocks of `block_size` bytes:
 *   block 0: disk_dump_header (signature, header_version 1-6, utsname, status, block_size, sizes);
 *   blocks 1..sub_hdr_size: kdump_sub_header (phys_base, dump_level, split pfns (v2), VMCOREINFO (v3),
 *     ELF notes (v4), erase info (v5), 64-bit start/end pfn and max_mapnr (v6));
 *   bitmap_blocks blocks: bitmap 1 (pages that exist) then bitmap 2 (pages dumped), one bit per pfn;
 *   one 24-byte page_desc {offset, size, flags, page_flags} per bit set in bitmap 2, in pfn order;
 *   the pages' data (one shared zero page, then each page, compressed or not).
 * A page's descriptor is found by counting the set bits of bitmap 2 before it: per-group prefix
 * sums make that a lookup plus at most one group's popcount. Pages not in bitmap 2 (excluded by
 * the dump level, or never written in an incomplete dump) are absent, never zeros.
 */
export const KDUMP_SIGNATURES = ['KDUMP   ', 'DISKDUMP'] as const;
const HEADER_BYTES = 464;
const SUB_HEADER_BYTES = 104;
/** A page_desc: the stored offset (i64) at 0, then the stored size (u32) and flags (u32), then page_flags (u64). */
const PAGE_DESC_BYTES = 24;
const PAGE_DESC_SIZE_AT = 8;
const PAGE_DESC_FLAGS_AT = 12;
/** disk_dump_header.status bits. */
const DUMP_DH_COMPRESSED_ZLIB = 0x1;
const DUMP_DH_COMPRESSED_LZO = 0x2;
const DUMP_DH_COMPRESSED_SNAPPY = 0x4;
const DUMP_DH_COMPRESSED_INCOMPLETE = 0x8;
const DUMP_DH_COMPRESSED_ZSTD = 0x20;
const CODEC_FLAGS: ReadonlyArray<[number, Codec]> = [
  [DUMP_DH_COMPRESSED_ZLIB, 'zlib'],
  [DUMP_DH_COMPRESSED_LZO, 'lzo'],
  [DUMP_DH_COMPRESSED_SNAPPY, 'snappy'],
  [DUMP_DH_COMPRESSED_ZSTD, 'zstd'],
];
/** A page's flags as stored: no codec bit (the page as is), or exactly one. */
const CODEC_OF_FLAGS = new Map<number, Codec | undefined>([[0, undefined], ...CODEC_FLAGS]);
/** pfns per prefix-sum group: 64 bytes of bitmap, so a lookup counts at most 64 bytes. */
const GROUP_PFNS = 512;
/** Descriptors read (and cached) together for single-page reads. */
const DESCRIPTORS_PER_CHUNK = 1024;
/** Descriptors read together when walking many of them (nonZeroRanges, the plan of pages inflated ahead): 1.5 MiB. */
const DESCRIPTORS_PER_WALK = 65536;
/** Distinct pages pointed at more than once whose bytes are checked for zeros (QEMU and makedumpfile share one). */
const MAX_SHARED_PAGES_CHECKED = 16;
/** Pages a long read handles together: a 4 MiB scan window of 4 KiB pages. */
const BATCH_PAGES = 1024;
/** Fewer zlib pages than this are not worth a thread. */
const AHEAD_MIN_PAGES = 1024;
/** Stored pages at most this far apart in the file are fetched with one read of the span holding them. */
const SPAN_GAP_BYTES = 64 << 10;
const MAX_SPAN_BYTES = 8 << 20;
/** A bitmap larger than this would describe more than 16 TiB of 4 KiB pages: a corrupt header. */
const MAX_BITMAP_BYTES = 1 << 30;
const MAX_NOTE_BYTES = 64 << 20;
const MAX_VMCOREINFO_BYTES = 1 << 20;

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, byte) => {
  let count = 0;
  for (let bits = byte; bits; bits &= bits - 1) count++;
  return count;
});

export function isKdump(head: Uint8Array): boolean {
  const text = String.fromCharCode(...head.subarray(0, 8));
  return (KDUMP_SIGNATURES as readonly string[]).includes(text);
}

interface KdumpLayout {
  readonly version: number;
  readonly isDiskdump: boolean;
  readonly status: number;
  readonly blockSize: number;
  readonly dumpLevel: number | undefined;
  readonly maxMapnr: number;
  readonly startPfn: number;
  readonly endPfn: number;
  readonly bitmap2Offset: number;
  readonly descriptorsOffset: number;
  readonly notes: ElfNote[];
}

export function openKdump(
  source: ByteSource,
  fileLayout: 'random-access' | 'flattened' = 'random-access',
  options: { readonly cacheBytes?: number; readonly readAhead?: boolean } = {},
): KdumpImage {
  const layout = parseLayout(source);
  const index = new DumpedPageIndex(source, layout);
  const complete = (layout.status & DUMP_DH_COMPRESSED_INCOMPLETE) === 0;
  const ranges = complete
    ? bitmapRuns(index.bitmap, layout.startPfn, layout.endPfn, layout.blockSize)
    : writtenRuns(source, layout, index);
  const compression = CODEC_FLAGS.filter(([flag]) => (layout.status & flag) !== 0).map(([, codec]) => codec);
  const presentBytes = ranges.reduce((sum, range) => sum + (range.end - range.start), 0);
  const details: FormatDetails = {
    layout: fileLayout,
    compression: compression.length > 0 ? compression : ['none'],
    ...(layout.dumpLevel === undefined ? {} : { dumpLevel: layout.dumpLevel }),
    complete,
    version: layout.version,
    excludedBytes: layout.maxMapnr * layout.blockSize - presentBytes,
  };
  return new KdumpImage(source, layout, index, ranges, details, options);
}

function parseLayout(source: ByteSource): KdumpLayout {
  const header = readHeader(source, 0, HEADER_BYTES, 'kdump disk_dump_header');
  const signature = String.fromCharCode(...new Uint8Array(header.buffer, 0, 8));
  if (!(KDUMP_SIGNATURES as readonly string[]).includes(signature))
    throw new VmscopeError('UNKNOWN_FORMAT', `signature "${signature}" is not KDUMP or DISKDUMP`, source.path, 0);
  const isDiskdump = signature === 'DISKDUMP';
  const version = header.getInt32(8, true);
  if (version < 1 || version > 6)
    throw new VmscopeError('CORRUPT_HEADER', `kdump header version ${version} is not one of 1-6`, source.path, 8);
  const status = header.getUint32(424, true);
  const blockSize = header.getInt32(428, true);
  if (blockSize < 1024 || blockSize > 1 << 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `block size ${blockSize} is not a page size (a power of two, 1 KiB to 64 KiB)`,
      source.path,
      428,
    );
  }
  const subHeaderBlocks = header.getInt32(432, true);
  const bitmapBlocks = header.getUint32(436, true);
  if (subHeaderBlocks < 0 || subHeaderBlocks > 1 << 16)
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `sub-header size ${subHeaderBlocks} blocks is not plausible`,
      source.path,
      432,
    );
  const bitmapBytes = bitmapBlocks * blockSize;
  if (bitmapBlocks === 0 || bitmapBlocks % 2 !== 0 || bitmapBytes > MAX_BITMAP_BYTES) {
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `bitmap of ${bitmapBlocks} blocks is not two equal bitmaps of plausible size`,
      source.path,
      436,
    );
  }
  let maxMapnr = header.getUint32(440, true);
  let startPfn = 0;
  let endPfn = maxMapnr;
  let dumpLevel: number | undefined;
  const notes: ElfNote[] = [];
  if (!isDiskdump && subHeaderBlocks > 0) {
    const sub = readHeader(
      source,
      blockSize,
      Math.min(SUB_HEADER_BYTES, subHeaderBlocks * blockSize),
      'kdump sub-header',
    );
    const field = (at: number, what: string): number => {
      const value = sub.getBigUint64(at, true);
      if (value > BigInt(Number.MAX_SAFE_INTEGER))
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `${what} 0x${value.toString(16)} is beyond any real size`,
          source.path,
          blockSize + at,
        );
      return Number(value);
    };
    dumpLevel = sub.getInt32(8, true);
    const split = version >= 2 && sub.getInt32(12, true) !== 0;
    if (version >= 6) maxMapnr = field(96, 'max_mapnr_64');
    endPfn = maxMapnr;
    if (split) {
      startPfn = version >= 6 ? field(80, 'start_pfn_64') : field(16, 'start_pfn');
      endPfn = version >= 6 ? field(88, 'end_pfn_64') : field(24, 'end_pfn');
      if (startPfn > endPfn || endPfn > maxMapnr)
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `split pfn range 0x${startPfn.toString(16)}-0x${endPfn.toString(16)} is not inside 0-0x${maxMapnr.toString(16)}`,
          source.path,
          blockSize + 16,
        );
    }
    if (version >= 4) {
      const offset = field(48, 'note offset');
      const size = field(56, 'note size');
      if (size > 0) {
        if (size > MAX_NOTE_BYTES)
          throw new VmscopeError(
            'CORRUPT_HEADER',
            `ELF notes of ${size} bytes are implausibly large`,
            source.path,
            blockSize + 56,
          );
        notes.push(...parseNotes(source, offset, size));
      }
    }
    if (version >= 3 && !notes.some((note) => note.name === 'VMCOREINFO')) {
      const offset = field(32, 'VMCOREINFO offset');
      const size = field(40, 'VMCOREINFO size');
      if (size > 0) {
        if (size > MAX_VMCOREINFO_BYTES)
          throw new VmscopeError(
            'CORRUPT_HEADER',
            `VMCOREINFO of ${size} bytes is implausibly large`,
            source.path,
            blockSize + 40,
          );
        const desc = new Uint8Array(size);
        readExactly(source, offset, desc, 'the VMCOREINFO text');
        notes.push({ name: 'VMCOREINFO', type: 0, descFileOffset: offset, desc });
      }
    }
  }
  const bitmapOffset = (1 + subHeaderBlocks) * blockSize;
  if (maxMapnr > (bitmapBytes / 2) * 8) {
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `max_mapnr 0x${maxMapnr.toString(16)} needs more bits than the ${bitmapBytes / 2}-byte bitmap holds`,
      source.path,
      version >= 6 ? blockSize + 96 : 440,
    );
  }
  return {
    version,
    isDiskdump,
    status,
    blockSize,
    dumpLevel,
    maxMapnr,
    startPfn,
    endPfn,
    bitmap2Offset: bitmapOffset + bitmapBytes / 2,
    descriptorsOffset: bitmapOffset + bitmapBytes,
    notes,
  };
}

/** Bitmap 2 and its per-group prefix sums: a dumped page's descriptor index without a linear count. */
class DumpedPageIndex {
  readonly bitmap: Uint8Array;
  /** Set bits of bitmap 2 before each group of GROUP_PFNS pfns. */
  private readonly groupPrefix: Float64Array;
  private readonly firstIndex: number;
  readonly dumpedPages: number;

  constructor(source: ByteSource, layout: KdumpLayout) {
    const { maxMapnr, startPfn, endPfn } = layout;
    const bitmap = new Uint8Array(Math.ceil(maxMapnr / 8));
    readExactly(source, layout.bitmap2Offset, bitmap, 'bitmap 2 (dumped pages)');
    // Bits at or past max_mapnr are ignored, so a stray bit there cannot claim a descriptor.
    if (maxMapnr % 8 !== 0) bitmap[bitmap.length - 1]! &= (1 << (maxMapnr % 8)) - 1;
    const groups = Math.ceil(maxMapnr / GROUP_PFNS);
    const groupPrefix = new Float64Array(groups + 1);
    const groupBytes = GROUP_PFNS / 8;
    for (let group = 0; group < groups; group++) {
      let count = 0;
      const end = Math.min(bitmap.length, (group + 1) * groupBytes);
      for (let at = group * groupBytes; at < end; at++) count += POPCOUNT[bitmap[at]!]!;
      groupPrefix[group + 1] = groupPrefix[group]! + count;
    }
    this.bitmap = bitmap;
    this.groupPrefix = groupPrefix;
    this.firstIndex = countBits(bitmap, groupPrefix, startPfn);
    this.dumpedPages = countBits(bitmap, groupPrefix, endPfn) - this.firstIndex;
    const complete = (layout.status & DUMP_DH_COMPRESSED_INCOMPLETE) === 0;
    const perPage = layout.isDiskdump ? layout.blockSize : PAGE_DESC_BYTES;
    const tableEnd = layout.descriptorsOffset + this.dumpedPages * perPage;
    if (complete && tableEnd > source.size) {
      const held = Math.max(0, Math.floor((source.size - layout.descriptorsOffset) / perPage));
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `bitmap 2 claims ${this.dumpedPages} dumped pages but the file ends after ${held} ${layout.isDiskdump ? 'pages' : 'page descriptors'} (needs 0x${tableEnd.toString(16)} bytes, has 0x${source.size.toString(16)})`,
        source.path,
        layout.bitmap2Offset,
      );
    }
  }

  /** Position of page `pfn` among the dumped pages (its descriptor's index). */
  indexOf(pfn: number): number {
    return countBits(this.bitmap, this.groupPrefix, pfn) - this.firstIndex;
  }
}

/**
 * Up to `count` descriptors from `first` on; zeros past the end of the file (an incomplete dump's
 * unwritten ones). Into the start of `reused` when given (large enough), else into a new buffer.
 */
function readDescriptors(
  source: ByteSource,
  layout: KdumpLayout,
  dumpedPages: number,
  first: number,
  count = DESCRIPTORS_PER_CHUNK,
  reused?: Uint8Array,
): Uint8Array {
  const length = Math.max(0, Math.min(count, dumpedPages - first)) * PAGE_DESC_BYTES;
  const table = reused ? reused.subarray(0, length) : new Uint8Array(length);
  const got = source.readAt(layout.descriptorsOffset + first * PAGE_DESC_BYTES, table);
  table.fill(0, got);
  return table;
}

/** An incomplete dump's pages: those whose descriptor was written (offset non-zero) and whose data lies in the file. */
function writtenRuns(source: ByteSource, layout: KdumpLayout, index: DumpedPageIndex): PhysicalRange[] {
  const runs: PhysicalRange[] = [];
  let chunk = -1;
  let table: Uint8Array = new Uint8Array(0);
  for (const run of bitmapRuns(index.bitmap, layout.startPfn, layout.endPfn, layout.blockSize)) {
    for (let at = run.start; at < run.end; at += layout.blockSize) {
      const position = index.indexOf(at / layout.blockSize);
      let written: boolean;
      if (layout.isDiskdump) {
        written = layout.descriptorsOffset + (position + 1) * layout.blockSize <= source.size;
      } else {
        if (Math.floor(position / DESCRIPTORS_PER_CHUNK) !== chunk) {
          chunk = Math.floor(position / DESCRIPTORS_PER_CHUNK);
          table = readDescriptors(source, layout, index.dumpedPages, chunk * DESCRIPTORS_PER_CHUNK);
        }
        const view = new DataView(table.buffer, (position % DESCRIPTORS_PER_CHUNK) * PAGE_DESC_BYTES, PAGE_DESC_BYTES);
        const offset = Number(view.getBigInt64(0, true));
        written = offset > 0 && offset + view.getUint32(8, true) <= source.size;
      }
      if (!written) continue;
      const last = runs[runs.length - 1];
      if (last && last.end === at)
        runs[runs.length - 1] = { start: last.start, end: at + layout.blockSize, fileOffset: -1 };
      else runs.push({ start: at, end: at + layout.blockSize, fileOffset: -1 });
    }
  }
  return runs;
}

export class KdumpImage extends DecodedImage {
  private readonly blockSize: number;
  /** Reused for the spans of stored pages a long read fetches (at most MAX_SPAN_BYTES), when no helper thread shares them. */
  private spanBuffer = new Uint8Array(0);
  /** Reused by the walks over every descriptor (DESCRIPTORS_PER_WALK of them at a time): fresh memory costs a fault a page. */
  private walkBuffer: Uint8Array | undefined;
  private nonZero: readonly PhysicalRange[] | undefined;
  /** The zlib pages inflated ahead (null: none) and their stored offsets, ascending. */
  private readonly ahead: { readonly inflater: InflateAhead; readonly offsets: Float64Array } | null;

  constructor(
    source: ByteSource,
    private readonly layout: KdumpLayout,
    private readonly index: DumpedPageIndex,
    ranges: PhysicalRange[],
    details: FormatDetails,
    { cacheBytes, readAhead = false }: { readonly cacheBytes?: number; readonly readAhead?: boolean },
  ) {
    super(source, 'kdump', ranges, details, layout.notes, cpuStates(layout.notes), cacheBytes);
    this.blockSize = layout.blockSize;
    // At open: kernel discovery's first search reads low memory right after it.
    this.ahead = readAhead ? this.startInflatingAhead() : null;
  }

  /**
   * The present ranges without the zero pages: QEMU and makedumpfile store one page of zeros
   * first and point every zero page's descriptor at it (108,930 of the kdump capture's 131,136
   * pages). Stored pages otherwise follow one another in pfn order, so a descriptor pointing at or
   * before one already seen points at a shared page: it is left out when that page's bytes are all
   * zeros (checked once per shared page, for up to MAX_SHARED_PAGES_CHECKED of them). The first
   * page is checked too: the zero page is stored first, so when the first page is a zero page no
   * earlier descriptor points back at it. One walk over the descriptors.
   */
  nonZeroRanges(): readonly PhysicalRange[] {
    if (this.nonZero) return this.nonZero;
    if (this.layout.isDiskdump) return (this.nonZero = this.ranges);
    const zeroAt = new Map<number, boolean>();
    const isZeroPage = (pfn: number, offset: number): boolean => {
      let zero = zeroAt.get(offset);
      if (zero === undefined) {
        zero = zeroAt.size < MAX_SHARED_PAGES_CHECKED && this.page(pfn).every((byte) => byte === 0);
        zeroAt.set(offset, zero);
      }
      return zero;
    };
    const runs: PhysicalRange[] = [];
    let runStart = -1;
    let runEnd = -1;
    let highest = -1;
    let first: { pfn: number; offset: number } | undefined;
    let lastShared = -1;
    let lastSharedIsZero = false;
    this.forEachDescriptorTable((table, firstPfn, firstIndex, count) => {
      for (let within = 0; within < count; within++) {
        const pfn = firstPfn + within;
        const offset = this.offsetIn(table, within, firstIndex + within);
        first ??= { pfn, offset };
        if (offset > highest) highest = offset;
        else {
          if (offset !== lastShared) {
            lastShared = offset;
            lastSharedIsZero = isZeroPage(pfn, offset);
          }
          if (lastSharedIsZero) continue;
        }
        const start = pfn * this.blockSize;
        if (start !== runEnd) {
          if (runStart >= 0) runs.push({ start: runStart, end: runEnd, fileOffset: -1 });
          runStart = start;
        }
        runEnd = start + this.blockSize;
      }
    });
    if (runStart >= 0) runs.push({ start: runStart, end: runEnd, fileOffset: -1 });
    if (first && isZeroPage(first.pfn, first.offset))
      this.nonZero = rangesWithout(runs, first.pfn * this.blockSize, (first.pfn + 1) * this.blockSize);
    else this.nonZero = runs;
    return this.nonZero;
  }

  /**
   * Every zlib page inflated ahead by a helper thread (inflateAhead.ts), when this thread may have
   * one and they all fit in half the cache's budget (the rest of the budget stays the cache's): the
   * stored pages in file order, from one walk over the descriptors, which stops once they cannot
   * fit. The thread is started before the walk: it takes longer to start than the walk takes. A
   * page the walk finds unsound is left out: its first read reports it.
   */
  private startInflatingAhead(): KdumpImage['ahead'] {
    const zlib = (this.layout.status & DUMP_DH_COMPRESSED_ZLIB) !== 0;
    const eligible = zlib && !this.layout.isDiskdump && this.source.fileRegion !== undefined;
    const inflater = eligible && this.index.dumpedPages >= AHEAD_MIN_PAGES ? InflateAhead.spawn() : undefined;
    if (!inflater) return null;
    const plan = this.aheadPlan();
    if (!plan) {
      inflater.close();
      return null;
    }
    inflater.begin(plan);
    this.cache.reserve(inflater.bytes);
    return { inflater, offsets: plan.storedOffsets };
  }

  /** The zlib pages to inflate ahead (and their stored offsets, ascending), or null when too few, too many or unsound. */
  private aheadPlan(): (AheadPlan & { storedOffsets: Float64Array }) | null {
    const offsets: number[] = [];
    const lengths: number[] = [];
    const maxPages = Math.floor(this.cache.budgetBytes / 2 / this.blockSize);
    const sound = this.forEachStoredPage((offset, table, within) => {
      const size = table.getUint32(within * PAGE_DESC_BYTES + PAGE_DESC_SIZE_AT, true);
      const flags = table.getUint32(within * PAGE_DESC_BYTES + PAGE_DESC_FLAGS_AT, true);
      const plausible = size > 0 && size <= 2 * this.blockSize && offset + size <= this.source.size;
      if (flags === DUMP_DH_COMPRESSED_ZLIB && plausible) {
        offsets.push(offset);
        lengths.push(size);
      }
      return offsets.length <= maxPages;
    });
    if (!sound || offsets.length < AHEAD_MIN_PAGES || offsets.length > maxPages) return null;
    const fileOffsets = new Float64Array(offsets.length);
    let path: string | undefined;
    offsets.forEach((offset, slot) => {
      const region = this.source.fileRegion!(offset, lengths[slot]!);
      path ??= region?.path;
      fileOffsets[slot] = region !== undefined && region.path === path ? region.offset : -1;
    });
    if (path === undefined) return null;
    return {
      path,
      fileOffsets,
      storedLengths: Int32Array.from(lengths),
      pageLength: this.blockSize,
      storedOffsets: Float64Array.from(offsets),
    };
  }

  /**
   * Physical [start, end) is read late if at all (the kernel's text: MemoryImage.decodeLast): the
   * helper inflates its pages after the others. Its pages are the slots between the first and
   * the last of them: slots follow stored offsets, and stored pages follow pfns.
   */
  decodeLast(start: number, end: number): void {
    if (!this.ahead) return;
    let from = -1;
    let to = -1;
    const sound = this.forEachStoredPage(
      (offset) => {
        const slot = this.aheadSlotOf(offset);
        if (slot < 0) return;
        if (from < 0) from = slot;
        to = slot + 1;
      },
      start,
      end,
    );
    // A damaged descriptor table: the hint changes nothing.
    if (sound && from >= 0) this.ahead.inflater.deferLast(from, to);
  }

  /** The slot among the pages inflated ahead of the page stored at `offset`, or -1. */
  private aheadSlotOf(offset: number): number {
    if (!this.ahead) return -1;
    const { offsets } = this.ahead;
    let low = 0;
    let high = offsets.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (offsets[middle]! < offset) low = middle + 1;
      else high = middle;
    }
    return offsets[low] === offset ? low : -1;
  }

  override close(): void {
    this.ahead?.inflater.close();
    super.close();
  }

  /**
   * `visit(offset, table, within)` for each stored page once, in file order, of the present pages
   * in physical [start, end) (all by default), until it returns false: stored pages follow pfns, so
   * a descriptor pointing at or before the highest offset seen points at a shared page (QEMU's zero
   * page), visited already. The descriptor is `table`'s `within`-th. False when the walk meets a
   * damaged descriptor (the reads that reach it report it, where it is), else true.
   */
  private forEachStoredPage(
    visit: (offset: number, table: DataView, within: number) => boolean | void,
    start = 0,
    end = Infinity,
  ): boolean {
    let highest = -1;
    try {
      this.forEachDescriptorTable(
        (table, _firstPfn, firstIndex, count) => {
          for (let within = 0; within < count; within++) {
            const offset = this.offsetIn(table, within, firstIndex + within);
            if (offset <= highest) continue;
            highest = offset;
            if (visit(offset, table, within) === false) return false;
          }
          return true;
        },
        start,
        end,
      );
      return true;
    } catch (error) {
      if (error instanceof VmscopeError) return false;
      throw error;
    }
  }

  /**
   * `visit(table, firstPfn, firstIndex, count)` for the descriptors of every present page (of those
   * in physical [start, end)), in pfn order, DESCRIPTORS_PER_WALK at a time, until it returns
   * false: `table` holds those of pages `firstPfn` on (descriptor `firstIndex` on). A walk visits
   * 131,136 descriptors for 512 MiB: a call per table, not per page.
   */
  private forEachDescriptorTable(
    visit: (table: DataView, firstPfn: number, firstIndex: number, count: number) => boolean | void,
    start = 0,
    end = Infinity,
  ): void {
    this.walkBuffer ??= new Uint8Array(DESCRIPTORS_PER_WALK * PAGE_DESC_BYTES);
    for (const range of this.ranges) {
      const firstPfn = Math.floor(Math.max(range.start, start) / this.blockSize);
      const endPfn = Math.ceil(Math.min(range.end, end) / this.blockSize);
      const firstIndex = this.index.indexOf(firstPfn);
      for (let pfn = firstPfn; pfn < endPfn; pfn += DESCRIPTORS_PER_WALK) {
        const count = Math.min(DESCRIPTORS_PER_WALK, endPfn - pfn);
        const index = firstIndex + (pfn - firstPfn);
        const table = readDescriptors(this.source, this.layout, this.index.dumpedPages, index, count, this.walkBuffer);
        if (visit(new DataView(table.buffer, table.byteOffset, table.length), pfn, index, count) === false) return;
      }
    }
  }

  private descriptor(index: number): PageDescriptor {
    const chunk = Math.floor(index / DESCRIPTORS_PER_CHUNK);
    const bytes = this.cache.through(-1 - chunk, () =>
      readDescriptors(this.source, this.layout, this.index.dumpedPages, chunk * DESCRIPTORS_PER_CHUNK),
    );
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    return this.descriptorIn(view, index % DESCRIPTORS_PER_CHUNK, index);
  }

  /** Descriptor `index` of the dump, the `within`-th of `table`. */
  private descriptorIn(table: DataView, within: number, index: number): PageDescriptor {
    const byte = within * PAGE_DESC_BYTES;
    return {
      offset: this.offsetIn(table, within, index),
      size: table.getUint32(byte + PAGE_DESC_SIZE_AT, true),
      flags: table.getUint32(byte + PAGE_DESC_FLAGS_AT, true),
      at: this.layout.descriptorsOffset + index * PAGE_DESC_BYTES,
    };
  }

  /** The stored offset of descriptor `index`, the `within`-th of `table`. */
  private offsetIn(table: DataView, within: number, index: number): number {
    const byte = within * PAGE_DESC_BYTES;
    // The i64 offset as two halves: no BigInt per page; a file offset needs at most 53 bits.
    const high = table.getInt32(byte + 4, true);
    if (high < 0 || high >= 2 ** (53 - 32)) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `page descriptor offset ${table.getBigInt64(byte, true)} is not a file offset`,
        this.path,
        this.layout.descriptorsOffset + index * PAGE_DESC_BYTES,
      );
    }
    return high * 2 ** 32 + table.getUint32(byte, true);
  }

  /** The decoded page `pfn` (present: bitmap 2 has its bit). */
  private page(pfn: number): Uint8Array {
    const index = this.index.indexOf(pfn);
    if (this.layout.isDiskdump) {
      const offset = this.layout.descriptorsOffset + index * this.blockSize;
      return this.cache.through(offset, () => {
        const bytes = new Uint8Array(this.blockSize);
        readExactly(this.source, offset, bytes, `page 0x${pfn.toString(16)}`);
        return bytes;
      });
    }
    const descriptor = this.descriptor(index);
    // A page among those inflated ahead is this thread's to inflate when the helper has not done it.
    const slot = this.aheadSlotOf(descriptor.offset);
    const decodedHere = (): Uint8Array => {
      const codec = this.storedAs(pfn, descriptor);
      const stored = new Uint8Array(descriptor.size);
      readExactly(this.source, descriptor.offset, stored, `page 0x${pfn.toString(16)}`);
      return slot >= 0
        ? this.inflatedAhead(slot, stored, descriptor.offset)
        : this.decoded(codec, stored, descriptor.offset);
    };
    if (slot >= 0) return this.ahead!.inflater.take(slot) ?? decodedHere();
    return this.cache.through(descriptor.offset, decodedHere);
  }

  /** A page among those inflated ahead, inflated here into its slot; one that does not inflate to a page is reported by decodeExactly. */
  private inflatedAhead(slot: number, stored: Uint8Array, offset: number): Uint8Array {
    return this.ahead!.inflater.inflateHere(slot, stored) ?? this.decoded('zlib', stored, offset);
  }

  /** How the page is stored (undefined: as is), once its descriptor is known to be sound. */
  private storedAs(pfn: number, { offset, size, flags, at }: PageDescriptor): Codec | undefined {
    if (offset === 0)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `page 0x${pfn.toString(16)} has an empty descriptor in a dump marked complete`,
        this.path,
        at,
      );
    if (!CODEC_OF_FLAGS.has(flags)) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `page descriptor flags 0x${flags.toString(16)} name no single compression`,
        this.path,
        at + 12,
      );
    }
    const codec = CODEC_OF_FLAGS.get(flags);
    const limit = codec === undefined ? this.blockSize : 2 * this.blockSize;
    if (size === 0 || size > limit || (codec === undefined && size !== this.blockSize)) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `page descriptor size ${size} is not plausible for a ${this.blockSize}-byte page`,
        this.path,
        at + 8,
      );
    }
    if (offset + size > this.source.size) {
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `page 0x${pfn.toString(16)}'s data at 0x${offset.toString(16)}+0x${size.toString(16)} lies past the end of the file (0x${this.source.size.toString(16)})`,
        this.path,
        at,
      );
    }
    return codec;
  }

  private decoded(codec: Codec | undefined, stored: Uint8Array, offset: number): Uint8Array {
    return codec === undefined ? stored : decodeExactly(codec, stored, this.blockSize, this.path, offset);
  }

  protected fill(physical: number, into: Uint8Array): void {
    const firstPfn = Math.floor(physical / this.blockSize);
    const endPfn = Math.ceil((physical + into.length) / this.blockSize);
    if (endPfn - firstPfn === 1) {
      const within = physical - firstPfn * this.blockSize;
      into.set(this.page(firstPfn).subarray(within, within + into.length));
      return;
    }
    // Every page of the read is dumped (it lies in one present range), so their descriptors
    // (DISKDUMP: their pages) follow each other from the first one's.
    const firstIndex = this.index.indexOf(firstPfn);
    if (this.layout.isDiskdump) {
      const offset =
        this.layout.descriptorsOffset + firstIndex * this.blockSize + (physical - firstPfn * this.blockSize);
      readExactly(this.source, offset, into, `pages 0x${firstPfn.toString(16)}-0x${(endPfn - 1).toString(16)}`);
      return;
    }
    for (let pfn = firstPfn; pfn < endPfn; pfn += BATCH_PAGES)
      this.fillPages(pfn, firstIndex + (pfn - firstPfn), Math.min(BATCH_PAGES, endPfn - pfn), physical, into);
  }

  /**
   * Pages `firstPfn` on (descriptors from `firstIndex`) into the parts of `into` (memory from
   * `physical`) they cover: one read of their descriptors, the cached pages copied, the others'
   * stored bytes fetched in file order with one read per span of nearby pages (a page per read
   * cost more than inflating it), each decoded once however many descriptors share it (QEMU's
   * shared zero page), zlib pages on this thread and a helper thread together (pairedInflate.ts).
   */
  private fillPages(firstPfn: number, firstIndex: number, count: number, physical: number, into: Uint8Array): void {
    const table = readDescriptors(this.source, this.layout, this.index.dumpedPages, firstIndex, count);
    const view = new DataView(table.buffer, table.byteOffset, table.length);
    const readEnd = physical + into.length;
    const coveredWhole = (page: number): boolean => {
      const pageStart = (firstPfn + page) * this.blockSize;
      return pageStart >= physical && pageStart + this.blockSize <= readEnd;
    };
    const place = (page: number, bytes: Uint8Array): void => {
      const pageStart = (firstPfn + page) * this.blockSize;
      const from = Math.max(pageStart, physical);
      const to = Math.min(pageStart + this.blockSize, physical + into.length);
      into.set(
        from === pageStart && to - from === bytes.length ? bytes : bytes.subarray(from - pageStart, to - pageStart),
        from - physical,
      );
    };
    const pending: PendingPage[] = [];
    for (let page = 0; page < count; page++) {
      const descriptor = this.descriptorIn(view, page, firstIndex + page);
      const cached = this.cache.get(descriptor.offset);
      if (cached !== undefined) {
        place(page, cached);
        continue;
      }
      const slot = this.aheadSlotOf(descriptor.offset);
      const ready = slot >= 0 ? this.ahead!.inflater.peek(slot) : undefined;
      if (ready !== undefined) place(page, ready);
      else pending.push({ page, descriptor, codec: this.storedAs(firstPfn + page, descriptor), slot });
    }
    pending.sort((a, b) => a.descriptor.offset - b.descriptor.offset || a.page - b.page);
    // Slots follow stored offsets: this thread claims the pending ones upwards, the helper downwards.
    const ahead = pending.filter((entry) => entry.slot >= 0);
    if (ahead.length > 0) this.ahead!.inflater.announce(ahead[0]!.slot, ahead.at(-1)!.slot + 1);
    const what = `pages 0x${firstPfn.toString(16)}-0x${(firstPfn + count - 1).toString(16)}`;
    for (const group of spanGroups(pending)) {
      const { input, shared } = this.readSpans(group, what);
      const units = storedUnits(pending, group, input);
      const decoded = this.decodeUnits(pending, units, shared);
      units.forEach((unit, at) => {
        const bytes = decoded[at]!;
        const first = pending[unit.firstPending]!;
        // Stored pages are views of the reused input: cached only when shared, and then as a copy.
        // Inflated ones are cached when shared, cut by the read's edge or the cache is large (keepsWholeUnits),
        // unless inflated ahead: the pages inflated ahead stay where they are.
        const keep =
          unit.sharedBy > 1 || (unit.codec !== undefined && (this.keepsWholeUnits || !coveredWhole(first.page)));
        if (keep && first.slot < 0) this.cache.set(unit.offset, bytes);
        for (let entry = unit.firstPending; entry < unit.firstPending + unit.sharedBy; entry++)
          place(pending[entry]!.page, bytes);
      });
    }
  }

  /** The spans of a group read, one after another, into one buffer: shared with a helper thread when there is one. */
  private readSpans(group: readonly Span[], what: string): { input: Uint8Array; shared: boolean } {
    const bytes = group.reduce((sum, span) => sum + span.end - span.start, 0);
    let input = group.some((span) => span.zlib) ? pairedInput(bytes) : undefined;
    const shared = input !== undefined;
    if (input === undefined) {
      if (this.spanBuffer.length < bytes) this.spanBuffer = new Uint8Array(Math.max(bytes, 2 * this.spanBuffer.length));
      input = this.spanBuffer.subarray(0, bytes);
    }
    let at = 0;
    for (const span of group) {
      readExactly(this.source, span.start, input.subarray(at, at + span.end - span.start), what);
      at += span.end - span.start;
    }
    return { input, shared };
  }

  /**
   * Each unit's page: inflated, or its stored bytes (a copy when shared). zlib pages are shared out
   * with the helper thread when their stored bytes are in its input (`pairable`).
   */
  private decodeUnits(pending: readonly PendingPage[], units: readonly StoredUnit[], pairable: boolean): Uint8Array[] {
    const decoded: Uint8Array[] = new Array(units.length);
    const zlib: number[] = [];
    // Pages the helper inflating ahead is on: taken when this thread is done with the others.
    const helperBusy: number[] = [];
    units.forEach((unit, at) => {
      const slot = pending[unit.firstPending]!.slot;
      if (slot >= 0) {
        const claimed = this.ahead!.inflater.claim(slot);
        if (claimed === HELPER_BUSY) helperBusy.push(at);
        else decoded[at] = claimed ?? this.inflatedAhead(slot, unit.stored, unit.offset);
      } else if (unit.codec === 'zlib') zlib.push(at);
      else if (unit.codec !== undefined) decoded[at] = this.decoded(unit.codec, unit.stored, unit.offset);
      else decoded[at] = unit.sharedBy > 1 ? unit.stored.slice() : unit.stored;
    });
    const jobs = zlib.map((at) => ({ at: units[at]!.stored.byteOffset, length: units[at]!.stored.length }));
    // A page the pair did not inflate to a whole page is inflated here again: decodeExactly says why.
    const inflated = pairable ? inflatePaired(jobs, this.blockSize) : [];
    zlib.forEach((at, job) => {
      decoded[at] = inflated[job] ?? this.decoded('zlib', units[at]!.stored, units[at]!.offset);
    });
    for (const at of helperBusy) {
      const slot = pending[units[at]!.firstPending]!.slot;
      decoded[at] = this.ahead!.inflater.take(slot) ?? this.inflatedAhead(slot, units[at]!.stored, units[at]!.offset);
    }
    return decoded;
  }
}

interface PendingPage {
  readonly page: number;
  readonly descriptor: PageDescriptor;
  readonly codec: Codec | undefined;
  /** Its slot among the pages inflated ahead, which this thread has claimed; -1 for none. */
  readonly slot: number;
}

/** A zlib page inflated by a pair (pairedInflate.ts): one not among the pages inflated ahead. */
const pairsZlib = (page: PendingPage): boolean => page.codec === 'zlib' && page.slot < 0;

/** Pending pages `first`..`last` (in file order), stored within [start, end) of the file. */
interface Span {
  readonly first: number;
  readonly last: number;
  readonly start: number;
  readonly end: number;
  /** Whether it holds zlib pages a pair inflates. */
  readonly zlib: boolean;
}

/** One stored page of a group and the pending pages (consecutive) whose descriptors point at it. */
interface StoredUnit {
  readonly offset: number;
  readonly codec: Codec | undefined;
  readonly stored: Uint8Array;
  readonly firstPending: number;
  readonly sharedBy: number;
}

/**
 * Spans of pending pages (sorted by stored offset) whose stored bytes lie at most SPAN_GAP_BYTES
 * apart, each at most MAX_SPAN_BYTES, in groups of at most MAX_SPAN_BYTES read together.
 */
function spanGroups(pending: readonly PendingPage[]): Span[][] {
  const groups: Span[][] = [];
  let group: Span[] = [];
  let groupBytes = 0;
  for (let first = 0; first < pending.length;) {
    const start = pending[first]!.descriptor.offset;
    let end = start + pending[first]!.descriptor.size;
    let zlib = pairsZlib(pending[first]!);
    let last = first;
    while (last + 1 < pending.length) {
      const { offset, size } = pending[last + 1]!.descriptor;
      if (offset - end > SPAN_GAP_BYTES || Math.max(end, offset + size) - start > MAX_SPAN_BYTES) break;
      end = Math.max(end, offset + size);
      zlib ||= pairsZlib(pending[last + 1]!);
      last++;
    }
    if (group.length > 0 && groupBytes + end - start > MAX_SPAN_BYTES) {
      groups.push(group);
      group = [];
      groupBytes = 0;
    }
    group.push({ first, last, start, end, zlib });
    groupBytes += end - start;
    first = last + 1;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** The group's stored pages, each once, as views of `input` (the group's spans read one after another). */
function storedUnits(pending: readonly PendingPage[], group: readonly Span[], input: Uint8Array): StoredUnit[] {
  const units: StoredUnit[] = [];
  let spanAt = 0;
  for (const span of group) {
    for (let entry = span.first; entry <= span.last;) {
      const { descriptor, codec } = pending[entry]!;
      let sharedBy = 1;
      while (entry + sharedBy <= span.last && pending[entry + sharedBy]!.descriptor.offset === descriptor.offset)
        sharedBy++;
      const at = spanAt + descriptor.offset - span.start;
      units.push({
        offset: descriptor.offset,
        codec,
        stored: input.subarray(at, at + descriptor.size),
        firstPending: entry,
        sharedBy,
      });
      entry += sharedBy;
    }
    spanAt += span.end - span.start;
  }
  return units;
}

interface PageDescriptor {
  readonly offset: number;
  readonly size: number;
  readonly flags: number;
  /** File offset of the descriptor itself. */
  readonly at: number;
}

/** Set bits of `bitmap` below `pfn`. */
function countBits(bitmap: Uint8Array, groupPrefix: Float64Array, pfn: number): number {
  const group = Math.floor(pfn / GROUP_PFNS);
  let count = groupPrefix[Math.min(group, groupPrefix.length - 1)]!;
  if (group >= groupPrefix.length - 1) return count;
  const byteEnd = pfn >>> 3;
  for (let at = group * (GROUP_PFNS / 8); at < byteEnd; at++) count += POPCOUNT[bitmap[at]!]!;
  const bits = pfn & 7;
  if (bits) count += POPCOUNT[bitmap[byteEnd]! & ((1 << bits) - 1)]!;
  return count;
}

/** Runs of set bits in [startPfn, endPfn) as physical ranges. */
function bitmapRuns(bitmap: Uint8Array, startPfn: number, endPfn: number, blockSize: number): PhysicalRange[] {
  const runs: PhysicalRange[] = [];
  let runStart = -1;
  const close = (pfn: number): void => {
    if (runStart >= 0) runs.push({ start: runStart * blockSize, end: pfn * blockSize, fileOffset: -1 });
    runStart = -1;
  };
  for (let pfn = startPfn; pfn < endPfn;) {
    const byte = bitmap[pfn >>> 3]!;
    if ((pfn & 7) === 0 && pfn + 8 <= endPfn && (byte === 0 || byte === 0xff)) {
      if (byte === 0) close(pfn);
      else if (runStart < 0) runStart = pfn;
      pfn += 8;
      continue;
    }
    if (byte & (1 << (pfn & 7))) {
      if (runStart < 0) runStart = pfn;
    } else {
      close(pfn);
    }
    pfn++;
  }
  close(endPfn);
  return runs;
}
