import { VmscopeError } from '../util/errors.js';
import { DecodedImage, readExactly } from './decodedImage.js';
import { MigrationPageTable, ZERO_PAGE } from './migrationPageTable.js';
import { readHeader, type ByteSource } from './source.js';
import { StreamReader } from './streamReader.js';
import type { FormatDetails, PhysicalRange } from './types.js';

/**
 * The QEMU migration stream (`migrate "exec:cat > FILE"`, `virsh save`/`managedsave`, OpenStack
 * suspend), version 3, optionally behind libvirt's save-image header. The RAM section is indexed
 * in one pass: after its MEM_SIZE list of RAM blocks, each item is a big-endian u64 of page
 * address | flags, then (without RAM_SAVE_FLAG_CONTINUE) the block's idstr, then a zero page's
 * one fill byte or a normal page's 4 KiB, until RAM_SAVE_FLAG_EOS. A page sent again (a dirty page
 * of a live migration) replaces the earlier copy. Page bytes are stored raw in the stream, so reads
 * are positional reads of the file (consecutive pages coalesced) and zero pages are zeros by the
 * stream's own word. Device sections carry no length: RAM is complete before the first one (QEMU
 * saves iterable sections, RAM, before the device state), so the index stops there; a non-RAM
 * iterable section (block migration, dirty bitmaps) cannot be skipped and is refused by name.
 */
export const QEVM_MAGIC = 0x5145564d;
const LIBVIRT_MAGICS = ['LibvirtQemudSave', 'LibvirtQemudPart'] as const;
/** virQEMUSaveHeader: magic[16], version, data_len, was_running, compressed, cookieOffset, unused[14]. */
const LIBVIRT_HEADER_BYTES = 92;
const LIBVIRT_COMPRESSIONS = ['raw', 'gzip', 'bzip2', 'xz', 'lzop', 'zstd'];
const PAGE_BYTES = 4096;
const PAGE_MASK = PAGE_BYTES - 1;

const QEMU_VM_EOF = 0x00;
const QEMU_VM_SECTION_START = 0x01;
const QEMU_VM_SECTION_PART = 0x02;
const QEMU_VM_SECTION_END = 0x03;
const QEMU_VM_SECTION_FULL = 0x04;
const QEMU_VM_SUBSECTION = 0x05;
const QEMU_VM_CONFIGURATION = 0x07;
const QEMU_VM_COMMAND = 0x08;
const QEMU_VM_SECTION_FOOTER = 0x7e;

const RAM_SAVE_FLAG_ZERO = 0x02;
const RAM_SAVE_FLAG_MEM_SIZE = 0x04;
const RAM_SAVE_FLAG_PAGE = 0x08;
const RAM_SAVE_FLAG_EOS = 0x10;
const RAM_SAVE_FLAG_CONTINUE = 0x20;
const RAM_SAVE_FLAG_XBZRLE = 0x40;
const RAM_SAVE_FLAG_HOOK = 0x80;
const RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100;
const RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;

/** Pages stored at most this far apart in the stream (a page header, a block name) are fetched with one read. */
const SPAN_GAP_BYTES = 512;
const MAX_SPAN_BYTES = 8 << 20;

interface RamBlock {
  readonly name: string;
  readonly bytes: number;
  readonly pages: MigrationPageTable;
}

/** Where a piece of a RAM block lies in guest-physical memory. */
interface Mapping {
  readonly physical: number;
  readonly length: number;
  readonly block: RamBlock;
  readonly blockOffset: number;
}

export function isMigrationStream(head: Uint8Array): boolean {
  const text = String.fromCharCode(...head.subarray(0, 16));
  if ((LIBVIRT_MAGICS as readonly string[]).includes(text)) return true;
  return head.length >= 4 && new DataView(head.buffer, head.byteOffset).getUint32(0, false) === QEVM_MAGIC;
}

