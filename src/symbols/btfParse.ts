import { VmscopeError } from '../util/errors.js';

/**
 * BTF, the kernel's own compact type information (include/uapi/linux/btf.h): a 24-byte header,
 * a type section of variable-length records (type id n is the n-th record, id 0 is void) and a
 * string section of NUL-terminated names. Everything here may come from attacker-controlled
 * guest memory, so every count, offset and type id is checked against the blob before use and
 * every chain that could loop is bounded; a bad blob is a CORRUPT_STRUCTURE error naming the
 * blob offset (and the physical address, when known) of the record at fault.
 */

const BTF_MAGIC = 0xeb9f;
export const BTF_HEADER_BYTES = 24;
const TYPE_RECORD_BYTES = 12;
/** BTF_MAX_TYPE: type ids are 20 bits wide in the kernel's own verifier. */
const MAX_TYPES = 0xfffff;
/** Pointer/array/typedef/qualifier chains longer than this are forgeries, never real C (the kernel's own are under 10). */
export const MAX_CHAIN_DEPTH = 64;
/** The kernel rejects types whose size overflows a u32 (btf_array_resolve: "Array size overflows U32_MAX"). */
const MAX_TYPE_SIZE = 0xffffffff;
const POINTER_BYTES = 8;

/** Where a blob came from, for error messages: the dump and the physical address of the header. */
export interface BtfLocation {
  readonly path: string;
  readonly physical: number;
}

/**
 * Every BTF_KIND_*, in numeric order (index = kind number; 0 is BTF_KIND_UNKN, never valid in a
 * record), with the bytes that follow its 12-byte record: a fixed trailer, or vlen entries of a
 * size. The one list of kinds: the kind type, the record walk and the bounds all come from it.
 */
const KIND_RECORDS = [
  { kind: 'void' },
  { kind: 'int', trailer: 4 },
  { kind: 'ptr' },
  { kind: 'array', trailer: 12 },
  { kind: 'struct', entryBytes: 12 },
  { kind: 'union', entryBytes: 12 },
  { kind: 'enum', entryBytes: 8 },
  { kind: 'fwd' },
  { kind: 'typedef' },
  { kind: 'volatile' },
  { kind: 'const' },
  { kind: 'restrict' },
  { kind: 'func' },
  { kind: 'func_proto', entryBytes: 8 },
  { kind: 'var', trailer: 4 },
  { kind: 'datasec', entryBytes: 12 },
  { kind: 'float' },
  { kind: 'decl_tag', trailer: 4 },
  { kind: 'type_tag' },
  { kind: 'enum64', entryBytes: 12 },
] as const satisfies ReadonlyArray<{ kind: string; trailer?: number; entryBytes?: number }>;

export type BtfKind = (typeof KIND_RECORDS)[number]['kind'];
type KindRecord = { readonly kind: BtfKind; readonly trailer?: number; readonly entryBytes?: number };

/** Kinds that only name or qualify another type: resolving a type strips them. */
export type BtfModifierKind = 'typedef' | 'volatile' | 'const' | 'restrict' | 'type_tag';
export const MODIFIER_KINDS: ReadonlySet<BtfKind> = new Set<BtfKind>([
  'typedef',
  'volatile',
  'const',
  'restrict',
  'type_tag',
]);

