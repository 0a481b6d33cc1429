import {
  MAX_CHAIN_DEPTH,
  MODIFIER_KINDS,
  type BtfComposite,
  type BtfEnum,
  type BtfField,
  type BtfFloat,
  type BtfInt,
  type BtfTypes,
} from './btfParse.js';
import type { IsfBaseType, IsfEnum, IsfField, IsfTypeDescriptor, IsfTypes, IsfUserType } from './isf.js';

/**
 * BTF to the type sections of a Volatility ISF (schema 6.x, as dwarf2json writes them):
 * typedefs and qualifiers resolve to their targets, anonymous structs and unions get stable
 * names, and the fields of anonymous members are also copied into their parent at the summed
 * offset, so `task_struct.x` works whether or not a consumer understands `anonymous`.
 */

/** The ISF name of every BTF type that becomes an ISF entry, by type id. */
export interface BtfIsfNames {
  /** struct and union ids → user_types keys. */
  readonly userTypes: ReadonlyMap<number, string>;
  /** enum and enum64 ids → enums keys. */
  readonly enums: ReadonlyMap<number, string>;
  /** int and float ids → base_types keys. */
  readonly baseTypes: ReadonlyMap<number, string>;
}

const VOID: IsfBaseType = { kind: 'void', size: 0, signed: false, endian: 'little' };
/** dwarf2json's convention, which Volatility turns into its Pointer native. */
const POINTER: IsfBaseType = { kind: 'int', size: 8, signed: false, endian: 'little' };
const FUNCTION: IsfTypeDescriptor = { kind: 'function' };
/**
 * Fields copied up from anonymous members, per member in the blob. Real kernels copy one per
 * twenty (2,969 for the 55,905 members of Debian's 6.1); a forged blob in which many parents
 * embed one wide anonymous struct could otherwise make the output quadratic in its input.
 */
const FLATTENED_PER_MEMBER = 8;
const FLATTENED_MINIMUM = 1 << 16;

/** A map with no prototype, so guest-chosen names such as `__proto__` are ordinary keys. */
function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function uniqueName(base: string, taken: ReadonlySet<string> | Record<string, unknown>): string {
  const has = (name: string) => (taken instanceof Set ? taken.has(name) : name in taken);
  if (!has(base)) return base;
  for (let suffix = 2; ; suffix++) if (!has(`${base}_${suffix}`)) return `${base}_${suffix}`;
}

/**
 * Names for one ISF namespace. A C name goes to its most used definition (deduplication keeps
 * a driver's private `struct dma_chan` beside dmaengine's; the one in use everywhere should own
 * the name), the lowest id on a tie; an anonymous type takes the name of the first typedef that
 * names it directly (`typedef struct {…} atomic_t`) when that name is free; everything else is
 * `unnamed_btf_<id>` or `<name>_btf_<id>`.
 */
function nameNamespace(
  types: BtfTypes,
  ids: readonly number[],
  typedefAliases: ReadonlyMap<number, string>,
  uses: Uint32Array,
): Map<number, string> {
  const names = new Map<number, string>();
  const taken = new Set<string>();
  const assign = (id: number, name: string) => {
    names.set(id, name);
    taken.add(name);
  };
  const owners = new Map<string, number>();
  for (const id of ids) {
    const { name } = types.type(id);
    const owner = owners.get(name);
    if (name !== '' && (owner === undefined || uses[id]! > uses[owner]!)) owners.set(name, id);
  }
  for (const [name, id] of owners) assign(id, name);
  for (const id of ids) {
    const alias = typedefAliases.get(id);
    if (types.type(id).name === '' && alias !== undefined && !taken.has(alias)) assign(id, alias);
  }
  for (const id of ids) {
    if (names.has(id)) continue;
    const { name } = types.type(id);
    assign(id, uniqueName(name === '' ? `unnamed_btf_${id}` : `${name}_btf_${id}`, taken));
  }
  return names;
}

/**
 * How often each type is used as a member, parameter, return value or variable, counting a
 * use of `struct x *` or `x_t[4]` as a use of x (BTF shares one pointer type among all users).
 */