export function openMigrationStream(source: ByteSource): MigrationImage {
  let start = 0;
  let wrapper: string | undefined;
  const magic = new Uint8Array(16);
  source.readAt(0, magic);
  const text = String.fromCharCode(...magic);
  if ((LIBVIRT_MAGICS as readonly string[]).includes(text)) {
    const header = readHeader(source, 0, LIBVIRT_HEADER_BYTES, 'libvirt save-image header');
    const dataLength = header.getUint32(20, true);
    const compressed = header.getUint32(28, true);
    if (compressed !== 0) {
      const name = LIBVIRT_COMPRESSIONS[compressed] ?? `format ${compressed}`;
      throw new VmscopeError(
        'COMPRESSED_INPUT',
        `libvirt compressed this saved image's QEMU stream with ${name}: decompress the bytes after offset 0x${(LIBVIRT_HEADER_BYTES + dataLength).toString(16)} first`,
        source.path,
        28,
      );
    }
    start = LIBVIRT_HEADER_BYTES + dataLength;
    wrapper =
      text === 'LibvirtQemudPart'
        ? 'libvirt save image (LibvirtQemudPart: the save did not finish)'
        : 'libvirt save image';
  }
  const head = readHeader(source, start, 8, 'QEMU migration stream header');
  if (head.getUint32(0, false) !== QEVM_MAGIC)
    throw new VmscopeError(
      'CORRUPT_HEADER',
      'no QEVM magic where the QEMU migration stream should start',
      source.path,
      start,
    );
  const version = head.getUint32(4, false);
  if (version !== 3)
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `QEMU migration stream version ${version} is not supported (only 3)`,
      source.path,
      start + 4,
    );
  const reader = new StreamReader(source, start + 8);
  const state = new StreamIndex(source.path);
  state.run(reader);
  const mappings = guestPhysicalMappings(state.blocks, state.machine);
  const ranges = presentRanges(mappings);
  const details: FormatDetails = {
    version,
    ...(state.machine === undefined ? {} : { machine: state.machine }),
    ...(wrapper === undefined ? {} : { wrapper }),
    ramBlocks: [...state.blocks.values()].map((block) => ({
      name: block.name,
      bytes: block.bytes,
      mappedAt: mappings.filter((mapping) => mapping.block === block).map((mapping) => mapping.physical),
    })),
  };
  return new MigrationImage(source, ranges, details, mappings);
}

/** The one-pass walk of the stream up to the device state. */
class StreamIndex {
  readonly blocks = new Map<string, RamBlock>();
  machine: string | undefined;
  private ramSection: number | undefined;
  private ramComplete = false;
  /** The block of the last page with an idstr: RAM_SAVE_FLAG_CONTINUE refers to it across sections, as QEMU's loader keeps it. */
  private current: RamBlock | undefined;

  constructor(private readonly path: string) {}

  run(reader: StreamReader): void {
    for (;;) {
      if (reader.atEnd) {
        if (this.ramComplete) return;
        throw new VmscopeError(
          'TRUNCATED_FILE',
          'migration stream ends before its RAM section is complete',
          this.path,
          reader.position,
        );
      }
      const at = reader.position;
      const type = reader.u8('a section type');
      switch (type) {
        case QEMU_VM_EOF:
          return this.requireRam(at);
        case QEMU_VM_CONFIGURATION:
          this.configuration(reader);
          break;
        case QEMU_VM_COMMAND: {
          reader.u16be('a command');
          reader.skip(reader.u16be('a command length'), 'a command');
          break;
        }
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL: {
          const sectionId = reader.u32be('a section id');
          const name = reader.shortString('a section name');
          reader.u32be('an instance id');
          reader.u32be('a section version');
          if (type === QEMU_VM_SECTION_FULL) {
            // Device state: RAM is complete before it; its fields carry no lengths to skip by.
            return this.requireRam(at);
          }
          if (name !== 'ram') {
            throw new VmscopeError(
              'UNKNOWN_FORMAT',
              `iterable section "${name}" cannot be skipped (the stream gives no length); only RAM is read`,
              this.path,
              at,
            );
          }
          this.ramSection = sectionId;
          this.ramItems(reader);
          this.footer(reader, sectionId);
          break;
        }
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END: {
          const sectionId = reader.u32be('a section id');
          if (sectionId !== this.ramSection) {
            throw new VmscopeError(
              'UNKNOWN_FORMAT',
              `section ${sectionId} is not the RAM section and cannot be skipped`,
              this.path,
              at,
            );
          }
          this.ramItems(reader);
          this.footer(reader, sectionId);
          if (type === QEMU_VM_SECTION_END) this.ramComplete = true;
          break;
        }
        default:
          throw new VmscopeError(
            'CORRUPT_HEADER',
            `byte 0x${type.toString(16)} is not a migration section type`,
            this.path,
            at,
          );
      }
    }
  }