export interface BtfVoid {
  readonly kind: 'void';
  readonly name: '';
}
export interface BtfInt {
  readonly kind: 'int';
  readonly name: string;
  readonly size: number;
  readonly signed: boolean;
  readonly char: boolean;
  readonly bool: boolean;
  /** Old-style bitfield encoding: the value's bits within the `size` bytes. */
  readonly bitOffset: number;
  readonly bits: number;
}
export interface BtfPointer {
  readonly kind: 'ptr';
  readonly name: string;
  readonly type: number;
}
export interface BtfArray {
  readonly kind: 'array';
  readonly name: string;
  readonly type: number;
  readonly indexType: number;
  readonly count: number;
}
export interface BtfMember {
  /** '' for an anonymous member (an unnamed struct or union, or padding). */
  readonly name: string;
  readonly type: number;
  readonly bitOffset: number;
  /** Non-zero only for a bitfield declared through the struct's kind_flag encoding. */
  readonly bitfieldSize: number;
}
export interface BtfComposite {
  readonly kind: 'struct' | 'union';
  readonly name: string;
  readonly size: number;
  readonly members: readonly BtfMember[];
}
export interface BtfEnumValue {
  readonly name: string;
  readonly value: bigint;
}
export interface BtfEnum {
  readonly kind: 'enum' | 'enum64';
  readonly name: string;
  readonly size: number;
  readonly signed: boolean;
  readonly values: readonly BtfEnumValue[];
}
export interface BtfFwd {
  readonly kind: 'fwd';
  readonly name: string;
  readonly union: boolean;
}
export interface BtfModifier {
  readonly kind: BtfModifierKind;
  readonly name: string;
  readonly type: number;
}
export interface BtfFunc {
  readonly kind: 'func';
  readonly name: string;
  readonly type: number;
  /** 0 static, 1 global, 2 extern. */
  readonly linkage: number;
}
export interface BtfParam {
  readonly name: string;
  /** 0 with an empty name for the `...` of a variadic function. */
  readonly type: number;
}
export interface BtfFuncProto {
  readonly kind: 'func_proto';
  readonly name: string;
  readonly returnType: number;
  readonly params: readonly BtfParam[];
}
export interface BtfVar {
  readonly kind: 'var';
  readonly name: string;
  readonly type: number;
  readonly linkage: number;
}
export interface BtfDatasecVar {
  readonly type: number;
  readonly offset: number;
  readonly size: number;
}
export interface BtfDatasec {
  readonly kind: 'datasec';
  readonly name: string;
  readonly size: number;
  readonly vars: readonly BtfDatasecVar[];
}
export interface BtfFloat {
  readonly kind: 'float';
  readonly name: string;
  readonly size: number;
}
export interface BtfDeclTag {
  readonly kind: 'decl_tag';
  readonly name: string;
  readonly type: number;
  /** -1 for the type itself, else the member or parameter index the tag applies to. */
  readonly componentIndex: number;
}

export type BtfType =
  | BtfVoid
  | BtfInt
  | BtfPointer
  | BtfArray
  | BtfComposite
  | BtfEnum
  | BtfFwd
  | BtfModifier
  | BtfFunc
  | BtfFuncProto
  | BtfVar
  | BtfDatasec
  | BtfFloat
  | BtfDeclTag;

/** A struct or union member with its layout worked out. */
export interface BtfField {
  readonly name: string;
  /** The member's declared type id (possibly a typedef or qualifier). */
  readonly type: number;
  /** The type id with typedefs and qualifiers stripped. */
  readonly resolvedType: number;
  /** Bit offset from the start of the struct. */
  readonly bitOffset: number;
  /** 0 for an ordinary member, else the bitfield's width in bits. */
  readonly bitSize: number;
}

/** Name lookups, one namespace per kind as in C (a struct and a typedef may share a name). */
export type BtfNamedKind = 'struct' | 'union' | 'enum' | 'typedef';

const INT_SIGNED = 1;
const INT_CHAR = 2;
const INT_BOOL = 4;

function hexOffset(value: number): string {
  return '0x' + value.toString(16);
}

function corruptBtf(where: BtfLocation | undefined, blobOffset: number, what: string): VmscopeError {
  const physical = where === undefined ? undefined : where.physical + blobOffset;
  const place = `blob offset ${hexOffset(blobOffset)}${physical === undefined ? '' : `, physical ${hexOffset(physical)}`}`;
  return new VmscopeError('CORRUPT_STRUCTURE', `BTF: ${what} (${place})`, where?.path, physical ?? blobOffset);
}

/** The one type a pointer, array or modifier leads to; undefined for every other kind. */
function chainTarget(type: BtfType): number | undefined {
  return type.kind === 'ptr' || type.kind === 'array' || MODIFIER_KINDS.has(type.kind)
    ? (type as BtfPointer | BtfArray | BtfModifier).type
    : undefined;
}

/**
 * The parsed type table. Construction proves every reference in range and every pointer,
 * array and typedef chain finite and at most MAX_CHAIN_DEPTH long; sizes and layouts are then
 * worked out on demand and memoized.
 */
export class BtfTypes {
  /** sizeof per type id, -1 until known (a Float64Array: sizes reach 2^32 - 1). */
  private readonly sizes: Float64Array;
  private readonly fieldCache = new Map<number, readonly BtfField[]>();
  private nameIndex: Map<string, number[]> | undefined;

  /**
   * `types[id]` is type id `id` (`types[0]` is void); `recordOffsets[id]` is where its record
   * starts in the blob, for error messages.
   */
  constructor(
    readonly types: readonly BtfType[],
    private readonly recordOffsets: Uint32Array,
    readonly where: BtfLocation | undefined,
  ) {
    this.sizes = new Float64Array(types.length).fill(-1);
    this.checkReferences();
    this.checkChains();
  }

