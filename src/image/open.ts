import { VmscopeError } from '../util/errors.js';
import { AVML_MAGIC, openAvml } from './avml.js';
import { compressionOfHead, decompressedCopy } from './container.js';
import type { Compression } from './decompress.js';
import { openElfCore } from './elf.js';
import { FlattenedSource, isFlattened } from './flattened.js';
import { isKdump, openKdump } from './kdump.js';
import { LIME_MAGIC, openLime } from './lime.js';
import { isMigrationStream, openMigrationStream } from './migration.js';
import { RangeMappedImage } from './rangeImage.js';
import { FileSource, type ByteSource } from './source.js';
import type { CpuState, ElfNote, FormatDetails, ImageFormat, MemoryImage, PhysicalRange } from './types.js';

const DECOMPRESS_HINTS: Record<Compression, string> = {
  zstd: 'zstd -d --long=31 FILE',
  gzip: 'gunzip -k FILE',
  xz: 'xz -dk FILE',
};
const HEAD_BYTES = 32;

export interface OpenOptions {
  /**
   * Bytes of decoded pages/chunks the image keeps (compressed formats only). Default 256 MiB or
   * VMSCOPE_IMAGE_CACHE_MIB; a reader that passes over memory once (a scan thread) needs little.
   */
  readonly cacheBytes?: number;
  /**
   * The image will be read through (an analysis, not a look at its headers): a kdump's zlib pages
   * are then inflated ahead of need by a helper thread, started at open (inflateAhead.ts).
   */
  readonly readAhead?: boolean;
}

/**
 * Open a dump by content, not by name: ELF core, LiME, AVML, kdump-compressed (random-access or
 * flattened), QEMU migration stream (bare or in a libvirt save image) by their magic, anything
 * else is raw. A file compressed as a whole (zstd, gzip, xz) is read from a decompressed
 * temporary copy (container.ts); the image keeps the name the user gave.
 */
export function openImage(path: string, options: OpenOptions = {}): MemoryImage {
  const source = new FileSource(path);
  let compression: Compression | undefined;
  try {
    compression = compressionOfHead(headOf(source));
    if (compression === undefined) return openImageSource(source, options);
  } catch (error) {
    source.close();
    throw error;
  }
  source.close();
  const plain = new FileSource(decompressedCopy(path, compression));
  const named: ByteSource = {
    path,
    size: plain.size,
    readAt: (offset, into) => plain.readAt(offset, into),
    close: () => plain.close(),
  };
  try {
    return new ContainedImage(openImageSource(named, options), compression);
  } catch (error) {
    plain.close();
    throw error;
  }
}

function headOf(source: ByteSource): Uint8Array {
  const head = new Uint8Array(Math.min(HEAD_BYTES, source.size));
  source.readAt(0, head);
  return head;
}

export function openImageSource(source: ByteSource, options: OpenOptions = {}): MemoryImage {
  if (source.size === 0) throw new VmscopeError('EMPTY_FILE', 'the file is empty', source.path, 0);
  const head = headOf(source);
  const compression = compressionOfHead(head);
  if (compression !== undefined) {
    throw new VmscopeError(
      'COMPRESSED_INPUT',
      `this is ${compression}-compressed data; only a dump opened by path is decompressed (and only one level): decompress it first (${DECOMPRESS_HINTS[compression]})`,
      source.path,
      0,
    );
  }
  const view = new DataView(head.buffer);
  if (head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) {
    return openElfCore(source);
  }
  if (head.length >= 4 && view.getUint32(0, true) === LIME_MAGIC) return openLime(source);
  if (head.length >= 4 && view.getUint32(0, true) === AVML_MAGIC) return openAvml(source, options.cacheBytes);
  if (isKdump(head)) return openKdump(source, 'random-access', options);
  if (isFlattened(head)) return openKdump(new FlattenedSource(source), 'flattened', options);
  if (isMigrationStream(head)) return openMigrationStream(source);
  // Raw (pmemsave, /dev/mem copies, VMware .vmem): file offset = physical address, all present.
  return new RangeMappedImage(source, 'raw', [{ start: 0, end: source.size, fileOffset: 0 }]);
}

/** An image read from the decompressed copy of a compressed file: the inner format, plus `container`. */
class ContainedImage implements MemoryImage {
  readonly details: FormatDetails;
  readonly nonZeroRanges?: () => readonly PhysicalRange[];
  readonly decodeLast?: (start: number, end: number) => void;

  constructor(
    private readonly inner: MemoryImage,
    container: Compression,
  ) {
    this.details = { ...inner.details, container };
    if (inner.nonZeroRanges) this.nonZeroRanges = () => inner.nonZeroRanges!();
    if (inner.decodeLast) this.decodeLast = (start, end) => inner.decodeLast!(start, end);
  }

  get path(): string {
    return this.inner.path;
  }
  get format(): ImageFormat {
    return this.inner.format;
  }
  get ranges(): readonly PhysicalRange[] {
    return this.inner.ranges;
  }
  get totalBytes(): number {
    return this.inner.totalBytes;
  }
  get notes(): readonly ElfNote[] {
    return this.inner.notes;
  }
  get cpus(): readonly CpuState[] {
    return this.inner.cpus;
  }
  read(physical: number, into: Uint8Array): void {
    this.inner.read(physical, into);
  }
  readPresent(physical: number, into: Uint8Array): number {
    return this.inner.readPresent(physical, into);
  }
  close(): void {
    this.inner.close();
  }
}
