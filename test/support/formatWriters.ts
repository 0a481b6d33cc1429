import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import snappy from 'snappyjs';
import type { ElfNote, MemoryImage } from '../../src/image/types.js';

/**
 * Writers of capture formats for tests, from any image: the kdump-compressed layout (every
 * header version, every page compression, a chosen set of pages excluded as a dump level would),
 * makedumpfile's flattened stream of any file, a libvirt save-image header before a migration
 * stream, and whole-file zstd/gzip/xz copies. They write what the format specifications say, so
 * a reader that agrees with them and with QEMU's own files has read the format, not our writer.
 */
const PAGE = 4096;
const PAGE_DESC_BYTES = 24;
const CODEC_FLAG = { none: 0, zlib: 0x1, lzo: 0x2, snappy: 0x4, zstd: 0x20 } as const;
export type KdumpCodec = keyof typeof CODEC_FLAG;

export interface KdumpOptions {
  readonly codec: KdumpCodec;
  readonly signature?: 'KDUMP   ' | 'DISKDUMP';
  readonly version?: 1 | 2 | 3 | 4 | 5 | 6;
  /** Recorded in the sub-header; the caller excludes pages to match it. */
  readonly dumpLevel?: number;
  /** Page frame numbers left out of bitmap 2 (as a dump level excludes user or free pages). */
  readonly exclude?: ReadonlySet<number>;
  /** Leave all-zero pages out too (dump level bit 1) instead of pointing them at the shared zero page. */
  readonly excludeZeroPages?: boolean;
  /** Written into the sub-header (v3+): the VMCOREINFO text. */
  readonly vmcoreinfo?: string;
  /** Written into the sub-header (v4+): the ELF notes (CPU state). */
  readonly notes?: readonly ElfNote[];
  /** One file of a split dump (v2+, makedumpfile --split): full bitmaps, descriptors and data of [startPfn, endPfn) only. */
  readonly split?: { readonly startPfn: number; readonly endPfn: number };
}

/** Per-page encoders: real compression where a package writes it; zstd and lzo as valid frames of stored data. */
function encodePage(codec: KdumpCodec, page: Uint8Array): Uint8Array {
  switch (codec) {
    case 'none':
      return page;
    case 'zlib':
      return deflateSync(page);
    case 'snappy':
      return snappy.compress(page);
    case 'zstd':
      return zstdStoredFrame(page);
    case 'lzo':
      return lzoLiteralStream(page);
  }
}

/** A zstd frame of one block: RLE when the page is one byte repeated, else raw (RFC 8878 §3.1.1). */
export function zstdStoredFrame(data: Uint8Array): Uint8Array {
  const uniform = data.every((byte) => byte === data[0]);
  // Frame header: single segment, 2-byte content size (value - 256).
  const header = [0x28, 0xb5, 0x2f, 0xfd, 0x60, (data.length - 256) & 0xff, (data.length - 256) >> 8];
  const blockHeader = (type: number): number[] => {
    const value = (data.length << 3) | (type << 1) | 1;
    return [value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff];
  };
  if (uniform) return Uint8Array.from([...header, ...blockHeader(1), data[0]!]);
  const frame = new Uint8Array(header.length + 3 + data.length);
  frame.set([...header, ...blockHeader(0)]);
  frame.set(data, header.length + 3);
  return frame;
}

/** An LZO1X stream of one literal run and the end marker (what lzo1x_1 emits for incompressible data). */
export function lzoLiteralStream(data: Uint8Array): Uint8Array {
  const bytes: number[] = [];
  if (data.length <= 238) {
    bytes.push(17 + data.length);
  } else {
    let count = data.length - 3 - 15;
    bytes.push(0);
    while (count > 255) {
      bytes.push(0);
      count -= 255;
    }
    bytes.push(count);
  }
  const stream = new Uint8Array(bytes.length + data.length + 3);
  stream.set(bytes);
  stream.set(data, bytes.length);
  stream.set([0x11, 0, 0], bytes.length + data.length);
  return stream;
}

