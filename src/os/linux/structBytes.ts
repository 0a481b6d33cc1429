import type { IsfTypeDescriptor } from '../../symbols/isf.js';
import type { Profile } from '../../symbols/profile.js';
import { VmscopeError } from '../../util/errors.js';
import { cString } from '../../util/text.js';
import type { KernelReader } from './kernelReader.js';

/**
 * One kernel object read in a single translation, its fields then decoded by name from the
 * profile: walks over thousands of VMAs, files and sockets read each object once instead of
 * translating its address again for every field.
 */
export class StructBytes {
  private readonly view: DataView;

  private constructor(
    private readonly profile: Profile,
    readonly struct: string,
    readonly address: bigint,
    readonly bytes: Uint8Array,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Read the whole `struct` at `address`; throws a VmscopeError when any of it is unreadable. */
  static read(reader: KernelReader, struct: string, address: bigint): StructBytes {
    return new StructBytes(reader.profile, struct, address, reader.bytes(address, reader.profile.sizeOf(struct)));
  }

  offset(field: string): number {
    return this.profile.offsetOf(this.struct, field);
  }

  u64(field: string): bigint {
    return this.view.getBigUint64(this.offset(field), true);
  }

  u32(field: string): number {
    return this.view.getUint32(this.offset(field), true);
  }

  /**
   * An unsigned integer field of any width the profile gives it, bitfields included (fields
   * such as sk_protocol were bitfields in older kernels and plain integers in newer ones).
   */
  unsigned(field: string): number {
    const { offset, type } = this.profile.field(this.struct, field);
    if (type.kind === 'bitfield') {
      const raw = this.integerAt(offset, type.type);
      return Number((raw >> BigInt(type.bit_position)) & ((1n << BigInt(type.bit_length)) - 1n));
    }
    return Number(this.integerAt(offset, type));
  }

  /** A char array field, up to its first NUL. */
  string(field: string, max: number): string {
    return cString(this.bytes, this.offset(field), max);
  }

  /** `count` raw bytes of a field (addresses and other byte strings kept in network order). */
  fieldBytes(field: string, count: number): Uint8Array {
    const offset = this.offset(field);
    return this.bytes.subarray(offset, offset + count);
  }

  private integerAt(offset: number, type: IsfTypeDescriptor): bigint {
    const size = integerSize(this.profile, type);
    if (size === 1) return BigInt(this.view.getUint8(offset));
    if (size === 2) return BigInt(this.view.getUint16(offset, true));
    if (size === 4) return BigInt(this.view.getUint32(offset, true));
    if (size === 8) return this.view.getBigUint64(offset, true);
    throw new VmscopeError(
      'NO_PROFILE',
      `${this.struct}: a field at offset ${offset} is not an integer of 1, 2, 4 or 8 bytes`,
      this.profile.source,
    );
  }
}

function integerSize(profile: Profile, type: IsfTypeDescriptor): number {
  if (type.kind === 'base' || type.kind === 'enum') return profile.sizeOf(type.name);
  if (type.kind === 'pointer') return 8;
  return 0;
}

/** Number of elements of an array field (pivots and slots of a maple node), from the profile. */
export function arrayLength(profile: Profile, struct: string, field: string): number {
  const { type } = profile.field(struct, field);
  if (type.kind !== 'array') throw new VmscopeError('NO_PROFILE', `${struct}.${field} is not an array`, profile.source);
  return type.count;
}