  /** Every type id a record mentions names a type in the table. */
  private checkReferences(): void {
    const count = this.count;
    const check = (referenced: number, id: number, role: string) => {
      if (referenced > count)
        throw this.corrupt(
          id,
          `type id ${id} (${this.types[id]!.kind}) ${role} refers to type id ${referenced}, past the last type (${count})`,
        );
    };
    this.types.forEach((type, id) => {
      switch (type.kind) {
        case 'ptr':
        case 'typedef':
        case 'volatile':
        case 'const':
        case 'restrict':
        case 'type_tag':
        case 'func':
        case 'var':
        case 'decl_tag':
          check(type.type, id, 'target');
          break;
        case 'array':
          check(type.type, id, 'element');
          check(type.indexType, id, 'index');
          break;
        case 'struct':
        case 'union':
          type.members.forEach((member, index) => check(member.type, id, `member ${index}`));
          break;
        case 'func_proto':
          check(type.returnType, id, 'return');
          type.params.forEach((param, index) => check(param.type, id, `parameter ${index}`));
          break;
        case 'datasec':
          type.vars.forEach((variable, index) => check(variable.type, id, `variable ${index}`));
          break;
      }
    });
  }

  /**
   * Pointers, arrays, typedefs and qualifiers each lead to one other type. Proving once that
   * every such chain ends (no cycle) within MAX_CHAIN_DEPTH hops is what lets resolve, sizeOf
   * and the ISF conversion follow them without guards. Iterative, each type visited once.
   */
  private checkChains(): void {
    const UNKNOWN = -1;
    const VISITING = -2;
    const depths = new Int32Array(this.types.length).fill(UNKNOWN);
    const path: number[] = [];
    for (let start = 0; start < this.types.length; start++) {
      let current = start;
      while (depths[current] === UNKNOWN) {
        const next = chainTarget(this.types[current]!);
        if (next === undefined) {
          depths[current] = 0;
          break;
        }
        depths[current] = VISITING;
        path.push(current);
        current = next;
      }
      if (depths[current] === VISITING)
        throw this.corrupt(
          current,
          `type id ${current} (${this.types[current]!.kind}) is part of a cycle of pointers, arrays or typedefs`,
        );
      let depth = depths[current]!;
      while (path.length > 0) {
        const id = path.pop()!;
        depth += 1;
        if (depth > MAX_CHAIN_DEPTH)
          throw this.corrupt(
            id,
            `type id ${id} (${this.types[id]!.kind}) starts a chain of pointers, arrays or typedefs deeper than ${MAX_CHAIN_DEPTH}`,
          );
        depths[id] = depth;
      }
    }
  }

  /** Number of types, void excluded: valid ids are 0..count. */
  get count(): number {
    return this.types.length - 1;
  }

  type(id: number): BtfType {
    const type = this.types[id];
    if (type === undefined) throw this.corrupt(0, `type id ${id} is past the last type (${this.count})`);
    return type;
  }

  /** The first (lowest) type id of that kind and name; 'enum' includes enum64. */
  find(kind: BtfNamedKind, name: string): number | undefined {
    return this.findAll(kind, name)[0];
  }

  /** Every type id of that kind and name, lowest first (deduplication can leave several). */
  findAll(kind: BtfNamedKind, name: string): readonly number[] {
    this.nameIndex ??= this.buildNameIndex();
    return this.nameIndex.get(`${kind} ${name}`) ?? [];
  }

  private buildNameIndex(): Map<string, number[]> {
    const index = new Map<string, number[]>();
    this.types.forEach((type, id) => {
      if (type.name === '') return;
      const kind = type.kind === 'enum64' ? 'enum' : type.kind;
      if (kind !== 'struct' && kind !== 'union' && kind !== 'enum' && kind !== 'typedef') return;
      const key = `${kind} ${type.name}`;
      const ids = index.get(key);
      if (ids) ids.push(id);
      else index.set(key, [id]);
    });
    return index;
  }

  /** The type id behind typedefs, const, volatile, restrict and type tags. */
  resolve(id: number): number {
    let current = id;
    for (let type = this.type(current); MODIFIER_KINDS.has(type.kind); type = this.type(current))
      current = (type as BtfModifier).type;
    return current;
  }

