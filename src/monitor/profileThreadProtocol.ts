import type { CpuState, ElfNote, ImageFormat, PhysicalRange } from '../image/types.js';
import type { LinuxKernel } from '../os/linux/discovery.js';
import type { EncodedDerivation } from '../os/linux/profile.js';
import type { KallsymsLocation } from '../symbols/kallsyms.js';
import { VmscopeError, type ErrorCode } from '../util/errors.js';

/**
 * What the monitor's profile derivation thread (profileThread.ts) and its owner
 * (derivationThread.ts) exchange. The thread reads guest memory through its owner, which holds
 * the image (a live guest's RAM file with QEMU's layout, or a copy of its pages: nothing the
 * thread could open by path): it posts a `ReadRequest`, waits on `control`, and finds the bytes
 * in `window`. Only the encoded profile crosses back.
 */

/** control[STATE]: the thread waits while it is WAITING; the owner answers with READ or FAILED. */
export const STATE = 0;
/** control[LENGTH]: bytes read into the window (READ), or bytes of the JSON error in it (FAILED). */
export const LENGTH = 1;
export const WAITING = 0;
export const READ = 1;
export const FAILED = 2;
/** Bytes one request may ask for: the BTF carve reads all of memory through it, in pieces this size. */
export const WINDOW_BYTES = 4 << 20;

export interface ProfileThreadData {
  readonly control: SharedArrayBuffer;
  readonly window: SharedArrayBuffer;
  readonly image: {
    readonly path: string;
    readonly format: ImageFormat;
    readonly ranges: readonly PhysicalRange[];
    readonly totalBytes: number;
    readonly notes: readonly ElfNote[];
    readonly cpus: readonly CpuState[];
  };
  /** The kernel as discovery found it, without its image and address space (the thread makes its own). */
  readonly kernel: Omit<LinuxKernel, 'image' | 'space' | 'vmcoreinfo' | 'warnings'> & {
    readonly vmcoreinfo:
      | { readonly text: string; readonly source: 'memory-note' | 'file-note'; readonly physical: number | undefined }
      | undefined;
  };
  readonly kallsyms: KallsymsLocation;
}

export interface ReadRequest {
  readonly kind: 'read';
  readonly physical: number;
  readonly length: number;
}

export interface DerivedMessage {
  readonly kind: 'derived';
  readonly derivation: EncodedDerivation;
}

export interface FailedMessage {
  readonly kind: 'failed';
  readonly error: SerializedError;
}

export type ProfileThreadMessage = ReadRequest | DerivedMessage | FailedMessage;

/** A thrown value as it crosses: a VmscopeError keeps its code, file and offset. */
export type SerializedError =
  | { readonly code: ErrorCode; readonly message: string; readonly file?: string; readonly offset?: number | string }
  | { readonly code?: undefined; readonly message: string };

export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof VmscopeError)) return { message: error instanceof Error ? error.message : String(error) };
  return {
    code: error.code,
    message: error.message,
    ...(error.file === undefined ? {} : { file: error.file }),
    // A bigint (a virtual address) crosses as its decimal text; a number as it is.
    ...(error.offset === undefined
      ? {}
      : { offset: typeof error.offset === 'bigint' ? error.offset.toString() : error.offset }),
  };
}

export function reviveError(error: SerializedError): Error {
  if (error.code === undefined) return new Error(`profile thread: ${error.message}`);
  return new VmscopeError(
    error.code,
    error.message,
    error.file,
    typeof error.offset === 'string' ? BigInt(error.offset) : error.offset,
  );
}
