/**
 * Every failure vmscope reports about its input is a VmscopeError: a stable machine-readable
 * code, the file it concerns and, where one exists, the byte offset (in the file, or a
 * physical/virtual address for memory errors) so an analyst can go and look.
 */
export type ErrorCode =
  | 'UNREADABLE_FILE'
  | 'EMPTY_FILE'
  | 'UNKNOWN_FORMAT'
  | 'COMPRESSED_INPUT'
  | 'TRUNCATED_FILE'
  | 'CORRUPT_HEADER'
  | 'ABSENT_MEMORY'
  | 'PAGE_FAULT'
  | 'NO_KERNEL_FOUND'
  | 'NO_PROFILE'
  | 'CORRUPT_STRUCTURE'
  /** A service the command needs (Redis) cannot be reached: not the user's mistake, worth retrying. */
  | 'UNAVAILABLE'
  /** The input changed or is not what was asked for (a dump replaced under a queued job): retried elsewhere. */
  | 'INPUT_CHANGED'
  /** A WASI plugin that is not loaded: a bad manifest, an import it may not have, memory beyond the cap. */
  | 'PLUGIN_REFUSED'
  /** A WASI plugin that ran and failed: a budget spent, a trap, rows that do not match its manifest. */
  | 'PLUGIN_FAILED'
  | 'USAGE';

export class VmscopeError extends Error {
  readonly code: ErrorCode;
  readonly file: string | undefined;
  readonly offset: number | bigint | undefined;

  constructor(code: ErrorCode, message: string, file?: string, offset?: number | bigint) {
    super(message);
    this.name = 'VmscopeError';
    this.code = code;
    this.file = file;
    this.offset = offset;
  }

  /** One line, as the CLI prints it: `file: offset 0x…: CODE: message`. */
  describe(): string {
    const where = [this.file, this.offset === undefined ? undefined : `offset ${hexOffset(this.offset)}`]
      .filter((part) => part !== undefined)
      .join(': ');
    return `${where ? where + ': ' : ''}${this.code}: ${this.message}`;
  }
}

function hexOffset(offset: number | bigint): string {
  return '0x' + offset.toString(16);
}

/** A physical read touched bytes the image does not hold (a gap between ranges, or past the end). */
export class AbsentMemoryError extends VmscopeError {
  readonly physical: number;
  constructor(file: string, physical: number, length: number) {
    super(
      'ABSENT_MEMORY',
      `physical range 0x${physical.toString(16)}+0x${length.toString(16)} is not in the image`,
      file,
      physical,
    );
    this.physical = physical;
  }
}

/** A virtual address does not translate: which address, at which paging level, and why. */
export class PageFaultError extends VmscopeError {
  readonly virtual: bigint;
  readonly level: number;
  constructor(file: string, virtual: bigint, level: number, reason: string) {
    super(
      'PAGE_FAULT',
      `virtual 0x${virtual.toString(16)} does not translate: ${reason} at level ${level}`,
      file,
      virtual,
    );
    this.virtual = virtual;
    this.level = level;
  }
}

export function isVmscopeError(error: unknown): error is VmscopeError {
  return error instanceof VmscopeError;
}