  /** sizeof(type) in bytes; throws for types without a size (void, functions, forward declarations). */
  sizeOf(id: number): number {
    const known = this.sizes[id];
    if (known !== undefined && known >= 0) return known;
    const type = this.type(id);
    let size: number;
    switch (type.kind) {
      case 'int':
      case 'float':
      case 'enum':
      case 'enum64':
      case 'struct':
      case 'union':
        size = type.size;
        break;
      case 'ptr':
        size = POINTER_BYTES;
        break;
      case 'array':
        size = type.count === 0 ? 0 : type.count * this.sizeOf(type.type);
        if (size > MAX_TYPE_SIZE)
          throw this.corrupt(id, `array type id ${id} of ${type.count} elements is larger than 4 GiB`);
        break;
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
      case 'type_tag':
        size = this.sizeOf(type.type);
        break;
      default:
        throw this.corrupt(id, `type id ${id} (${type.kind}) has no size`);
    }
    this.sizes[id] = size;
    return size;
  }

  /**
   * The members of struct/union `id` with bit offsets and bitfield widths from either encoding
   * (kind_flag, or an int type whose bits are narrower than its size), each checked to lie
   * inside the struct, as the kernel's verifier requires.
   */
  fields(id: number): readonly BtfField[] {
    const cached = this.fieldCache.get(id);
    if (cached) return cached;
    const composite = this.type(id);
    if (composite.kind !== 'struct' && composite.kind !== 'union')
      throw this.corrupt(id, `type id ${id} (${composite.kind}) is not a struct or union`);
    const fields = composite.members.map((member, index): BtfField => {
      const what = () =>
        `member ${index} (${member.name || 'anonymous'}) of ${composite.kind} ${composite.name || `type id ${id}`}`;
      const resolvedType = this.resolve(member.type);
      const resolved = this.type(resolvedType);
      let { bitOffset } = member;
      let bitSize = member.bitfieldSize;
      if (
        bitSize === 0 &&
        resolved.kind === 'int' &&
        (resolved.bitOffset !== 0 || resolved.bits !== resolved.size * 8)
      ) {
        bitOffset += resolved.bitOffset;
        bitSize = resolved.bits;
      }
      if (bitSize > 0) {
        if (resolved.kind !== 'int' && resolved.kind !== 'enum' && resolved.kind !== 'enum64')
          throw this.corrupt(id, `${what()} is a bitfield of ${resolved.kind}`);
        if (bitSize > resolved.size * 8 || bitOffset + bitSize > composite.size * 8)
          throw this.corrupt(id, `${what()}: bitfield ${bitOffset}+${bitSize} bits does not fit`);
      } else {
        if (bitOffset % 8 !== 0) throw this.corrupt(id, `${what()} is not byte aligned (bit offset ${bitOffset})`);
        if (bitOffset / 8 + this.sizeOf(member.type) > composite.size)
          throw this.corrupt(
            id,
            `${what()} at byte ${bitOffset / 8} runs past the ${composite.size}-byte ${composite.kind}`,
          );
      }
      return { name: member.name, type: member.type, resolvedType, bitOffset, bitSize };
    });
    this.fieldCache.set(id, fields);
    return fields;
  }

  /** A CORRUPT_STRUCTURE error located at type `id`'s record. */
  corrupt(id: number, what: string): VmscopeError {
    return corruptBtf(this.where, this.recordOffsets[id] ?? 0, what);
  }
}

/**
 * Parse a BTF blob (header + sections, as /sys/kernel/btf/vmlinux holds it). Checks the header,
 * the section bounds, every record's length, kind and unused bits and every name offset here;
 * BtfTypes checks the references between types; layout (sizes, member offsets) is checked
 * when first asked for.
 */