  private requireRam(at: number): void {
    if (!this.ramComplete)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        'device state or end of stream before the RAM section ended',
        this.path,
        at,
      );
  }

  /** The machine type, then the subsections QEMU 7-9 may add (target page bits, capabilities, uuid). */
  private configuration(reader: StreamReader): void {
    const length = reader.u32be('the configuration name length');
    if (length > 256)
      throw new VmscopeError('CORRUPT_HEADER', `machine name of ${length} bytes`, this.path, reader.position - 4);
    this.machine = String.fromCharCode(...reader.bytes(length, 'the machine name'));
    while (!reader.atEnd && reader.peek('a subsection') === QEMU_VM_SUBSECTION) {
      const at = reader.position;
      reader.u8('a subsection');
      const name = reader.shortString('a subsection name');
      reader.u32be('a subsection version');
      if (name === 'configuration/target-page-bits') {
        const bits = reader.u32be('the target page bits');
        if (bits !== 12)
          throw new VmscopeError(
            'UNKNOWN_FORMAT',
            `target pages of 2^${bits} bytes: only 4 KiB pages are read`,
            this.path,
            at,
          );
      } else if (name === 'configuration/capabilities') {
        const count = reader.u32be('the capability count');
        for (let i = 0; i < count; i++) reader.shortString('a capability');
      } else if (name === 'configuration/uuid') {
        reader.skip(16, 'the VM uuid');
      } else {
        throw new VmscopeError(
          'UNKNOWN_FORMAT',
          `configuration subsection "${name}" is unknown and carries no length`,
          this.path,
          at,
        );
      }
    }
  }

  private footer(reader: StreamReader, sectionId: number): void {
    if (reader.atEnd || reader.peek('a section footer') !== QEMU_VM_SECTION_FOOTER) return;
    const at = reader.position;
    reader.u8('a section footer');
    const id = reader.u32be('a section footer id');
    if (id !== sectionId)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `section footer names section ${id}, expected ${sectionId}`,
        this.path,
        at,
      );
  }

  /** RAM items up to and including RAM_SAVE_FLAG_EOS. */
  private ramItems(reader: StreamReader): void {
    for (;;) {
      const at = reader.position;
      const word = reader.u64be('a RAM item');
      const flags = Number(word & BigInt(PAGE_MASK));
      const address = word & ~BigInt(PAGE_MASK);
      if (flags & RAM_SAVE_FLAG_MEM_SIZE) {
        this.blockList(reader, address);
        continue;
      }
      if (flags & RAM_SAVE_FLAG_EOS) return;
      if (flags & (RAM_SAVE_FLAG_XBZRLE | RAM_SAVE_FLAG_COMPRESS_PAGE | RAM_SAVE_FLAG_HOOK)) {
        throw new VmscopeError(
          'UNKNOWN_FORMAT',
          `RAM item flags 0x${flags.toString(16)}: XBZRLE, compressed or RDMA pages are not supported (migrate without those capabilities)`,
          this.path,
          at,
        );
      }
      if (flags === RAM_SAVE_FLAG_MULTIFD_FLUSH) continue;
      if (
        !(flags & (RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_PAGE)) ||
        (flags & ~(RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_CONTINUE)) !== 0
      ) {
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `RAM item flags 0x${flags.toString(16)} are not a page`,
          this.path,
          at,
        );
      }
      if (!(flags & RAM_SAVE_FLAG_CONTINUE)) {
        const nameAt = reader.position;
        const name = reader.shortString('a RAM block id');
        this.current = this.blocks.get(name);
        if (!this.current)
          throw new VmscopeError(
            'CORRUPT_HEADER',
            `RAM block "${name}" was never declared in the stream's block list`,
            this.path,
            nameAt,
          );
      } else if (!this.current) {
        throw new VmscopeError(
          'CORRUPT_HEADER',
          'RAM_SAVE_FLAG_CONTINUE on the first page: no block to continue',
          this.path,
          at,
        );
      }
      const current = this.current;
      if (address >= BigInt(current.bytes)) {
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `page 0x${address.toString(16)} is past the end of RAM block "${current.name}" (0x${current.bytes.toString(16)} bytes)`,
          this.path,
          at,
        );
      }
      const page = Number(address) / PAGE_BYTES;
      if (flags & RAM_SAVE_FLAG_ZERO) {
        const fill = reader.u8('a zero page fill byte');
        if (fill !== 0)
          throw new VmscopeError(
            'CORRUPT_HEADER',
            `zero page with fill byte 0x${fill.toString(16)}`,
            this.path,
            reader.position - 1,
          );
        current.pages.set(page, ZERO_PAGE);
      } else {
        current.pages.set(page, reader.position);
        reader.skip(PAGE_BYTES, 'a RAM page');
      }
    }
  }

  private blockList(reader: StreamReader, total: bigint): void {
    let remaining = total;
    while (remaining > 0n) {
      const at = reader.position;
      const name = reader.shortString('a RAM block id');
      const bytes = reader.u64be('a RAM block length');
      if (bytes > remaining || (bytes & BigInt(PAGE_MASK)) !== 0n || bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `RAM block "${name}" of 0x${bytes.toString(16)} bytes does not fit the declared 0x${total.toString(16)} total`,
          this.path,
          at,
        );
      }
      if (this.blocks.has(name))
        throw new VmscopeError('CORRUPT_HEADER', `RAM block "${name}" is declared twice`, this.path, at);
      this.blocks.set(name, {
        name,
        bytes: Number(bytes),
        pages: new MigrationPageTable(),
      });
      remaining -= bytes;
    }
  }
}