function countUses(types: BtfTypes): Uint32Array {
  const uses = new Uint32Array(types.types.length);
  const use = (id: number) => {
    let current = id;
    for (
      let type = types.type(current);
      type.kind === 'ptr' || type.kind === 'array' || MODIFIER_KINDS.has(type.kind);
      type = types.type(current)
    ) {
      current = (type as { type: number }).type;
    }
    uses[current]! += 1;
  };
  for (const type of types.types) {
    if (type.kind === 'struct' || type.kind === 'union') for (const member of type.members) use(member.type);
    else if (type.kind === 'func_proto') {
      use(type.returnType);
      for (const param of type.params) use(param.type);
    } else if (type.kind === 'var') use(type.type);
  }
  return uses;
}

function baseTypeOf(type: BtfInt | BtfFloat): IsfBaseType {
  if (type.kind === 'float') return { kind: 'float', size: type.size, signed: true, endian: 'little' };
  const kind = type.bool ? 'bool' : type.char || /^(?:signed |unsigned )?char$/.test(type.name) ? 'char' : 'int';
  return { kind, size: type.size, signed: type.signed, endian: 'little' };
}

const sameBase = (a: IsfBaseType, b: IsfBaseType) => a.kind === b.kind && a.size === b.size && a.signed === b.signed;

/** Base type names: identical definitions share a name, a conflicting redefinition gets its own. */
function nameBaseTypes(
  types: BtfTypes,
  ids: readonly number[],
): { names: Map<number, string>; baseTypes: Record<string, IsfBaseType> } {
  const baseTypes = record<IsfBaseType>();
  baseTypes.void = VOID;
  baseTypes.pointer = POINTER;
  const names = new Map<number, string>();
  for (const id of ids) {
    const type = types.type(id) as BtfInt | BtfFloat;
    const base = baseTypeOf(type);
    const { name } = type;
    const known = name === '' ? undefined : baseTypes[name];
    if (name !== '' && (known === undefined || (known !== VOID && known !== POINTER && sameBase(known, base)))) {
      baseTypes[name] ??= base;
      names.set(id, name);
    } else {
      const generated = uniqueName(name === '' ? `unnamed_btf_${id}` : `${name}_btf_${id}`, baseTypes);
      baseTypes[generated] = base;
      names.set(id, generated);
    }
  }
  return { names, baseTypes };
}

function assignNames(types: BtfTypes): { names: BtfIsfNames; baseTypes: Record<string, IsfBaseType> } {
  const composites: number[] = [];
  const enums: number[] = [];
  const bases: number[] = [];
  const typedefAliases = new Map<number, string>();
  types.types.forEach((type, id) => {
    switch (type.kind) {
      case 'struct':
      case 'union':
        composites.push(id);
        break;
      case 'enum':
      case 'enum64':
        enums.push(id);
        break;
      case 'int':
      case 'float':
        bases.push(id);
        break;
      case 'typedef':
        if (type.name !== '' && !typedefAliases.has(type.type)) typedefAliases.set(type.type, type.name);
        break;
    }
  });
  const base = nameBaseTypes(types, bases);
  const uses = countUses(types);
  return {
    names: {
      userTypes: nameNamespace(types, composites, typedefAliases, uses),
      enums: nameNamespace(types, enums, typedefAliases, uses),
      baseTypes: base.names,
    },
    baseTypes: base.baseTypes,
  };
}

export function btfIsfNames(types: BtfTypes): BtfIsfNames {
  return assignNames(types).names;
}

class IsfConverter {
  private readonly descriptors = new Map<number, IsfTypeDescriptor>();
  private readonly userTypes = new Map<number, { userType: IsfUserType; nesting: number }>();
  private readonly converting = new Set<number>();
  private readonly enumBases = new Map<string, string>();
  private flattenedBudget: number;
  private readonly names: BtfIsfNames;
  private readonly baseTypes: Record<string, IsfBaseType>;

  constructor(private readonly types: BtfTypes) {
    ({ names: this.names, baseTypes: this.baseTypes } = assignNames(types));
    let members = 0;
    for (const type of types.types) if (type.kind === 'struct' || type.kind === 'union') members += type.members.length;
    this.flattenedBudget = Math.max(FLATTENED_MINIMUM, members * FLATTENED_PER_MEMBER);
  }