export function parseBtf(bytes: Uint8Array, where?: BtfLocation): BtfTypes {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (blobOffset: number, what: string) => corruptBtf(where, blobOffset, what);

  if (bytes.length < BTF_HEADER_BYTES)
    throw fail(0, `blob of ${bytes.length} bytes is shorter than the ${BTF_HEADER_BYTES}-byte header`);
  if (view.getUint16(0, true) !== BTF_MAGIC) throw fail(0, `bad magic 0x${view.getUint16(0, true).toString(16)}`);
  if (bytes[2] !== 1) throw fail(2, `unsupported version ${bytes[2]}`);
  if (bytes[3] !== 0) throw fail(3, `unsupported flags 0x${bytes[3]!.toString(16)}`);
  const headerLength = view.getUint32(4, true);
  if (headerLength < BTF_HEADER_BYTES || headerLength > bytes.length)
    throw fail(4, `header length ${headerLength} is outside 24..${bytes.length}`);
  // A longer header is a newer format; the kernel accepts it only when the extra bytes are zero.
  for (let at = BTF_HEADER_BYTES; at < headerLength; at++)
    if (bytes[at] !== 0) throw fail(at, 'unknown non-zero header field');
  const typeOffset = view.getUint32(8, true);
  const typeLength = view.getUint32(12, true);
  const stringOffset = view.getUint32(16, true);
  const stringLength = view.getUint32(20, true);
  const typeStart = headerLength + typeOffset;
  const typeEnd = typeStart + typeLength;
  const stringStart = headerLength + stringOffset;
  const stringEnd = stringStart + stringLength;
  if (typeEnd > bytes.length)
    throw fail(8, `type section ${typeOffset}+${typeLength} runs past the ${bytes.length}-byte blob`);
  if (stringEnd > bytes.length)
    throw fail(16, `string section ${stringOffset}+${stringLength} runs past the ${bytes.length}-byte blob`);
  if (typeOffset % 4 !== 0) throw fail(8, `type section offset ${typeOffset} is not 4-byte aligned`);
  if (typeStart < stringEnd && stringStart < typeEnd) throw fail(8, 'type and string sections overlap');
  if (stringLength === 0 || bytes[stringStart] !== 0 || bytes[stringEnd - 1] !== 0) {
    throw fail(stringStart, 'string section does not start and end with NUL');
  }

  // Latin-1 maps each byte to one UTF-16 unit, so string offsets index the decoded text directly.
  const strings = new TextDecoder('latin1').decode(bytes.subarray(stringStart, stringEnd));
  const nameAt = (nameOffset: number, recordOffset: number): string => {
    if (nameOffset >= stringLength)
      throw fail(recordOffset, `name offset ${nameOffset} is past the ${stringLength}-byte string section`);
    return nameOffset === 0 ? '' : strings.slice(nameOffset, strings.indexOf('\0', nameOffset));
  };

  const types: BtfType[] = [{ kind: 'void', name: '' }];
  const recordOffsets: number[] = [0];
  for (let at = typeStart; at < typeEnd;) {
    const id = types.length;
    if (id > MAX_TYPES) throw fail(at, `more than ${MAX_TYPES} types`);
    if (at + TYPE_RECORD_BYTES > typeEnd) throw fail(at, `type id ${id}: record header runs past the type section`);
    const info = view.getUint32(at + 4, true);
    const vlen = info & 0xffff;
    const kindNumber = (info >>> 24) & 0x1f;
    const kindFlag = info >>> 31 === 1;
    const record: KindRecord | undefined = KIND_RECORDS[kindNumber];
    const kind = record?.kind;
    if (record === undefined || kind === undefined || kind === 'void')
      throw fail(at, `type id ${id}: unknown kind ${kindNumber}`);
    if ((info & 0x60ff0000) !== 0) throw fail(at, `type id ${id}: unused info bits set (0x${info.toString(16)})`);
    const { entryBytes } = record;
    if (entryBytes === undefined && vlen !== 0 && kind !== 'func')
      throw fail(at, `type id ${id} (${kind}) has vlen ${vlen}, which its kind does not use`);
    const trailer = entryBytes === undefined ? (record.trailer ?? 0) : vlen * entryBytes;
    const body = at + TYPE_RECORD_BYTES;
    if (body + trailer > typeEnd) throw fail(at, `type id ${id} (${kind}, vlen ${vlen}) runs past the type section`);
    const name = nameAt(view.getUint32(at, true), at);
    const sizeOrType = view.getUint32(at + 8, true);
    types.push(parseRecord(kind, name, sizeOrType, vlen, kindFlag, body, at, id));
    recordOffsets.push(at);
    at = body + trailer;
  }

  function parseRecord(
    kind: Exclude<BtfKind, 'void'>,
    name: string,
    sizeOrType: number,
    vlen: number,
    kindFlag: boolean,
    body: number,
    at: number,
    id: number,
  ): BtfType {
    switch (kind) {
      case 'int': {
        const encoding = view.getUint32(body, true);
        const flags = (encoding >>> 24) & 0x0f;
        const bitOffset = (encoding >>> 16) & 0xff;
        const bits = encoding & 0xff;
        if (![1, 2, 4, 8, 16].includes(sizeOrType)) throw fail(at, `int type id ${id} has size ${sizeOrType}`);
        if (
          (encoding & 0xf0000000) !== 0 ||
          ![0, INT_SIGNED, INT_CHAR, INT_BOOL].includes(flags) ||
          bits === 0 ||
          bitOffset + bits > sizeOrType * 8
        ) {
          throw fail(at, `int type id ${id} has a bad encoding 0x${encoding.toString(16)}`);
        }
        return {
          kind,
          name,
          size: sizeOrType,
          signed: (flags & INT_SIGNED) !== 0,
          char: (flags & INT_CHAR) !== 0,
          bool: (flags & INT_BOOL) !== 0,
          bitOffset,
          bits,
        };
      }
      case 'ptr':
        return { kind, name, type: sizeOrType };
      case 'array':
        return {
          kind,
          name,
          type: view.getUint32(body, true),
          indexType: view.getUint32(body + 4, true),
          count: view.getUint32(body + 8, true),
        };
      case 'struct':
      case 'union': {
        const members: BtfMember[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const entry = body + i * 12;
          const offset = view.getUint32(entry + 8, true);
          members[i] = {
            name: nameAt(view.getUint32(entry, true), entry),
            type: view.getUint32(entry + 4, true),
            bitOffset: kindFlag ? offset & 0xffffff : offset,
            bitfieldSize: kindFlag ? offset >>> 24 : 0,
          };
        }
        return { kind, name, size: sizeOrType, members };
      }
      case 'enum':
      case 'enum64': {
        if (![1, 2, 4, 8].includes(sizeOrType)) throw fail(at, `${kind} type id ${id} has size ${sizeOrType}`);
        const values: BtfEnumValue[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          if (kind === 'enum') {
            const entry = body + i * 8;
            const value = kindFlag ? view.getInt32(entry + 4, true) : view.getUint32(entry + 4, true);
            values[i] = { name: nameAt(view.getUint32(entry, true), entry), value: BigInt(value) };
          } else {
            const entry = body + i * 12;
            const raw = (BigInt(view.getUint32(entry + 8, true)) << 32n) | BigInt(view.getUint32(entry + 4, true));
            values[i] = {
              name: nameAt(view.getUint32(entry, true), entry),
              value: kindFlag ? BigInt.asIntN(64, raw) : raw,
            };
          }
        }
        return { kind, name, size: sizeOrType, signed: kindFlag, values };
      }
      case 'fwd':
        return { kind, name, union: kindFlag };
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
      case 'type_tag':
        return { kind, name, type: sizeOrType };
      case 'func':
        if (vlen > 2) throw fail(at, `func type id ${id} has linkage ${vlen}`);
        return { kind, name, type: sizeOrType, linkage: vlen };
      case 'func_proto': {
        const params: BtfParam[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const entry = body + i * 8;
          params[i] = { name: nameAt(view.getUint32(entry, true), entry), type: view.getUint32(entry + 4, true) };
        }
        return { kind, name, returnType: sizeOrType, params };
      }
      case 'var':
        return { kind, name, type: sizeOrType, linkage: view.getUint32(body, true) };
      case 'datasec': {
        const vars: BtfDatasecVar[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const entry = body + i * 12;
          vars[i] = {
            type: view.getUint32(entry, true),
            offset: view.getUint32(entry + 4, true),
            size: view.getUint32(entry + 8, true),
          };
        }
        return { kind, name, size: sizeOrType, vars };
      }
      case 'float':
        if (![2, 4, 8, 12, 16].includes(sizeOrType)) throw fail(at, `float type id ${id} has size ${sizeOrType}`);
        return { kind, name, size: sizeOrType };
      case 'decl_tag':
        return { kind, name, type: sizeOrType, componentIndex: view.getInt32(body, true) };
    }
  }

  return new BtfTypes(types, Uint32Array.from(recordOffsets), where);
}

/** Total blob size a header announces: header plus the further end of its two sections. */
export function btfBlobSize(header: Uint8Array): number | undefined {
  if (header.length < BTF_HEADER_BYTES) return undefined;
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (view.getUint16(0, true) !== BTF_MAGIC || header[2] !== 1 || header[3] !== 0) return undefined;
  const headerLength = view.getUint32(4, true);
  if (headerLength < BTF_HEADER_BYTES) return undefined;
  return (
    headerLength +
    Math.max(view.getUint32(8, true) + view.getUint32(12, true), view.getUint32(16, true) + view.getUint32(20, true))
  );
}