function encodeNotes(notes: readonly ElfNote[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const note of notes) {
    const name = new TextEncoder().encode(`${note.name}\0`);
    const nameBytes = Math.ceil(name.length / 4) * 4;
    const descBytes = Math.ceil(note.desc.length / 4) * 4;
    const part = new Uint8Array(12 + nameBytes + descBytes);
    const view = new DataView(part.buffer);
    view.setUint32(0, name.length, true);
    view.setUint32(4, note.desc.length, true);
    view.setUint32(8, note.type, true);
    part.set(name, 12);
    part.set(note.desc, 12 + nameBytes);
    parts.push(part);
  }
  return concat(parts);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The kdump-compressed file of `image`'s memory (4 KiB blocks), page by page into `path`. */
export function writeKdump(image: MemoryImage, path: string, options: KdumpOptions): { dumpedPages: number } {
  const version = options.version ?? 6;
  const signature = options.signature ?? 'KDUMP   ';
  const maxMapnr = Math.ceil(Math.max(...image.ranges.map((range) => range.end)) / PAGE);
  const bitmapBytes = Math.ceil(Math.ceil(maxMapnr / 8) / PAGE) * PAGE;
  const bitmap1 = new Uint8Array(bitmapBytes);
  const bitmap2 = new Uint8Array(bitmapBytes);
  const page = new Uint8Array(PAGE);
  const isZero = (bytes: Uint8Array): boolean => bytes.every((byte) => byte === 0);
  for (const range of image.ranges) {
    for (let at = range.start; at < range.end; at += PAGE) {
      const pfn = at / PAGE;
      bitmap1[pfn >> 3]! |= 1 << (pfn & 7);
      if (options.exclude?.has(pfn)) continue;
      if (options.excludeZeroPages) {
        image.read(at, page);
        if (isZero(page)) continue;
      }
      bitmap2[pfn >> 3]! |= 1 << (pfn & 7);
    }
  }
  const vmcoreinfo =
    version >= 3 && options.vmcoreinfo !== undefined ? new TextEncoder().encode(options.vmcoreinfo) : new Uint8Array(0);
  const notes = version >= 4 && options.notes ? encodeNotes(options.notes) : new Uint8Array(0);
  const subHeaderBytes = 104 + notes.length + vmcoreinfo.length;
  const subHeaderBlocks = signature === 'DISKDUMP' ? 0 : Math.ceil(subHeaderBytes / PAGE);
  const bitmapOffset = (1 + subHeaderBlocks) * PAGE;
  const descriptorsOffset = bitmapOffset + 2 * bitmapBytes;
  const firstPfn = options.split?.startPfn ?? 0;
  const endPfn = options.split?.endPfn ?? maxMapnr;
  const dumped = (pfn: number): boolean =>
    pfn >= firstPfn && pfn < endPfn && (bitmap2[pfn >> 3]! & (1 << (pfn & 7))) !== 0;
  let dumpedPages = 0;
  for (let pfn = firstPfn; pfn < endPfn; pfn++) if (dumped(pfn)) dumpedPages++;

  const fd = openSync(path, 'w');
  try {
    const header = new Uint8Array(PAGE);
    const view = new DataView(header.buffer);
    header.set(new TextEncoder().encode(signature), 0);
    view.setInt32(8, version, true);
    view.setUint32(424, CODEC_FLAG[options.codec], true);
    view.setInt32(428, PAGE, true);
    view.setInt32(432, subHeaderBlocks, true);
    view.setUint32(436, (2 * bitmapBytes) / PAGE, true);
    view.setUint32(440, maxMapnr, true);
    view.setInt32(460, Math.max(1, image.cpus.length), true);
    writeSync(fd, header, 0, PAGE, 0);
    if (subHeaderBlocks > 0) {
      const sub = new Uint8Array(subHeaderBlocks * PAGE);
      const subView = new DataView(sub.buffer);
      subView.setInt32(8, options.dumpLevel ?? 1, true);
      const notesAt = PAGE + 104;
      const vmcoreinfoAt = notesAt + notes.length;
      if (version >= 3 && vmcoreinfo.length > 0) {
        subView.setBigUint64(32, BigInt(vmcoreinfoAt), true);
        subView.setBigUint64(40, BigInt(vmcoreinfo.length), true);
      }
      if (version >= 4 && notes.length > 0) {
        subView.setBigUint64(48, BigInt(notesAt), true);
        subView.setBigUint64(56, BigInt(notes.length), true);
      }
      if (version >= 6) subView.setBigUint64(96, BigInt(maxMapnr), true);
      if (version >= 2 && options.split) {
        subView.setInt32(12, 1, true);
        subView.setBigUint64(version >= 6 ? 80 : 16, BigInt(firstPfn), true);
        subView.setBigUint64(version >= 6 ? 88 : 24, BigInt(endPfn), true);
      }
      sub.set(notes, 104);
      sub.set(vmcoreinfo, 104 + notes.length);
      writeSync(fd, sub, 0, sub.length, PAGE);
    }
    writeSync(fd, bitmap1, 0, bitmapBytes, bitmapOffset);
    writeSync(fd, bitmap2, 0, bitmapBytes, bitmapOffset + bitmapBytes);

    const diskdump = signature === 'DISKDUMP';
    let dataAt = descriptorsOffset + (diskdump ? 0 : dumpedPages * PAGE_DESC_BYTES);
    const zeroPageAt = dataAt;
    if (!diskdump) {
      writeSync(fd, new Uint8Array(PAGE), 0, PAGE, dataAt);
      dataAt += PAGE;
    }
    const descriptors = new Uint8Array(dumpedPages * PAGE_DESC_BYTES);
    const descriptorView = new DataView(descriptors.buffer);
    let index = 0;
    for (let pfn = firstPfn; pfn < endPfn; pfn++) {
      if (!dumped(pfn)) continue;
      image.read(pfn * PAGE, page);
      if (diskdump) {
        writeSync(fd, page, 0, PAGE, dataAt);
        dataAt += PAGE;
        index++;
        continue;
      }
      let offset = zeroPageAt;
      let size = PAGE;
      let flags = 0;
      if (!isZero(page)) {
        const encoded = encodePage(options.codec, page);
        // makedumpfile stores a page raw when compression does not shrink it; our stored-data
        // zstd and lzo frames are kept anyway so every page goes through the decoder.
        const keep =
          options.codec !== 'none' && (encoded.length < PAGE || options.codec === 'zstd' || options.codec === 'lzo');
        const stored = keep ? encoded : page;
        writeSync(fd, stored, 0, stored.length, dataAt);
        offset = dataAt;
        size = stored.length;
        flags = keep ? CODEC_FLAG[options.codec] : 0;
        dataAt += stored.length;
      }
      const at = index * PAGE_DESC_BYTES;
      descriptorView.setBigInt64(at, BigInt(offset), true);
      descriptorView.setUint32(at + 8, size, true);
      descriptorView.setUint32(at + 12, flags, true);
      index++;
    }
    if (!diskdump) writeSync(fd, descriptors, 0, descriptors.length, descriptorsOffset);
  } finally {
    closeSync(fd);
  }
  return { dumpedPages };
}

/**
 * makedumpfile's flattened stream of a random-access file: the 4 KiB header, then (BE offset,
 * BE size) records of `recordBytes` each in file order, and the (-1, -1) end record. The first
 * block is first written as garbage and written again at the end, as a writer seeking back does:
 * the later record must win.
 */
export function writeFlattened(source: string, path: string, recordBytes = 1 << 20): void {
  const size = statSync(source).size;
  const input = openSync(source, 'r');
  const output = openSync(path, 'w');
  let at = 0;
  const put = (bytes: Uint8Array): void => {
    writeSync(output, bytes, 0, bytes.length, at);
    at += bytes.length;
  };
  const record = (offset: number, data: Uint8Array): void => {
    const head = new DataView(new ArrayBuffer(16));
    head.setBigInt64(0, BigInt(offset), false);
    head.setBigInt64(8, BigInt(data.length), false);
    put(new Uint8Array(head.buffer));
    put(data);
  };
  try {
    const header = new Uint8Array(4096);
    header.set(new TextEncoder().encode('makedumpfile'), 0);
    const headerView = new DataView(header.buffer);
    headerView.setBigInt64(16, 1n, false);
    headerView.setBigInt64(24, 1n, false);
    put(header);
    const first = new Uint8Array(Math.min(size, 4096));
    readSync(input, first, 0, first.length, 0);
    record(0, new Uint8Array(first.length).fill(0xa5));
    for (let offset = first.length; offset < size; offset += recordBytes) {
      const chunk = new Uint8Array(Math.min(recordBytes, size - offset));
      readSync(input, chunk, 0, chunk.length, offset);
      record(offset, chunk);
    }
    record(0, first);
    const end = new DataView(new ArrayBuffer(16));
    end.setBigInt64(0, -1n, false);
    end.setBigInt64(8, -1n, false);
    put(new Uint8Array(end.buffer));
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

/** A libvirt save image (`virsh save`): the 92-byte header, the domain XML padded, then the QEMU stream. */
export function writeLibvirtSave(
  migration: string,
  path: string,
  magic: 'LibvirtQemudSave' | 'LibvirtQemudPart' = 'LibvirtQemudSave',
): void {
  const xml = new TextEncoder().encode('<domain type="kvm"><name>lab</name></domain>\n\0');
  const dataLength = Math.ceil((92 + xml.length) / 4096) * 4096 - 92;
  const header = new Uint8Array(92 + dataLength);
  const view = new DataView(header.buffer);
  header.set(new TextEncoder().encode(magic), 0);
  view.setUint32(16, 2, true);
  view.setUint32(20, dataLength, true);
  view.setUint32(24, 1, true);
  header.set(xml, 92);
  const output = openSync(path, 'w');
  const input = openSync(migration, 'r');
  try {
    writeSync(output, header, 0, header.length, 0);
    const chunk = new Uint8Array(16 << 20);
    for (let offset = 0; ; offset += chunk.length) {
      const got = readSync(input, chunk, 0, chunk.length, offset);
      if (got === 0) break;
      writeSync(output, chunk, 0, got, header.length + offset);
    }
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

/** `path` compressed as a whole with the zstd, gzip or xz command. */
export function compressWhole(source: string, path: string, compression: 'zstd' | 'gzip' | 'xz'): void {
  const command = {
    zstd: ['zstd', '-q', '-1', '-T2', '-f', '-c'],
    gzip: ['gzip', '-1', '-c'],
    xz: ['xz', '-0', '-T2', '-c'],
  }[compression];
  const output = openSync(path, 'w');
  try {
    const result = spawnSync(command[0]!, [...command.slice(1), source], { stdio: ['ignore', output, 'pipe'] });
    if (result.status !== 0) throw new Error(`${command[0]} failed: ${result.stderr}`);
  } finally {
    closeSync(output);
  }
}

/** One page of a synthetic migration stream: a block offset and its bytes (all zero: sent as a zero page). */
export interface MigrationPage {
  readonly block: string;
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/**
 * A QEMU migration stream (version 3) as QEMU 7.2 writes it for a stopped guest: the machine type
 * in the configuration section, the "ram" section's block list, the pages (idstr on the first page
 * of each run of one block, RAM_SAVE_FLAG_CONTINUE after it; zero pages as one fill byte), section
 * footers, the end of RAM, then EOF. Blocks may be far larger than the pages sent (sparse), so the
 * guest-physical placement of multi-GiB RAM can be tested without the memory.
 */
export function migrationStream(
  machine: string,
  blocks: ReadonlyArray<{ name: string; bytes: number }>,
  pages: readonly MigrationPage[],
): Uint8Array {
  const out: number[] = [];
  const u8 = (value: number) => out.push(value & 0xff);
  const u32 = (value: number) => [24, 16, 8, 0].forEach((shift) => u8(value >>> shift));
  const u64 = (value: bigint) =>
    [56n, 48n, 40n, 32n, 24n, 16n, 8n, 0n].forEach((shift) => u8(Number((value >> shift) & 0xffn)));
  const idstr = (text: string) => {
    u8(text.length);
    for (const char of text) u8(char.charCodeAt(0));
  };
  const footer = (section: number) => {
    u8(0x7e);
    u32(section);
  };
  u32(0x5145564d);
  u32(3);
  u8(0x07);
  u32(machine.length);
  for (const char of machine) u8(char.charCodeAt(0));
  const ramSection = 2;
  u8(0x01);
  u32(ramSection);
  idstr('ram');
  u32(0);
  u32(4);
  u64(BigInt(blocks.reduce((sum, block) => sum + block.bytes, 0)) | 0x04n);
  for (const block of blocks) {
    idstr(block.name);
    u64(BigInt(block.bytes));
  }
  u64(0x10n);
  footer(ramSection);
  u8(0x02);
  u32(ramSection);
  let last: string | undefined;
  for (const page of pages) {
    const zero = page.bytes.every((byte) => byte === 0);
    const continued = page.block === last;
    u64(BigInt(page.offset) | (zero ? 0x02n : 0x08n) | (continued ? 0x20n : 0n));
    if (!continued) idstr(page.block);
    last = page.block;
    if (zero) u8(0);
    else for (const byte of page.bytes) u8(byte);
  }
  u64(0x10n);
  footer(ramSection);
  u8(0x03);
  u32(ramSection);
  u64(0x10n);
  footer(ramSection);
  u8(0x00);
  return Uint8Array.from(out);
}