  convert(): IsfTypes {
    const user_types = record<IsfUserType>();
    for (const [id, name] of this.names.userTypes) user_types[name] = this.convertComposite(id, 0).userType;
    const enums = record<IsfEnum>();
    for (const [id, name] of this.names.enums) enums[name] = this.enumType(this.types.type(id) as BtfEnum);
    return { base_types: this.baseTypes, user_types, enums };
  }

  /** How a value of type `id` (a variable, a typedef's target) is described; data types only. */
  describe(id: number): IsfTypeDescriptor {
    return this.descriptor(id);
  }

  /**
   * How a field, pointer target or array element of type `id` is described (shared, memoized).
   * Recursion follows pointer/array/typedef chains, which BtfTypes proved finite and short.
   */
  private descriptor(id: number): IsfTypeDescriptor {
    const known = this.descriptors.get(id);
    if (known) return known;
    const type = this.types.type(id);
    let descriptor: IsfTypeDescriptor;
    switch (type.kind) {
      case 'void':
        descriptor = { kind: 'base', name: 'void' };
        break;
      case 'int':
      case 'float':
        descriptor = { kind: 'base', name: this.names.baseTypes.get(id)! };
        break;
      case 'ptr':
        descriptor = { kind: 'pointer', subtype: this.descriptor(type.type) };
        break;
      case 'array':
        descriptor = { kind: 'array', count: type.count, subtype: this.descriptor(type.type) };
        break;
      case 'struct':
      case 'union':
        descriptor = { kind: type.kind, name: this.names.userTypes.get(id)! };
        break;
      case 'enum':
      case 'enum64':
        descriptor = { kind: 'enum', name: this.names.enums.get(id)! };
        break;
      case 'fwd':
        // An opaque declaration: the definition of that name, when there is one, owns the name.
        descriptor = { kind: type.union ? 'union' : 'struct', name: type.name };
        break;
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
      case 'type_tag':
        descriptor = this.descriptor(type.type);
        break;
      case 'func':
      case 'func_proto':
        descriptor = FUNCTION;
        break;
      case 'var':
      case 'datasec':
      case 'decl_tag':
        throw this.types.corrupt(id, `type id ${id} (${type.kind}) is used as a data type`);
    }
    this.descriptors.set(id, descriptor);
    return descriptor;
  }

  /**
   * A struct or union with its anonymous members' fields copied in. `nesting` (how many
   * anonymous levels lie below) is memoized with it, so the depth limit does not depend on the
   * order types are converted in; `depth` (how far down this recursion is) never exceeds it.
   */
  private convertComposite(id: number, depth: number): { userType: IsfUserType; nesting: number } {
    const known = this.userTypes.get(id);
    if (known) return known;
    if (this.converting.has(id))
      throw this.types.corrupt(id, `type id ${id} contains itself through anonymous members`);
    if (depth > MAX_CHAIN_DEPTH)
      throw this.types.corrupt(id, `type id ${id} nests anonymous members deeper than ${MAX_CHAIN_DEPTH}`);
    this.converting.add(id);
    const composite = this.types.type(id) as BtfComposite;
    const fields = record<IsfField>();
    const layout = this.types.fields(id);
    for (const field of layout)
      if (field.name !== '' && !(field.name in fields)) fields[field.name] = this.field(field, composite);

    const anonymous: Array<{ offset: number; type: number }> = [];
    let unnamed = 0;
    for (const field of layout) {
      if (field.name !== '') continue;
      // dwarf2json numbers a struct's unnamed members in declaration order: unnamed_field_0, _1, … (hex).
      const name = `unnamed_field_${(unnamed++).toString(16)}`;
      const inner = this.types.type(field.resolvedType);
      // Unnamed padding bitfields are counted but carry no data (and Volatility would look for their fields); only unnamed structs and unions hold fields.
      if (inner.kind !== 'struct' && inner.kind !== 'union') continue;
      const offset = field.bitOffset / 8;
      fields[uniqueName(name, fields)] = { offset, type: this.descriptor(field.resolvedType), anonymous: true };
      anonymous.push({ offset, type: field.resolvedType });
    }
    let nesting = 0;
    // C forbids a name that an anonymous member also declares, so the parent's own names win.
    for (const member of anonymous) {
      const inner = this.convertComposite(member.type, depth + 1);
      nesting = Math.max(nesting, inner.nesting + 1);
      if (nesting > MAX_CHAIN_DEPTH)
        throw this.types.corrupt(id, `type id ${id} nests anonymous members deeper than ${MAX_CHAIN_DEPTH}`);
      for (const [name, innerField] of Object.entries(inner.userType.fields)) {
        if (innerField.anonymous || name in fields) continue;
        if (--this.flattenedBudget < 0)
          throw this.types.corrupt(
            id,
            `type id ${id}: anonymous members expand to more fields than the blob could describe`,
          );
        fields[name] = { offset: member.offset + innerField.offset, type: innerField.type };
      }
    }
    const converted = { userType: { kind: composite.kind, size: composite.size, fields }, nesting };
    this.converting.delete(id);
    this.userTypes.set(id, converted);
    return converted;
  }