/**
 * Guest-physical placement of the RAM blocks, as QEMU's x86 machines lay them out: `pc.ram` below
 * 4 GiB up to the PCI hole and the rest from 4 GiB (i440fx: 3 GiB when RAM reaches 3.5 GiB, q35:
 * 2 GiB when RAM reaches 2.75 GiB), `pc.bios` just below 4 GiB. ROM blobs (`/rom@etc/...`,
 * `pc.rom`, option ROMs) are not guest RAM and stay unmapped (listed in the details).
 */
function guestPhysicalMappings(blocks: ReadonlyMap<string, RamBlock>, machine: string | undefined): Mapping[] {
  const mappings: Mapping[] = [];
  const isQ35 = machine !== undefined && /q35/.test(machine);
  const ram = blocks.get('pc.ram');
  if (ram) {
    const lowLimit = isQ35
      ? ram.bytes >= 0xb0000000
        ? 0x80000000
        : ram.bytes
      : ram.bytes >= 0xe0000000
        ? 0xc0000000
        : ram.bytes;
    const below = Math.min(ram.bytes, lowLimit);
    mappings.push({ physical: 0, length: below, block: ram, blockOffset: 0 });
    if (ram.bytes > below)
      mappings.push({ physical: 2 ** 32, length: ram.bytes - below, block: ram, blockOffset: below });
  }
  const bios = blocks.get('pc.bios');
  if (bios && bios.bytes <= 16 << 20)
    mappings.push({ physical: 2 ** 32 - bios.bytes, length: bios.bytes, block: bios, blockOffset: 0 });
  return mappings.sort((a, b) => a.physical - b.physical);
}

/** Runs of pages the stream holds (sent as data or as zero pages). */
function presentRanges(mappings: readonly Mapping[]): PhysicalRange[] {
  return mappings.flatMap((mapping) => {
    const firstPage = mapping.blockOffset / PAGE_BYTES;
    return mapping.block.pages.presentRuns(firstPage, mapping.length / PAGE_BYTES).map((run) => ({
      start: mapping.physical + (run.start - firstPage) * PAGE_BYTES,
      end: mapping.physical + (run.end - firstPage) * PAGE_BYTES,
      fileOffset: -1,
    }));
  });
}

