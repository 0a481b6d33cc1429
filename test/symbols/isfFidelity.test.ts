import { beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import {
  btfIsfConversion,
  btfIsfNames,
  carveVmlinuxBtf,
  type BtfIsfNames,
  type BtfTypes,
} from '../../src/symbols/btf.js';
import type { IsfField, IsfTypeDescriptor, IsfTypes } from '../../src/symbols/isf.js';
import volatility from '../../src/symbols/volatilitySymbols.json' with { type: 'json' };
import { fixturePath } from '../support/fixtures.js';

/**
 * Every kernel type Volatility 3's Linux plugins touch (the committed list), compared field by
 * field with what the kernel's own BTF says, as dwarf2json would write it from DWARF: offsets,
 * bitfields (storage unit, bit position, width), char arrays, function pointers, enums with
 * their base type, anonymous members as `unnamed_field_<hex count>` with their fields also
 * reachable from the parent. The expectation is built from the parsed BTF here, independently
 * of the converter's own bookkeeping.
 */
interface ListedType {
  type: string;
  optional?: string;
}
const userTypes = volatility.user_types as ListedType[];
const enums = volatility.enums as ListedType[];

/** The descriptor dwarf2json writes for a value of BTF type `id`: typedefs and qualifiers see through, pointers and arrays recurse. */
function expectedDescriptor(btf: BtfTypes, names: BtfIsfNames, id: number): IsfTypeDescriptor {
  const resolved = btf.resolve(id);
  const type = btf.type(resolved);
  switch (type.kind) {
    case 'void':
      return { kind: 'base', name: 'void' };
    case 'int':
    case 'float':
      return { kind: 'base', name: names.baseTypes.get(resolved)! };
    case 'ptr':
      return { kind: 'pointer', subtype: expectedDescriptor(btf, names, type.type) };
    case 'array':
      return { kind: 'array', count: type.count, subtype: expectedDescriptor(btf, names, type.type) };
    case 'struct':
    case 'union':
      return { kind: type.kind, name: names.userTypes.get(resolved)! };
    case 'enum':
    case 'enum64':
      return { kind: 'enum', name: names.enums.get(resolved)! };
    case 'fwd':
      return { kind: type.union ? 'union' : 'struct', name: type.name };
    case 'func_proto':
      return { kind: 'function' };
    default:
      throw new Error(`type id ${id} (${type.kind}) is not a data type`);
  }
}

/** Differences between an ISF user type and its BTF definition. */
function compareComposite(btf: BtfTypes, names: BtfIsfNames, isf: IsfTypes, name: string, id: number): string[] {
  const problems: string[] = [];
  const composite = btf.type(id);
  const converted = isf.user_types[name]!;
  if (composite.kind !== 'struct' && composite.kind !== 'union')
    return [`${name}: BTF id ${id} is a ${composite.kind}`];
  if (converted.kind !== composite.kind) problems.push(`${name}: kind ${converted.kind}, BTF says ${composite.kind}`);
  if (converted.size !== composite.size) problems.push(`${name}: size ${converted.size}, BTF says ${composite.size}`);

  const accounted = new Set<string>();
  const anonymous: Array<{ field: IsfField; id: number }> = [];
  let unnamed = 0;
  for (const field of btf.fields(id)) {
    const inner = btf.type(field.resolvedType);
    if (field.name === '') {
      // dwarf2json's name: the unnamed members' running count in hex (padding bitfields count too, holding no fields).
      const key = `unnamed_field_${(unnamed++).toString(16)}`;
      if (inner.kind !== 'struct' && inner.kind !== 'union') continue;
      const offset = field.bitOffset / 8;
      const entry = converted.fields[key];
      if (!entry?.anonymous || entry.offset !== offset)
        problems.push(
          `${name}: ${key} should be the anonymous ${inner.kind} at ${offset}, is ${JSON.stringify(entry)}`,
        );
      else {
        accounted.add(key);
        anonymous.push({ field: entry, id: field.resolvedType });
        const expected = expectedDescriptor(btf, names, field.type);
        if (JSON.stringify(entry.type) !== JSON.stringify(expected))
          problems.push(`${name}.${key}: ${JSON.stringify(entry.type)}, BTF says ${JSON.stringify(expected)}`);
      }
      continue;
    }
    accounted.add(field.name);
    const converted_ = converted.fields[field.name];
    if (!converted_) {
      problems.push(`${name}.${field.name}: missing`);
      continue;
    }
    if (field.bitSize === 0) {
      if (converted_.offset !== field.bitOffset / 8)
        problems.push(`${name}.${field.name}: offset ${converted_.offset}, BTF says ${field.bitOffset / 8}`);
      const expected = expectedDescriptor(btf, names, field.type);
      if (JSON.stringify(converted_.type) !== JSON.stringify(expected))
        problems.push(
          `${name}.${field.name}: ${JSON.stringify(converted_.type)}, BTF says ${JSON.stringify(expected)}`,
        );
    } else {
      const bits = converted_.type;
      if (bits.kind !== 'bitfield') {
        problems.push(`${name}.${field.name}: a ${field.bitSize}-bit field written as ${bits.kind}`);
        continue;
      }
      if (converted_.offset * 8 + bits.bit_position !== field.bitOffset)
        problems.push(
          `${name}.${field.name}: bit ${converted_.offset * 8 + bits.bit_position}, BTF says ${field.bitOffset}`,
        );
      if (bits.bit_length !== field.bitSize)
        problems.push(`${name}.${field.name}: ${bits.bit_length} bits, BTF says ${field.bitSize}`);
      const storage = expectedDescriptor(btf, names, field.type);
      if (JSON.stringify(bits.type) !== JSON.stringify(storage))
        problems.push(
          `${name}.${field.name}: bits of ${JSON.stringify(bits.type)}, BTF says ${JSON.stringify(storage)}`,
        );
      const storageSize = btf.sizeOf(field.resolvedType);
      if (converted_.offset < 0 || converted_.offset + storageSize > composite.size)
        problems.push(
          `${name}.${field.name}: its ${storageSize}-byte storage unit at ${converted_.offset} leaves the struct`,
        );
    }
  }
  // Fields of anonymous members are also the parent's, at the summed offset (unless the parent declares the name).
  for (const { field, id: innerId } of anonymous) {
    const innerName = names.userTypes.get(innerId)!;
    for (const [fieldName, innerField] of Object.entries(isf.user_types[innerName]!.fields)) {
      if (innerField.anonymous || accounted.has(fieldName)) continue;
      const lifted = converted.fields[fieldName];
      if (!lifted) problems.push(`${name}.${fieldName}: the anonymous member's field is not reachable from ${name}`);
      else if (lifted.offset !== field.offset + innerField.offset)
        problems.push(
          `${name}.${fieldName}: lifted to ${lifted.offset}, belongs at ${field.offset + innerField.offset}`,
        );
      accounted.add(fieldName);
    }
  }
  for (const key of Object.keys(converted.fields)) if (!accounted.has(key)) problems.push(`${name}.${key}: not in BTF`);
  return problems;
}

describe.each(['linux61-clean', 'linux612-clean'])('ISF types Volatility touches, against the BTF of %s', (fixture) => {
  let btf: BtfTypes;
  let isf: IsfTypes;
  let idOf: Map<string, number>;
  let enumIdOf: Map<string, number>;
  let names: BtfIsfNames;
  beforeAll(() => {
    const context = new DumpContext(fixturePath(fixture, 'elf'), { cacheDir: false });
    btf = carveVmlinuxBtf(context.image).types;
    context.close();
    isf = btfIsfConversion(btf).isf;
    names = btfIsfNames(btf);
    idOf = new Map([...names.userTypes].map(([id, name]) => [name, id]));
    enumIdOf = new Map([...names.enums].map(([id, name]) => [name, id]));
  });

  it('has every listed struct and union the kernel defines, field for field as BTF lays it out', () => {
    const problems: string[] = [];
    let compared = 0;
    for (const { type, optional } of userTypes) {
      const id = idOf.get(type);
      if (id === undefined || !(type in isf.user_types)) {
        if (optional === undefined) problems.push(`${type}: not in the ISF`);
        continue;
      }
      problems.push(...compareComposite(btf, names, isf, type, id));
      compared++;
      // The anonymous members' own types are user types too: compare them as well.
      for (const field of btf.fields(id)) {
        const innerName = field.name === '' ? names.userTypes.get(field.resolvedType) : undefined;
        if (innerName !== undefined) problems.push(...compareComposite(btf, names, isf, innerName, field.resolvedType));
      }
    }
    expect(compared).toBeGreaterThan(50);
    expect(problems.slice(0, 20)).toEqual([]);
  });

  it('writes enums with a base type of their size and signedness, and every constant', () => {
    for (const { type, optional } of enums) {
      const id = enumIdOf.get(type);
      if (id === undefined) {
        expect(optional, `${type} missing`).toBeDefined();
        continue;
      }
      const definition = btf.type(id);
      if (definition.kind !== 'enum' && definition.kind !== 'enum64')
        throw new Error(`${type} is a ${definition.kind}`);
      const converted = isf.enums[type]!;
      const base = isf.base_types[converted.base]!;
      expect({ kind: base.kind, size: base.size, signed: base.signed }).toEqual({
        kind: 'int',
        size: definition.size,
        signed: definition.signed,
      });
      expect(converted.size).toBe(definition.size);
      for (const { name, value } of definition.values)
        expect(BigInt(converted.constants[name]!), `${type}.${name}`).toBe(value);
    }
  });

  it('spells the shapes Volatility relies on as dwarf2json does: char arrays, function pointers, bitfields, anonymous members', () => {
    const comm = isf.user_types.task_struct!.fields.comm!;
    expect(comm.type).toEqual({ kind: 'array', count: 16, subtype: { kind: 'base', name: 'char' } });
    expect(isf.base_types.char).toMatchObject({ kind: 'char', size: 1 });
    expect(isf.user_types.file_operations!.fields.read!.type).toEqual({
      kind: 'pointer',
      subtype: { kind: 'function' },
    });
    const state = isf.user_types.sock!.fields.sk_state ?? isf.user_types.sock_common!.fields.skc_state!;
    expect(state.type).toMatchObject({ kind: 'base' });
    const bitfield = Object.values(isf.user_types.task_struct!.fields).find((field) => field.type.kind === 'bitfield');
    expect(bitfield?.type).toMatchObject({ kind: 'bitfield', type: { kind: 'base' } });
    const unnamed = Object.keys(isf.user_types.page!.fields).filter((key) => key.startsWith('unnamed_field_'));
    expect(unnamed.length).toBeGreaterThan(0);
    expect(unnamed).toContain('unnamed_field_0');
    for (const key of unnamed) expect(key).toMatch(/^unnamed_field_[0-9a-f]+$/);
  });
});
