import { VmscopeError } from '../util/errors.js';
import type { ByteSource } from './source.js';

const BUFFER_BYTES = 4 << 20;

/**
 * Sequential reads of a stream format (QEMU migration) through one large buffer, so a one-pass
 * index costs a few big reads, not one read per field. Every read names what it wanted when the
 * file ends, at the offset where it ended.
 */
export class StreamReader {
  private readonly buffer = new Uint8Array(BUFFER_BYTES);
  private readonly view = new DataView(this.buffer.buffer);
  private bufferStart = 0;
  private bufferLength = 0;
  position: number;

  constructor(
    private readonly source: ByteSource,
    start: number,
  ) {
    this.position = start;
  }

  get atEnd(): boolean {
    return this.position >= this.source.size;
  }

  /** Make `count` bytes at the position available in the buffer; returns their index in it. */
  private ensure(count: number, what: string): number {
    const end = this.position + count;
    if (this.position < this.bufferStart || end > this.bufferStart + this.bufferLength) {
      this.bufferStart = this.position;
      this.bufferLength = this.source.readAt(this.position, this.buffer);
    }
    if (end > this.bufferStart + this.bufferLength) {
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `file ends inside ${what} (needs ${count} bytes at 0x${this.position.toString(16)})`,
        this.source.path,
        this.bufferStart + this.bufferLength,
      );
    }
    return this.position - this.bufferStart;
  }

  u8(what: string): number {
    const at = this.ensure(1, what);
    this.position += 1;
    return this.buffer[at]!;
  }

  peek(what: string): number {
    return this.buffer[this.ensure(1, what)]!;
  }

  u16be(what: string): number {
    const at = this.ensure(2, what);
    this.position += 2;
    return this.view.getUint16(at, false);
  }

  u32be(what: string): number {
    const at = this.ensure(4, what);
    this.position += 4;
    return this.view.getUint32(at, false);
  }

  u64be(what: string): bigint {
    const at = this.ensure(8, what);
    this.position += 8;
    return this.view.getBigUint64(at, false);
  }

  /** A string of one length byte and that many bytes (QEMU's idstr). */
  shortString(what: string): string {
    const length = this.u8(what);
    const at = this.ensure(length, what);
    this.position += length;
    return String.fromCharCode(...this.buffer.subarray(at, at + length));
  }

  bytes(count: number, what: string): Uint8Array {
    const at = this.ensure(count, what);
    this.position += count;
    return this.buffer.slice(at, at + count);
  }

  /** Skip `count` bytes that must be in the file. */
  skip(count: number, what: string): void {
    if (this.position + count > this.source.size) {
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `file ends inside ${what} (needs ${count} bytes at 0x${this.position.toString(16)})`,
        this.source.path,
        this.source.size,
      );
    }
    this.position += count;
  }
}
