import { AbsentMemoryError, VmscopeError } from '../util/errors.js';
import type { ByteSource } from './source.js';
import type { CpuState, ElfNote, ImageFormat, MemoryImage, PhysicalRange } from './types.js';

/**
 * Shared by every format: physical memory is a sorted list of ranges, each stored contiguously
 * in the file, and reads are positional reads straight into the caller's buffer
 * (no intermediate copy, no whole-file load: dumps may be far larger than RAM).
 */
export class RangeMappedImage implements MemoryImage {
  readonly totalBytes: number;

  readonly path: string;

  constructor(
    private readonly source: ByteSource,
    readonly format: ImageFormat,
    readonly ranges: readonly PhysicalRange[],
    readonly notes: readonly ElfNote[] = [],
    readonly cpus: readonly CpuState[] = [],
  ) {
    this.path = source.path;
    this.totalBytes = ranges.reduce((sum, range) => sum + (range.end - range.start), 0);
  }

  readPresent(physical: number, into: Uint8Array): number {
    let filled = 0;
    let index = rangeIndexOf(this.ranges, physical);
    while (filled < into.length && index >= 0 && index < this.ranges.length) {
      const range = this.ranges[index]!;
      const at = physical + filled;
      if (at < range.start || at >= range.end) break;
      const length = Math.min(into.length - filled, range.end - at);
      this.readFile(range.fileOffset + (at - range.start), into.subarray(filled, filled + length));
      filled += length;
      index += 1;
    }
    return filled;
  }

  read(physical: number, into: Uint8Array): void {
    const filled = this.readPresent(physical, into);
    if (filled < into.length) throw new AbsentMemoryError(this.path, physical + filled, into.length - filled);
  }

  private readFile(fileOffset: number, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const got = this.source.readAt(fileOffset + done, into.subarray(done));
      if (got === 0) {
        throw new VmscopeError(
          'TRUNCATED_FILE',
          'file ends inside a memory range (was it truncated after opening?)',
          this.path,
          fileOffset + done,
        );
      }
      done += got;
    }
  }

  close(): void {
    this.source.close();
  }
}

/** Index of the range holding `physical` in sorted, disjoint `ranges`, or -1. */
export function rangeIndexOf(ranges: readonly PhysicalRange[], physical: number): number {
  let low = 0;
  let high = ranges.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const range = ranges[middle]!;
    if (physical < range.start) high = middle - 1;
    else if (physical >= range.end) low = middle + 1;
    else return middle;
  }
  return -1;
}
