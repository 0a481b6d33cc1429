import { AbsentMemoryError, VmscopeError } from '../util/errors.js';
import { ByteLruCache, cacheBudgetFromEnvironment } from './byteCache.js';
import { rangeIndexOf } from './rangeImage.js';
import type { ByteSource } from './source.js';
import type { CpuState, ElfNote, FormatDetails, ImageFormat, MemoryImage, PhysicalRange } from './types.js';

/**
 * Below this budget a cache keeps only the units (pages, chunks) a read cuts at its edges, which
 * the next read asks for again. A reader given a small cache reads every byte once (a scan
 * thread: 256 KiB), so a unit a read covers whole would be evicted before anyone asked again:
 * inserting it only cost the Map and the garbage collector (measured about 8% of an AVML scan).
 */
const KEEP_WHOLE_UNITS_MIN_BYTES = 16 << 20;

/**
 * Base of the formats whose memory is not stored as plain file ranges (kdump pages, AVML snappy
 * chunks, migration-stream pages): the present ranges come from the format's index, and each
 * format fills present bytes its own way through one byte-bounded cache of decoded units shared by
 * every reader of the image. Ranges carry `fileOffset: -1`: their bytes are not contiguous in the file.
 */
export abstract class DecodedImage implements MemoryImage {
  readonly path: string;
  readonly totalBytes: number;
  protected readonly cache: ByteLruCache;
  /** Whether units a read covers whole enter the cache (see KEEP_WHOLE_UNITS_MIN_BYTES). */
  protected readonly keepsWholeUnits: boolean;

  constructor(
    protected readonly source: ByteSource,
    readonly format: ImageFormat,
    readonly ranges: readonly PhysicalRange[],
    readonly details: FormatDetails,
    readonly notes: readonly ElfNote[] = [],
    readonly cpus: readonly CpuState[] = [],
    cacheBytes: number | undefined = undefined,
  ) {
    this.path = source.path;
    this.totalBytes = ranges.reduce((sum, range) => sum + (range.end - range.start), 0);
    this.cache = new ByteLruCache(cacheBytes ?? cacheBudgetFromEnvironment());
    this.keepsWholeUnits = this.cache.budgetBytes >= KEEP_WHOLE_UNITS_MIN_BYTES;
  }

  /** Fill `into` with the bytes at `physical`, all of which lie inside one present range. */
  protected abstract fill(physical: number, into: Uint8Array): void;

  readPresent(physical: number, into: Uint8Array): number {
    let filled = 0;
    let index = rangeIndexOf(this.ranges, physical);
    while (filled < into.length && index >= 0 && index < this.ranges.length) {
      const range = this.ranges[index]!;
      const at = physical + filled;
      if (at < range.start || at >= range.end) break;
      const length = Math.min(into.length - filled, range.end - at);
      this.fill(at, into.subarray(filled, filled + length));
      filled += length;
      index += 1;
    }
    return filled;
  }

  read(physical: number, into: Uint8Array): void {
    const filled = this.readPresent(physical, into);
    if (filled < into.length) throw new AbsentMemoryError(this.path, physical + filled, into.length - filled);
  }

  close(): void {
    this.cache.clear();
    this.source.close();
  }
}

/** True when `image`'s memory is decoded (its ranges are a DecodedImage's), however it was opened. */
export function isDecodedImage(image: MemoryImage): boolean {
  return image.ranges.some((range) => range.fileOffset === -1);
}

/** Read exactly `into.length` bytes at `offset` or fail naming where the file ends. */
export function readExactly(source: ByteSource, offset: number, into: Uint8Array, what: string): void {
  const got = source.readAt(offset, into);
  if (got < into.length) {
    throw new VmscopeError(
      'TRUNCATED_FILE',
      `file ends inside ${what} (${got} of ${into.length} bytes at 0x${offset.toString(16)})`,
      source.path,
      offset + got,
    );
  }
}
