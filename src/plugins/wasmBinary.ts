/**
 * The two edits the host makes to a plugin's bytes, on the binary format itself (sections of
 * id, LEB128 size, payload): append the manifest as a custom section, and lower the maximum of
 * the module's memory to the sandbox's cap, since a `memory.grow` inside the module is not
 * something the host can intercept, while a declared maximum is enforced by the engine.
 */
import { type VmscopeError } from '../util/errors.js';

const MAGIC_AND_VERSION = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const CUSTOM_SECTION = 0;
const MEMORY_SECTION = 5;
/** Limits flags: bit 0 a maximum follows, bit 1 shared (threads), bit 2 64-bit addresses. */
const HAS_MAXIMUM = 0x01;
const SHARED_OR_64BIT = 0x06;
export const WASM_PAGE_BYTES = 64 * 1024;

function encodeU32(value: number): number[] {
  const bytes: number[] = [];
  let rest = value >>> 0;
  do {
    const low = rest & 0x7f;
    rest >>>= 7;
    bytes.push(rest === 0 ? low : low | 0x80);
  } while (rest !== 0);
  return bytes;
}

class ByteCursor {
  at: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    private readonly refuse: (message: string, offset: number) => VmscopeError,
  ) {
    this.at = start;
  }

  byte(): number {
    if (this.at >= this.bytes.length) throw this.refuse('the module ends inside a section', this.at);
    return this.bytes[this.at++]!;
  }

  /** An unsigned LEB128 of at most 5 bytes (the format's u32). */
  u32(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.byte();
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) {
        if (value > 0xffffffff) break;
        return value;
      }
    }
    throw this.refuse('a LEB128 number is longer than a u32', this.at);
  }
}

interface Section {
  readonly id: number;
  /** Where the section's id byte is, where its payload starts and ends. */
  readonly start: number;
  readonly payload: number;
  readonly end: number;
}

function sections(bytes: Uint8Array, refuse: (message: string, offset: number) => VmscopeError): Section[] {
  if (bytes.length < 8 || MAGIC_AND_VERSION.some((byte, index) => bytes[index] !== byte))
    throw refuse('not a WebAssembly module (version 1)', 0);
  const found: Section[] = [];
  const cursor = new ByteCursor(bytes, 8, refuse);
  while (cursor.at < bytes.length) {
    const start = cursor.at;
    const id = cursor.byte();
    const size = cursor.u32();
    const payload = cursor.at;
    if (payload + size > bytes.length) throw refuse(`section ${id} runs past the end of the module`, start);
    found.push({ id, start, payload, end: payload + size });
    cursor.at = payload + size;
  }
  return found;
}

/** The module with `payload` appended as a custom section named `name` (how the build embeds a manifest). */
export function appendCustomSection(module: Uint8Array, name: string, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const nameBytes = new TextEncoder().encode(name);
  const header = Uint8Array.from(encodeU32(nameBytes.length));
  const size = header.length + nameBytes.length + payload.length;
  return Buffer.concat([module, Uint8Array.from([CUSTOM_SECTION, ...encodeU32(size)]), header, nameBytes, payload]);
}

export interface CappedMemory {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The pages the module declared (its minimum and its maximum, undefined when it set none). */
  readonly minimumPages: number;
  readonly declaredMaximumPages: number | undefined;
}

/**
 * The module with its one memory's maximum set to at most `maxPages`. Refused: no memory of
 * its own, more than one, shared or 64-bit memory, or a minimum already above the cap.
 */
export function capMemory(
  module: Uint8Array,
  maxPages: number,
  refuse: (message: string, offset: number) => VmscopeError,
): CappedMemory {
  const memory = sections(module, refuse).find((section) => section.id === MEMORY_SECTION);
  if (!memory) throw refuse('the module defines no memory of its own (WASI needs an exported "memory")', 8);
  const cursor = new ByteCursor(module, memory.payload, refuse);
  if (cursor.u32() !== 1) throw refuse('the module defines more than one memory', memory.payload);
  const flagsAt = cursor.at;
  const flags = cursor.byte();
  if (flags & SHARED_OR_64BIT || flags > (HAS_MAXIMUM | SHARED_OR_64BIT))
    throw refuse(`memory limits flags 0x${flags.toString(16)}: only unshared 32-bit memory is allowed`, flagsAt);
  const minimumPages = cursor.u32();
  const declaredMaximumPages = flags & HAS_MAXIMUM ? cursor.u32() : undefined;
  if (cursor.at !== memory.end) throw refuse('the memory section has trailing bytes', cursor.at);
  if (minimumPages > maxPages)
    throw refuse(
      `its memory starts at ${minimumPages} pages, above the cap of ${maxPages} pages (${(maxPages * WASM_PAGE_BYTES) / 2 ** 20} MiB)`,
      flagsAt,
    );
  const maximum = Math.min(declaredMaximumPages ?? maxPages, maxPages);
  const payload = [1, HAS_MAXIMUM, ...encodeU32(minimumPages), ...encodeU32(maximum)];
  const bytes = Buffer.concat([
    module.subarray(0, memory.start),
    Uint8Array.from([MEMORY_SECTION, ...encodeU32(payload.length), ...payload]),
    module.subarray(memory.end),
  ]);
  return { bytes, minimumPages, declaredMaximumPages };
}
