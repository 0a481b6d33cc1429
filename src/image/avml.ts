import type * as Crc32 from '@node-rs/crc32';
import { VmscopeError } from '../util/errors.js';
import { lazyRequire } from '../util/lazyRequire.js';
import { decodeSnappyView, snappyDeclaredLength } from './codecs.js';
import { isSnappyView } from './snappyDecode.js';
import { DecodedImage, readExactly } from './decodedImage.js';
import { readHeader, safeU64, type ByteSource } from './source.js';
import type { PhysicalRange } from './types.js';

/** A native addon: loaded when an AVML dump is read, not at every start-up. */
const crc32 = lazyRequire<typeof Crc32>('@node-rs/crc32');

/**
 * AVML (Microsoft's Linux acquisition tool), version 2: LiME-like blocks, each
 *   {u32 magic 0x4C4D5641 "AVML", u32 version 2, u64 start, u64 end (inclusive), u64 0}
 *   + the block's bytes as a snappy *framed* stream + u64 byte count of that stream.
 * All-zero blocks are left out: their memory is absent here, never zeros. Opening walks the
 * chunk headers of each stream once (no data is read) and indexes every chunk; a read decodes
 * only the chunks it touches, checks each one's masked CRC-32C, and keeps them in the image's cache.
 * Snappy framing (framing_format.txt): 0xff stream identifier "sNaPpY"; 0x00 compressed and 0x01
 * uncompressed data (CRC + at most 64 KiB); 0x80-0xfe skippable (0xfe padding); 0x02-0x7f are
 * reserved *unskippable* chunks, refused as the format demands.
 */
export const AVML_MAGIC = 0x4c4d5641;
const HEADER_BYTES = 32;
const TRAILER_BYTES = 8;
const MAX_CHUNK_BYTES = 65536;
const STREAM_IDENTIFIER = 'sNaPpY';
/** Distinct chunks remembered for reuse (at most 8 MiB of stored and decoded bytes). */
const MAX_REPEATED_CHUNKS = 64;
/** Stored bytes fetched by one read: a 4 MiB scan window of incompressible chunks and then some. */
const MAX_SPAN_BYTES = 8 << 20;

interface ChunkIndex {
  physical: number[];
  length: number[];
  /** File offset of the chunk's 4-byte header. */
  fileOffset: number[];
  storedLength: number[];
  compressed: boolean[];
}

export function openAvml(source: ByteSource, cacheBytes?: number): AvmlImage {
  const chunks: ChunkIndex = { physical: [], length: [], fileOffset: [], storedLength: [], compressed: [] };
  const ranges: PhysicalRange[] = [];
  let offset = 0;
  while (offset < source.size) {
    const header = readHeader(source, offset, HEADER_BYTES, 'AVML block header');
    const magic = header.getUint32(0, true);
    if (magic !== AVML_MAGIC)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `AVML block magic is 0x${magic.toString(16)}, expected 0x${AVML_MAGIC.toString(16)}`,
        source.path,
        offset,
      );
    const version = header.getUint32(4, true);
    if (version !== 2)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `AVML version ${version} is not supported (only 2: snappy-compressed blocks)`,
        source.path,
        offset + 4,
      );
    const start = safeU64(header, 8, source, offset, 'AVML block start');
    const endInclusive = safeU64(header, 16, source, offset, 'AVML block end');
    if (endInclusive < start)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `AVML block end 0x${endInclusive.toString(16)} is below its start 0x${start.toString(16)}`,
        source.path,
        offset + 16,
      );
    const last = ranges[ranges.length - 1];
    if (last && start < last.end)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `AVML block 0x${start.toString(16)} overlaps or precedes the previous block`,
        source.path,
        offset + 8,
      );
    const streamStart = offset + HEADER_BYTES;
    const streamEnd = indexStream(source, streamStart, start, endInclusive - start + 1, chunks);
    const trailer = readHeader(source, streamEnd, TRAILER_BYTES, 'AVML block trailer (stream size)');
    const declared = trailer.getBigUint64(0, true);
    if (declared !== BigInt(streamEnd - streamStart)) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `AVML block trailer says ${declared} stream bytes, the stream has ${streamEnd - streamStart}`,
        source.path,
        streamEnd,
      );
    }
    ranges.push({ start, end: endInclusive + 1, fileOffset: -1 });
    offset = streamEnd + TRAILER_BYTES;
  }
  return new AvmlImage(source, ranges, chunks, cacheBytes);
}