export class MigrationImage extends DecodedImage {
  /** Reused for the spans of pages a long read fetches (at most MAX_SPAN_BYTES). */
  private spanBuffer = new Uint8Array(0);

  constructor(
    source: ByteSource,
    ranges: PhysicalRange[],
    details: FormatDetails,
    private readonly mappings: readonly Mapping[],
  ) {
    super(source, 'migration', ranges, details);
  }

  private mappingAt(physical: number): Mapping {
    const mapping = this.mappings.find(
      (candidate) => physical >= candidate.physical && physical < candidate.physical + candidate.length,
    );
    if (!mapping)
      throw new VmscopeError(
        'ABSENT_MEMORY',
        `physical 0x${physical.toString(16)} is in no RAM block`,
        this.path,
        physical,
      );
    return mapping;
  }

  protected fill(physical: number, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const at = physical + done;
      const mapping = this.mappingAt(at);
      const blockAt = mapping.blockOffset + (at - mapping.physical);
      const page = Math.floor(blockAt / PAGE_BYTES);
      const within = blockAt - page * PAGE_BYTES;
      const entry = mapping.block.pages.get(page);
      let length = Math.min(into.length - done, PAGE_BYTES - within, mapping.physical + mapping.length - at);
      if (entry === ZERO_PAGE) {
        into.fill(0, done, done + length);
      } else {
        const room = Math.min(into.length - done, mapping.physical + mapping.length - at);
        length = this.readPages(mapping, page, within, length, into.subarray(done, done + room));
      }
      done += length;
    }
  }

  /**
   * Page `page` of the mapping's block from `within` (`firstLength` bytes of it) into the start
   * of `into`, and the pages the stream stores close behind it (each behind its 8-byte header)
   * into the rest of `into`, as far as they go: one read of the span holding them instead of one
   * per page. Returns the bytes filled.
   */
  private readPages(mapping: Mapping, page: number, within: number, firstLength: number, into: Uint8Array): number {
    const pages = mapping.block.pages;
    const pageEnd = (mapping.blockOffset + mapping.length) / PAGE_BYTES;
    const spanStart = pages.get(page) + within;
    let filled = firstLength;
    let last = page;
    while (filled < into.length && last + 1 < pageEnd) {
      const next = pages.get(last + 1);
      const previousEnd = pages.get(last) + PAGE_BYTES;
      // ZERO_PAGE and ABSENT_PAGE entries are negative: they end the span like a page stored elsewhere.
      if (next < previousEnd || next - previousEnd > SPAN_GAP_BYTES || next + PAGE_BYTES - spanStart > MAX_SPAN_BYTES)
        break;
      filled = Math.min(into.length, filled + PAGE_BYTES);
      last++;
    }
    const what = `RAM pages 0x${(page * PAGE_BYTES).toString(16)}-0x${(last * PAGE_BYTES + PAGE_MASK).toString(16)} of "${mapping.block.name}"`;
    if (last === page) {
      readExactly(this.source, spanStart, into.subarray(0, filled), what);
      return filled;
    }
    const lastBytes = filled - firstLength - (last - page - 1) * PAGE_BYTES;
    const spanLength = pages.get(last) + lastBytes - spanStart;
    if (this.spanBuffer.length < spanLength)
      this.spanBuffer = new Uint8Array(Math.max(spanLength, 2 * this.spanBuffer.length));
    const span = this.spanBuffer.subarray(0, spanLength);
    readExactly(this.source, spanStart, span, what);
    into.set(span.subarray(0, firstLength));
    for (let at = page + 1, to = firstLength; at <= last; at++, to += PAGE_BYTES) {
      const from = pages.get(at) - spanStart;
      into.set(span.subarray(from, from + Math.min(PAGE_BYTES, filled - to)), to);
    }
    return filled;
  }
}
