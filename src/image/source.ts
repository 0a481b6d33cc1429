import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { VmscopeError } from '../util/errors.js';

/**
 * Positional bytes of a dump. Parsers read headers through this, so the same parser runs over a
 * file (the real path) or over bytes in memory (fuzz tests, nested formats).
 */
export interface ByteSource {
  readonly path: string;
  readonly size: number;
  /** Fill as much of `into` as the source holds from `offset`; returns the byte count. */
  readAt(offset: number, into: Uint8Array): number;
  /**
   * Where the `length` bytes at `offset` lie together in a file another thread can read, if
   * they do (a helper thread opens the file itself: inflateAhead.ts).
   */
  fileRegion?(offset: number, length: number): FileRegion | undefined;
  close(): void;
}

/** A place in a file on disk. */
export interface FileRegion {
  readonly path: string;
  readonly offset: number;
}

export class FileSource implements ByteSource {
  readonly size: number;
  private readonly fd: number;

  constructor(readonly path: string) {
    let fd: number;
    try {
      // Non-blocking: a FIFO with no writer must be refused below, not wait forever in open().
      // (It changes nothing for regular files.)
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      throw new VmscopeError('UNREADABLE_FILE', `cannot open: ${(error as Error).message}`, path, 0);
    }
    const stat = fstatSync(fd);
    if (!stat.isFile()) {
      closeSync(fd);
      throw new VmscopeError(
        'UNREADABLE_FILE',
        stat.isDirectory() ? 'is a directory, not a dump file' : 'is not a regular file',
        path,
        0,
      );
    }
    this.fd = fd;
    this.size = stat.size;
  }

  readAt(offset: number, into: Uint8Array): number {
    let done = 0;
    while (done < into.length && offset + done < this.size) {
      const got = readSync(this.fd, into, done, into.length - done, offset + done);
      if (got === 0) break;
      done += got;
    }
    return done;
  }

  fileRegion(offset: number, length: number): FileRegion | undefined {
    return offset >= 0 && offset + length <= this.size ? { path: this.path, offset } : undefined;
  }

  close(): void {
    closeSync(this.fd);
  }
}

export class BufferSource implements ByteSource {
  readonly size: number;
  constructor(
    readonly path: string,
    private readonly bytes: Uint8Array,
  ) {
    this.size = bytes.length;
  }

  readAt(offset: number, into: Uint8Array): number {
    if (offset >= this.size) return 0;
    const part = this.bytes.subarray(offset, Math.min(this.size, offset + into.length));
    into.set(part);
    return part.length;
  }

  close(): void {}
}

/** Read exactly `length` bytes of header at `offset`, or fail naming where the file ends. */
export function readHeader(source: ByteSource, offset: number, length: number, what: string): DataView {
  const bytes = new Uint8Array(length);
  const got = source.readAt(offset, bytes);
  if (got < length) {
    throw new VmscopeError(
      'TRUNCATED_FILE',
      `file ends inside the ${what} (${got} of ${length} bytes)`,
      source.path,
      offset + got,
    );
  }
  return new DataView(bytes.buffer);
}

/** A u64 field that must address a byte of a file or of physical memory: exact as a JS number. */
export function safeU64(view: DataView, at: number, source: ByteSource, fileOffset: number, what: string): number {
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `${what} 0x${value.toString(16)} is beyond any real file or memory size`,
      source.path,
      fileOffset + at,
    );
  }
  return Number(value);
}