  private field(field: BtfField, composite: BtfComposite): IsfField {
    if (field.bitSize === 0) return { offset: field.bitOffset / 8, type: this.descriptor(field.type) };
    const storage = this.types.type(field.resolvedType);
    const storageBits = this.types.sizeOf(field.resolvedType) * 8;
    const end = field.bitOffset + field.bitSize;
    // Volatility reads the storage type at `offset` and shifts. Use the aligned unit holding the
    // bits; in a packed struct whose end cuts that unit (orc_entry: 6 bytes, `unsigned int`
    // bitfields from bit 32) slide the unit back inside the struct; if the bits still do not
    // fit one unit, start at the byte holding their first bit.
    let start = Math.floor(field.bitOffset / storageBits) * storageBits;
    if (start + storageBits > composite.size * 8) start = Math.max(0, composite.size * 8 - storageBits);
    if (field.bitOffset < start || end > start + storageBits) start = field.bitOffset - (field.bitOffset % 8);
    const type: IsfTypeDescriptor =
      storage.kind === 'int'
        ? { kind: 'base', name: this.names.baseTypes.get(field.resolvedType)! }
        : { kind: 'enum', name: this.names.enums.get(field.resolvedType)! };
    return {
      offset: start / 8,
      type: { kind: 'bitfield', bit_position: field.bitOffset - start, bit_length: field.bitSize, type },
    };
  }

  private enumType(type: BtfEnum): IsfEnum {
    const constants = record<number | bigint>();
    for (const { name, value } of type.values) {
      if (name in constants) continue;
      const small = value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER);
      constants[name] = small ? Number(value) : value;
    }
    return { size: type.size, base: this.enumBase(type.size, type.signed), constants };
  }

  /** As dwarf2json: the first base type, by sorted name, that is an int of the enum's size and signedness. */
  private enumBase(size: number, signed: boolean): string {
    const key = `${size}/${signed}`;
    const known = this.enumBases.get(key);
    if (known !== undefined) return known;
    const matching = Object.keys(this.baseTypes)
      .filter((name) => {
        const base = this.baseTypes[name]!;
        return base.kind === 'int' && base.size === size && base.signed === signed && name !== 'pointer';
      })
      .sort();
    let name = matching[0];
    if (name === undefined) {
      name = uniqueName(`enum_base_${signed ? 's' : 'u'}${size * 8}`, this.baseTypes);
      this.baseTypes[name] = { kind: 'int', size, signed, endian: 'little' };
    }
    this.enumBases.set(key, name);
    return name;
  }
}

/** The ISF base_types, user_types and enums for every type in the blob; same blob, same output. */
export function btfToIsf(types: BtfTypes): IsfTypes {
  return btfIsfConversion(types).isf;
}

/** The ISF type sections, and how any BTF type id (a variable's, a typedef's) is described in them. */
export function btfIsfConversion(types: BtfTypes): { isf: IsfTypes; describe: (id: number) => IsfTypeDescriptor } {
  const converter = new IsfConverter(types);
  return { isf: converter.convert(), describe: (id) => converter.describe(id) };
}