/** Index the chunks of one block's framed stream; returns the file offset just past it. */
function indexStream(
  source: ByteSource,
  at: number,
  physical: number,
  blockLength: number,
  chunks: ChunkIndex,
): number {
  let produced = 0;
  const head = new Uint8Array(4 + 4 + 5);
  let first = true;
  while (produced < blockLength) {
    const got = source.readAt(at, head);
    if (got < 4)
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `file ends inside an AVML block's snappy stream (${produced} of ${blockLength} bytes)`,
        source.path,
        at + got,
      );
    const type = head[0]!;
    const length = head[1]! | (head[2]! << 8) | (head[3]! << 16);
    const dataAt = at + 4;
    if (dataAt + length > source.size)
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `snappy chunk of ${length} bytes runs past the end of the file`,
        source.path,
        at,
      );
    if (first && type !== 0xff)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `snappy stream starts with chunk type 0x${type.toString(16)}, not the stream identifier`,
        source.path,
        at,
      );
    first = false;
    if (type === 0xff) {
      const identifier = new Uint8Array(length);
      readExactly(source, dataAt, identifier, 'the snappy stream identifier');
      if (length !== STREAM_IDENTIFIER.length || String.fromCharCode(...identifier) !== STREAM_IDENTIFIER) {
        throw new VmscopeError('CORRUPT_HEADER', 'snappy stream identifier is not "sNaPpY"', source.path, at);
      }
    } else if (type === 0x00 || type === 0x01) {
      if (length < 4 || length - 4 > MAX_CHUNK_BYTES + 32)
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `snappy data chunk of ${length} bytes is not plausible`,
          source.path,
          at,
        );
      const uncompressed = type === 0x01 ? length - 4 : snappyDeclaredLength(head.subarray(8, got));
      if (uncompressed === undefined)
        throw new VmscopeError('CORRUPT_HEADER', 'snappy chunk has no valid length preamble', source.path, at);
      if (uncompressed > MAX_CHUNK_BYTES || uncompressed === 0)
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `snappy chunk claims ${uncompressed} bytes (at most ${MAX_CHUNK_BYTES})`,
          source.path,
          at,
        );
      if (produced + uncompressed > blockLength) {
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `snappy stream holds more than the block's ${blockLength} bytes`,
          source.path,
          at,
        );
      }
      chunks.physical.push(physical + produced);
      chunks.length.push(uncompressed);
      chunks.fileOffset.push(at);
      chunks.storedLength.push(length);
      chunks.compressed.push(type === 0x00);
      produced += uncompressed;
    } else if (type < 0x80) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `snappy chunk type 0x${type.toString(16)} is reserved and unskippable`,
        source.path,
        at,
      );
    }
    // 0x80-0xfe: skippable (0xfe is padding).
    at = dataAt + length;
  }
  return at;
}

