import { VmscopeError } from '../util/errors.js';
import { RangeMappedImage } from './rangeImage.js';
import { readHeader, safeU64, type ByteSource } from './source.js';
import type { PhysicalRange } from './types.js';

export const LIME_MAGIC = 0x4c694d45;
const HEADER_BYTES = 32;

/**
 * LiME: a 32-byte header (magic, version 1, start, end inclusive, reserved) before each range's
 * bytes, repeated to the end of the file.
 */
export function openLime(source: ByteSource): RangeMappedImage {
  const ranges: PhysicalRange[] = [];
  let offset = 0;
  while (offset < source.size) {
    const header = readHeader(source, offset, HEADER_BYTES, 'LiME range header');
    const magic = header.getUint32(0, true);
    if (magic !== LIME_MAGIC) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `LiME header magic is 0x${magic.toString(16)}, expected 0x${LIME_MAGIC.toString(16)}`,
        source.path,
        offset,
      );
    }
    const version = header.getUint32(4, true);
    if (version !== 1)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `LiME version ${version} is not supported (only 1)`,
        source.path,
        offset + 4,
      );
    const start = safeU64(header, 8, source, offset, 'LiME range start');
    const endInclusive = safeU64(header, 16, source, offset, 'LiME range end');
    if (endInclusive < start) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `LiME range end 0x${endInclusive.toString(16)} is below its start 0x${start.toString(16)}`,
        source.path,
        offset + 16,
      );
    }
    const length = endInclusive - start + 1;
    const dataOffset = offset + HEADER_BYTES;
    if (dataOffset + length > source.size) {
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `LiME range 0x${start.toString(16)}-0x${endInclusive.toString(16)} needs ${length} bytes but the file ends first`,
        source.path,
        offset,
      );
    }
    ranges.push({ start, end: start + length, fileOffset: dataOffset });
    offset = dataOffset + length;
  }
  return new RangeMappedImage(source, 'lime', sortedDisjoint(ranges, source));
}

/** Ranges sorted by start; any overlap means the header lies about what memory it holds. */
export function sortedDisjoint(ranges: PhysicalRange[], source: ByteSource): PhysicalRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.start < sorted[i - 1]!.end) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `physical ranges overlap: 0x${sorted[i - 1]!.start.toString(16)}-0x${sorted[i - 1]!.end.toString(16)} and 0x${sorted[i]!.start.toString(16)}-0x${sorted[i]!.end.toString(16)}`,
        source.path,
        sorted[i]!.fileOffset,
      );
    }
  }
  return sorted;
}
