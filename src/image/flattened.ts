import { VmscopeError } from '../util/errors.js';
import { readHeader, type ByteSource, type FileRegion } from './source.js';

/** makedumpfile's flattened stream (what `makedumpfile -F` and QEMU `kdump-*` write to a pipe). */
export const FLATTENED_SIGNATURE = 'makedumpfile';
const FLATTENED_HEADER_BYTES = 4096;
const RECORD_HEADER_BYTES = 16;
/** A real stream has one record per write; more than this is a corrupt stream, not a dump. */
const MAX_RECORDS = 1 << 24;

export function isFlattened(head: Uint8Array): boolean {
  if (head.length < 16) return false;
  for (let i = 0; i < FLATTENED_SIGNATURE.length; i++) if (head[i] !== FLATTENED_SIGNATURE.charCodeAt(i)) return false;
  return head[FLATTENED_SIGNATURE.length] === 0;
}

/**
 * The flattened form of a dump file: a 4 KiB header, then (big-endian i64 offset, i64 size)
 * records each followed by `size` bytes to put at `offset` of the real file, ended by a (-1, -1)
 * record. Indexed in one pass over the record headers (the data is never read here); reads then
 * go to the records, so a kdump parser runs on it as on the file `makedumpfile -R` would rebuild.
 * Later records overwrite earlier ones where they overlap, as `-R` does; bytes no record wrote are
 * zeros, as in the sparse file `-R` leaves. Offsets in errors are offsets of that rebuilt file.
 */
export class FlattenedSource implements ByteSource {
  readonly path: string;
  readonly size: number;
  /** Sorted, disjoint segments of the rebuilt file and where their bytes are in the stream. */
  private readonly starts: number[] = [];
  private readonly lengths: number[] = [];
  private readonly streamOffsets: number[] = [];

  constructor(private readonly stream: ByteSource) {
    this.path = stream.path;
    const header = readHeader(stream, 0, 32, 'flattened-format header');
    const type = header.getBigInt64(16, false);
    const version = header.getBigInt64(24, false);
    if (type !== 1n)
      throw new VmscopeError('CORRUPT_HEADER', `flattened-format type ${type} is not 1 (a dump file)`, stream.path, 16);
    if (version !== 1n)
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `flattened-format version ${version} is not supported (only 1)`,
        stream.path,
        24,
      );
    let at = FLATTENED_HEADER_BYTES;
    let size = 0;
    const records: Array<{ start: number; length: number; streamOffset: number }> = [];
    for (let count = 0; ; count++) {
      if (count === MAX_RECORDS)
        throw new VmscopeError('CORRUPT_HEADER', `more than ${MAX_RECORDS} records`, stream.path, at);
      const record = readHeader(
        stream,
        at,
        RECORD_HEADER_BYTES,
        'flattened-format record header (is the stream cut short? its end record is missing)',
      );
      const offset = record.getBigInt64(0, false);
      const length = record.getBigInt64(8, false);
      if (offset === -1n && length === -1n) break;
      if (offset < 0n || length < 0n || offset + length > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new VmscopeError(
          'CORRUPT_HEADER',
          `record (offset ${offset}, size ${length}) is not a place in a dump file`,
          stream.path,
          at,
        );
      }
      const dataAt = at + RECORD_HEADER_BYTES;
      if (dataAt + Number(length) > stream.size) {
        throw new VmscopeError(
          'TRUNCATED_FILE',
          `record of ${length} bytes runs past the end of the stream`,
          stream.path,
          at,
        );
      }
      if (length > 0n) records.push({ start: Number(offset), length: Number(length), streamOffset: dataAt });
      size = Math.max(size, Number(offset + length));
      at = dataAt + Number(length);
    }
    this.size = size;
    // Writers emit records out of order (QEMU interleaves descriptors and page data) but rarely
    // overlapping: sort once; only overlaps need the replay in write order.
    const sorted = [...records].sort((a, b) => a.start - b.start);
    const overlapping = sorted.some(
      (record, i) => i > 0 && record.start < sorted[i - 1]!.start + sorted[i - 1]!.length,
    );
    for (const record of overlapping ? records : sorted) this.place(record.start, record.length, record.streamOffset);
  }

  /** Put a record in the index, trimming what it overwrites. */
  private place(start: number, length: number, streamOffset: number): void {
    const end = start + length;
    const last = this.starts.length - 1;
    if (last < 0 || this.starts[last]! + this.lengths[last]! <= start) {
      this.starts.push(start);
      this.lengths.push(length);
      this.streamOffsets.push(streamOffset);
      return;
    }
    // Out of order or overlapping: rebuild the affected part (rare: a writer seeking back).
    const first = this.firstEndingAfter(start);
    const pieces: Array<[number, number, number]> = [];
    let removeCount = 0;
    for (let i = first; i < this.starts.length && this.starts[i]! < end; i++) {
      const segmentStart = this.starts[i]!;
      const segmentEnd = segmentStart + this.lengths[i]!;
      if (segmentStart < start) pieces.push([segmentStart, start - segmentStart, this.streamOffsets[i]!]);
      if (segmentEnd > end) pieces.push([end, segmentEnd - end, this.streamOffsets[i]! + (end - segmentStart)]);
      removeCount++;
    }
    pieces.push([start, length, streamOffset]);
    pieces.sort((a, b) => a[0] - b[0]);
    this.starts.splice(first, removeCount, ...pieces.map((piece) => piece[0]));
    this.lengths.splice(first, removeCount, ...pieces.map((piece) => piece[1]));
    this.streamOffsets.splice(first, removeCount, ...pieces.map((piece) => piece[2]));
  }

  /** Index of the first segment whose end is past `offset`. */
  private firstEndingAfter(offset: number): number {
    let low = 0;
    let high = this.starts.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.starts[middle]! + this.lengths[middle]! <= offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  readAt(offset: number, into: Uint8Array): number {
    if (offset >= this.size) return 0;
    const total = Math.min(into.length, this.size - offset);
    let done = 0;
    let index = this.firstEndingAfter(offset);
    while (done < total) {
      const at = offset + done;
      const segmentStart = index < this.starts.length ? this.starts[index]! : Infinity;
      if (at < segmentStart) {
        const gap = Math.min(total - done, segmentStart - at);
        into.fill(0, done, done + gap);
        done += gap;
        continue;
      }
      const within = at - segmentStart;
      const length = Math.min(total - done, this.lengths[index]! - within);
      const got = this.stream.readAt(this.streamOffsets[index]! + within, into.subarray(done, done + length));
      if (got < length)
        throw new VmscopeError(
          'TRUNCATED_FILE',
          'stream ends inside a record (was it truncated after opening?)',
          this.path,
          this.streamOffsets[index]! + within + got,
        );
      done += length;
      index++;
    }
    return total;
  }

  /** Bytes within one record are together in the stream's file. */
  fileRegion(offset: number, length: number): FileRegion | undefined {
    const index = this.firstEndingAfter(offset);
    const start = this.starts[index];
    if (start === undefined || offset < start || offset + length > start + this.lengths[index]!) return undefined;
    return this.stream.fileRegion?.(this.streamOffsets[index]! + (offset - start), length);
  }

  close(): void {
    this.stream.close();
  }
}