/** The CRC framing stores: CRC-32C rotated right by 15 plus a constant. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32().crc32c(Buffer.from(data.buffer, data.byteOffset, data.length)) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

export class AvmlImage extends DecodedImage {
  constructor(
    source: ByteSource,
    ranges: PhysicalRange[],
    private readonly chunks: ChunkIndex,
    cacheBytes?: number,
  ) {
    super(source, 'avml', ranges, { compression: ['snappy'], version: 2 }, [], [], cacheBytes);
  }

  private chunkAt(physical: number): number {
    const starts = this.chunks.physical;
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (starts[middle]! <= physical) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /**
   * Chunks stored byte for byte alike decode alike: half the chunks of a real AVML capture are one
   * all-zero chunk (1359 of 2820 in the fixture). A CRC seen a second time keeps its chunk (up
   * to MAX_REPEATED_CHUNKS of them) with what it decoded to; a chunk whose stored bytes (CRC
   * included) equal a kept one is not decoded again.
   */
  private readonly repeated = new Map<number, { stored: Uint8Array; data: Uint8Array }>();
  private readonly crcSightings = new Map<number, number>();
  /** Reused for the stored bytes of the chunks one read covers (at most MAX_SPAN_BYTES). */
  private spanBuffer = new Uint8Array(0);

  /**
   * Chunk `index` decoded from its `stored` bytes (CRC and payload), CRC checked. The result may be
   * a view of `stored` (an uncompressed chunk) or of the snappy decoder's memory: whoever keeps it
   * past the read copies it (owned).
   */
  private decodeChunk(index: number, stored: Uint8Array): Uint8Array {
    const at = this.chunks.fileOffset[index]!;
    const expectedCrc = new DataView(stored.buffer, stored.byteOffset, 4).getUint32(0, true);
    const seen = this.repeated.get(expectedCrc);
    if (seen && seen.stored.length === stored.length && Buffer.compare(seen.stored, stored) === 0) return seen.data;
    const payload = stored.subarray(4);
    const data = this.chunks.compressed[index]
      ? decodeSnappyView(payload, this.chunks.length[index]!, this.path, at)
      : payload;
    const actualCrc = maskedCrc32c(data);
    if (actualCrc !== expectedCrc) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `snappy chunk CRC-32C 0x${actualCrc.toString(16)} differs from the stored 0x${expectedCrc.toString(16)}`,
        this.path,
        at,
      );
    }
    const sightings = (this.crcSightings.get(expectedCrc) ?? 0) + 1;
    this.crcSightings.set(expectedCrc, sightings);
    if (!seen && sightings >= 2 && this.repeated.size < MAX_REPEATED_CHUNKS)
      this.repeated.set(expectedCrc, { stored: stored.slice(), data: this.owned(data) });
    return data;
  }

  /** `data` itself, or a copy of it when it is a view of the reused span or of the snappy decoder's memory. */
  private owned(data: Uint8Array): Uint8Array {
    return data.buffer === this.spanBuffer.buffer || isSnappyView(data) ? data.slice() : data;
  }

  /**
   * The chunks under `into`: those not in the cache have their stored bytes fetched with one read
   * per span of consecutive chunks (a read per 64 KiB chunk measured a tenth of an AVML scan),
   * are decoded and enter the cache (a chunk `into` covers whole only when the cache is large:
   * see keepsWholeUnits).
   */
  protected fill(physical: number, into: Uint8Array): void {
    const { chunks } = this;
    const end = physical + into.length;
    let span: Uint8Array = new Uint8Array(0);
    let spanStart = 0;
    for (let index = this.chunkAt(physical); index < chunks.physical.length && chunks.physical[index]! < end; index++) {
      const chunkStart = chunks.physical[index]!;
      const from = Math.max(chunkStart, physical);
      const to = Math.min(chunkStart + chunks.length[index]!, end);
      if (from >= to) continue;
      const key = chunks.fileOffset[index]!;
      let data = this.cache.get(key);
      if (data === undefined) {
        const storedAt = key + 4;
        const storedEnd = storedAt + chunks.storedLength[index]!;
        if (storedAt < spanStart || storedEnd > spanStart + span.length) {
          spanStart = storedAt;
          span = this.readSpan(index, end);
        }
        const stored = span.subarray(storedAt - spanStart, storedEnd - spanStart);
        data = this.decodeChunk(index, stored);
        if (this.keepsWholeUnits || to - from < chunks.length[index]!) {
          data = this.owned(data);
          this.cache.set(key, data);
        }
      }
      into.set(data.subarray(from - chunkStart, to - chunkStart), from - physical);
    }
  }

  /** The stored bytes of chunk `first` (from its CRC) and of the chunks after it that start before `end`, in one read. */
  private readSpan(first: number, end: number): Uint8Array {
    const { chunks } = this;
    const spanStart = chunks.fileOffset[first]! + 4;
    const chunkEnd = (index: number) => chunks.fileOffset[index]! + 4 + chunks.storedLength[index]!;
    let last = first;
    while (
      last + 1 < chunks.physical.length &&
      chunks.physical[last + 1]! < end &&
      chunkEnd(last + 1) - spanStart <= MAX_SPAN_BYTES
    )
      last++;
    const length = chunkEnd(last) - spanStart;
    if (this.spanBuffer.length < length) this.spanBuffer = new Uint8Array(Math.max(length, 2 * this.spanBuffer.length));
    const span = this.spanBuffer.subarray(0, length);
    readExactly(this.source, spanStart, span, 'snappy chunks');
    return span;
  }
}
