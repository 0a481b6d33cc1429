import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { openImage, openImageSource } from '../../src/image/open.js';
import { BufferSource } from '../../src/image/source.js';
import { btfToIsf, carveVmlinuxBtf, parseBtf } from '../../src/symbols/btf.js';
import { VmscopeError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';
import { BtfBuilder, KIND, type Member } from './btfBuilder.js';

/** The VmscopeError `run` throws (failing the test if it returns or throws anything else). */
function corruption(run: () => unknown): VmscopeError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(VmscopeError);
    expect((error as VmscopeError).code).toBe('CORRUPT_STRUCTURE');
    return error as VmscopeError;
  }
  throw new Error('expected a CORRUPT_STRUCTURE error, got a result');
}

const parseAndConvert = (bytes: Uint8Array) => btfToIsf(parseBtf(bytes));

describe('parseBtf decodes every kind', () => {
  it('kinds 1..19 with their fields, names and references', () => {
    const b = new BtfBuilder();
    const int = b.int('int', 4, { signed: true });
    const ptr = b.ptr(int);
    const array = b.array(int, int, 3);
    const struct = b.composite('struct', 'pair', 8, [
      ['a', int, 0],
      ['b', int, 32],
    ]);
    // Member 'f' is void on purpose: legal to parse, refused when the union's layout is asked for.
    const union = b.composite('union', 'either', 4, [
      ['i', int, 0],
      ['f', 0, 0],
    ]);
    const enumeration = b.enum('colour', 4, true, [
      ['RED', -1],
      ['GREEN', 7],
    ]);
    const fwd = b.fwd('opaque', true);
    const typedef = b.modifier('typedef', 'pair_t', struct);
    const volatileType = b.modifier('volatile', '', int);
    const constType = b.modifier('const', '', volatileType);
    const restrict = b.modifier('restrict', '', ptr);
    const proto = b.funcProto(int, [
      ['x', ptr],
      ['', 0],
    ]);
    const func = b.func('do_it', proto, 1);
    const variable = b.variable('counter', int, 1);
    const datasec = b.datasec('.data', 64, [[variable, 16, 4]]);
    const float = b.float('double', 8);
    const declTag = b.declTag('user', struct, 1);
    const typeTag = b.modifier('type_tag', 'rcu', struct);
    const enum64 = b.enum64('wide', 8, false, [
      ['ALL', 0xffffffffffffffffn],
      ['SMALL', 5n],
    ]);
    const types = parseBtf(b.build());

    expect(types.count).toBe(enum64);
    expect(types.type(0)).toEqual({ kind: 'void', name: '' });
    expect(types.type(int)).toEqual({
      kind: 'int',
      name: 'int',
      size: 4,
      signed: true,
      char: false,
      bool: false,
      bitOffset: 0,
      bits: 32,
    });
    expect(types.type(ptr)).toEqual({ kind: 'ptr', name: '', type: int });
    expect(types.type(array)).toEqual({ kind: 'array', name: '', type: int, indexType: int, count: 3 });
    expect(types.type(struct)).toEqual({
      kind: 'struct',
      name: 'pair',
      size: 8,
      members: [
        { name: 'a', type: int, bitOffset: 0, bitfieldSize: 0 },
        { name: 'b', type: int, bitOffset: 32, bitfieldSize: 0 },
      ],
    });
    expect(types.type(union)).toMatchObject({ kind: 'union', name: 'either', size: 4 });
    expect(types.type(enumeration)).toEqual({
      kind: 'enum',
      name: 'colour',
      size: 4,
      signed: true,
      values: [
        { name: 'RED', value: -1n },
        { name: 'GREEN', value: 7n },
      ],
    });
    expect(types.type(fwd)).toEqual({ kind: 'fwd', name: 'opaque', union: true });
    expect(types.type(typedef)).toEqual({ kind: 'typedef', name: 'pair_t', type: struct });
    expect(types.type(volatileType)).toEqual({ kind: 'volatile', name: '', type: int });
    expect(types.type(constType)).toEqual({ kind: 'const', name: '', type: volatileType });
    expect(types.type(restrict)).toEqual({ kind: 'restrict', name: '', type: ptr });
    expect(types.type(proto)).toEqual({
      kind: 'func_proto',
      name: '',
      returnType: int,
      params: [
        { name: 'x', type: ptr },
        { name: '', type: 0 },
      ],
    });
    expect(types.type(func)).toEqual({ kind: 'func', name: 'do_it', type: proto, linkage: 1 });
    expect(types.type(variable)).toEqual({ kind: 'var', name: 'counter', type: int, linkage: 1 });
    expect(types.type(datasec)).toEqual({
      kind: 'datasec',
      name: '.data',
      size: 64,
      vars: [{ type: variable, offset: 16, size: 4 }],
    });
    expect(types.type(float)).toEqual({ kind: 'float', name: 'double', size: 8 });
    expect(types.type(declTag)).toEqual({ kind: 'decl_tag', name: 'user', type: struct, componentIndex: 1 });
    expect(types.type(typeTag)).toEqual({ kind: 'type_tag', name: 'rcu', type: struct });
    expect(types.type(enum64)).toEqual({
      kind: 'enum64',
      name: 'wide',
      size: 8,
      signed: false,
      values: [
        { name: 'ALL', value: 0xffffffffffffffffn },
        { name: 'SMALL', value: 5n },
      ],
    });

    expect(types.resolve(constType)).toBe(int);
    expect(types.resolve(typeTag)).toBe(struct);
    expect(types.sizeOf(typedef)).toBe(8);
    expect(types.sizeOf(array)).toBe(12);
    expect(types.sizeOf(ptr)).toBe(8);
    expect(types.find('struct', 'pair')).toBe(struct);
    expect(types.find('typedef', 'pair_t')).toBe(typedef);
    expect(types.find('enum', 'wide')).toBe(enum64);
    expect(types.find('union', 'pair')).toBeUndefined();
    // A void member has no size: the union is malformed, found when its layout is asked for.
    expect(corruption(() => types.fields(union)).message).toMatch(/type id 0 \(void\) has no size/);
  });

  it('bitfields from both encodings, members through typedef/const chains, and their ISF form', () => {
    const b = new BtfBuilder();
    const u32 = b.int('unsigned int', 4);
    const u8 = b.int('unsigned char', 1);
    const legacyBits = b.int('unsigned int', 4, { bits: 3, bitOffset: 0 });
    const u32Typedef = b.modifier('typedef', 'u32', u32);
    const constU32 = b.modifier('const', '', u32Typedef);
    const mode = b.enum('mode', 4, false, [
      ['OFF', 0],
      ['ON', 1],
    ]);
    const flags = b.composite('struct', 'flags', 12, [
      ['low', u32, 0, 4],
      ['high', u32, 4, 12],
      ['state', mode, 16, 2],
      ['tail', u8, 36, 4], // bits 36..39 of byte 4: a 1-byte storage unit at offset 4
      ['count', constU32, 64, 0],
    ]);
    const legacy = b.composite('struct', 'legacy', 4, [['three', legacyBits, 5]]);
    // As the kernel's packed struct orc_entry: 6 bytes, `unsigned int` bitfields from bit 32.
    const packed = b.composite('struct', 'packed', 6, [
      ['sp_offset', u32, 0, 16],
      ['sp_reg', u32, 32, 4],
      ['end', u32, 47, 1],
    ]);
    const types = parseBtf(b.build());
    expect(types.fields(flags)).toEqual([
      { name: 'low', type: u32, resolvedType: u32, bitOffset: 0, bitSize: 4 },
      { name: 'high', type: u32, resolvedType: u32, bitOffset: 4, bitSize: 12 },
      { name: 'state', type: mode, resolvedType: mode, bitOffset: 16, bitSize: 2 },
      { name: 'tail', type: u8, resolvedType: u8, bitOffset: 36, bitSize: 4 },
      { name: 'count', type: constU32, resolvedType: u32, bitOffset: 64, bitSize: 0 },
    ]);
    expect(types.fields(legacy)).toEqual([
      { name: 'three', type: legacyBits, resolvedType: legacyBits, bitOffset: 5, bitSize: 3 },
    ]);

    const isf = btfToIsf(types);
    expect(isf.user_types.flags).toEqual({
      kind: 'struct',
      size: 12,
      fields: {
        low: {
          offset: 0,
          type: { kind: 'bitfield', bit_position: 0, bit_length: 4, type: { kind: 'base', name: 'unsigned int' } },
        },
        high: {
          offset: 0,
          type: { kind: 'bitfield', bit_position: 4, bit_length: 12, type: { kind: 'base', name: 'unsigned int' } },
        },
        state: {
          offset: 0,
          type: { kind: 'bitfield', bit_position: 16, bit_length: 2, type: { kind: 'enum', name: 'mode' } },
        },
        tail: {
          offset: 4,
          type: { kind: 'bitfield', bit_position: 4, bit_length: 4, type: { kind: 'base', name: 'unsigned char' } },
        },
        count: { offset: 8, type: { kind: 'base', name: 'unsigned int' } },
      },
    });
    const packedBitfield = (bit_position: number, bit_length: number) => ({
      offset: 2,
      type: { kind: 'bitfield', bit_position, bit_length, type: { kind: 'base', name: 'unsigned int' } },
    });
    expect(isf.user_types.packed!.fields).toEqual({
      sp_offset: {
        offset: 0,
        type: { kind: 'bitfield', bit_position: 0, bit_length: 16, type: { kind: 'base', name: 'unsigned int' } },
      },
      sp_reg: packedBitfield(16, 4),
      end: packedBitfield(31, 1),
    });
    expect(packed).toBeGreaterThan(0);
    expect(isf.user_types.legacy!.fields.three).toEqual({
      offset: 0,
      type: { kind: 'bitfield', bit_position: 5, bit_length: 3, type: { kind: 'base', name: 'unsigned int' } },
    });
    expect(isf.base_types['unsigned char']).toEqual({ kind: 'char', size: 1, signed: false, endian: 'little' });
    expect(isf.enums.mode).toEqual({ size: 4, base: 'unsigned int', constants: { OFF: 0, ON: 1 } });
  });

  it('flattens nested anonymous members into the parent at summed offsets and keeps them marked anonymous', () => {
    const b = new BtfBuilder();
    const long = b.int('long unsigned int', 8);
    const int = b.int('int', 4, { signed: true });
    // struct outer { long head; union { long a; struct { int b; int c:3; }; }; long tail; }
    const innerStruct = b.composite('struct', '', 8, [
      ['b', int, 0, 0],
      ['c', int, 32, 3],
    ]);
    const innerUnion = b.composite('union', '', 8, [
      ['a', long, 0],
      ['', innerStruct, 0],
    ]);
    const outer = b.composite('struct', 'outer', 24, [
      ['head', long, 0],
      ['', innerUnion, 64],
      ['tail', long, 128],
    ]);
    const isf = parseAndConvert(b.build());
    const fields = isf.user_types.outer!.fields;
    expect(fields.head!.offset).toBe(0);
    expect(fields.a).toEqual({ offset: 8, type: { kind: 'base', name: 'long unsigned int' } });
    expect(fields.b).toEqual({ offset: 8, type: { kind: 'base', name: 'int' } });
    expect(fields.c).toEqual({
      offset: 12,
      type: { kind: 'bitfield', bit_position: 0, bit_length: 3, type: { kind: 'base', name: 'int' } },
    });
    expect(fields.tail!.offset).toBe(16);
    expect(fields.unnamed_field_0).toEqual({
      offset: 8,
      type: { kind: 'union', name: `unnamed_btf_${innerUnion}` },
      anonymous: true,
    });
    // The anonymous types themselves exist, so a consumer that walks `anonymous` members finds the same offsets.
    expect(isf.user_types[`unnamed_btf_${innerUnion}`]!.fields.unnamed_field_0).toEqual({
      offset: 0,
      type: { kind: 'struct', name: `unnamed_btf_${innerStruct}` },
      anonymous: true,
    });
    expect(isf.user_types[`unnamed_btf_${innerStruct}`]!.fields.b!.offset).toBe(0);
    expect(Object.keys(fields)).toEqual(['head', 'tail', 'unnamed_field_0', 'a', 'b', 'c']);
    expect(outer).toBeGreaterThan(0);
  });

  it('names anonymous, typedef-named, duplicate and hostile-named types stably; lookups are per kind', () => {
    const build = () => {
      const b = new BtfBuilder();
      const int = b.int('int', 4, { signed: true });
      const anonymous = b.composite('struct', '', 4, [['counter', int, 0]]);
      b.modifier('typedef', 'atomic_t', anonymous);
      b.modifier('typedef', 'second_alias', anonymous);
      const first = b.composite('struct', 'dup', 4, [['x', int, 0]]);
      const second = b.composite('struct', 'dup', 8, [['y', int, 32]]);
      const sameNameTypedef = b.modifier('typedef', 'dup', first);
      // The second `dup` is used twice (through a pointer and a const array), the first once: the second owns the name.
      const secondPointer = b.ptr(second);
      b.composite('struct', 'user', 16, [
        ['one', first, 0],
        ['two', secondPointer, 64],
      ]);
      b.funcProto(0, [['arg', b.array(b.modifier('const', '', second), int, 2)]]);
      const proto = b.composite('struct', '__proto__', 4, [['constructor', int, 0]]);
      const unnamed = b.composite('union', '', 4, [['u', int, 0]]);
      const anonymousEnum = b.enum('', 4, false, [['__proto__', 3]]);
      const holder = b.composite('struct', 'holder', 8, [['p', b.ptr(unnamed), 0]]);
      return {
        bytes: b.build(),
        ids: { anonymous, first, second, sameNameTypedef, proto, unnamed, anonymousEnum, holder },
      };
    };
    const { bytes, ids } = build();
    const types = parseBtf(bytes);
    const isf = btfToIsf(types);
    expect(isf.user_types.atomic_t).toEqual({
      kind: 'struct',
      size: 4,
      fields: { counter: { offset: 0, type: { kind: 'base', name: 'int' } } },
    });
    expect(isf.user_types.second_alias).toBeUndefined();
    expect(isf.user_types.dup!.size).toBe(8);
    expect(isf.user_types[`dup_btf_${ids.first}`]!.size).toBe(4);
    expect(isf.user_types.user!.fields.one!.type).toEqual({ kind: 'struct', name: `dup_btf_${ids.first}` });
    expect(isf.user_types.user!.fields.two!.type).toEqual({
      kind: 'pointer',
      subtype: { kind: 'struct', name: 'dup' },
    });
    expect(Object.getPrototypeOf(isf.user_types.__proto__)).toBe(Object.prototype);
    expect(isf.user_types.__proto__!.fields.constructor).toEqual({ offset: 0, type: { kind: 'base', name: 'int' } });
    expect(isf.user_types[`unnamed_btf_${ids.unnamed}`]!.kind).toBe('union');
    expect(isf.user_types.holder!.fields.p!.type).toEqual({
      kind: 'pointer',
      subtype: { kind: 'union', name: `unnamed_btf_${ids.unnamed}` },
    });
    expect(isf.enums[`unnamed_btf_${ids.anonymousEnum}`]!.constants.__proto__).toBe(3);
    // A struct and a typedef may share a name: each kind has its own lookup.
    expect(types.find('struct', 'dup')).toBe(ids.first);
    expect(types.findAll('struct', 'dup')).toEqual([ids.first, ids.second]);
    expect(types.find('typedef', 'dup')).toBe(ids.sameNameTypedef);
    // Same input, same output, byte for byte.
    expect(JSON.stringify(btfToIsf(parseBtf(build().bytes)))).toBe(JSON.stringify(isf));
  });
});

describe('hostile BTF fails with CORRUPT_STRUCTURE naming where', () => {
  const simple = () => {
    const b = new BtfBuilder();
    const pointer = b.ptr(2);
    b.composite('struct', 'list_head', 16, [
      ['next', pointer, 0],
      ['prev', pointer, 64],
    ]);
    return b;
  };

  it('a header whose sections point past the blob', () => {
    const valid = simple().build();
    const typeLength = new DataView(valid.buffer).getUint32(12, true);
    const past = corruption(() =>
      parseBtf(simple().build({ typeLen: typeLength + 4096 }), { path: 'guest.elf', physical: 0x2000000 }),
    );
    expect(past.message).toMatch(/type section .* runs past the \d+-byte blob/);
    expect(past.file).toBe('guest.elf');
    expect(past.offset).toBe(0x2000000 + 8);
    expect(past.message).toContain('physical 0x2000008');
    expect(corruption(() => parseBtf(simple().build({ strLen: 1 << 30 }))).message).toMatch(
      /string section .* runs past/,
    );
    expect(corruption(() => parseBtf(simple().build({ strOff: 0xffffffff }))).message).toMatch(/string section/);
    expect(corruption(() => parseBtf(simple().build({ hdrLen: 0xfffffff0 }))).message).toMatch(/header length/);
    expect(corruption(() => parseBtf(simple().build({ hdrLen: 28 }))).message).toMatch(
      /runs past|unknown non-zero header field/,
    );
    expect(corruption(() => parseBtf(simple().build({ strOff: 0 }))).message).toMatch(/overlap/);
    expect(corruption(() => parseBtf(valid.subarray(0, 20))).message).toMatch(/shorter than the 24-byte header/);
    const unterminated = valid.slice();
    unterminated[unterminated.length - 1] = 0x41;
    expect(corruption(() => parseBtf(unterminated)).message).toMatch(/string section does not start and end with NUL/);
  });

  it('type ids pointing past the table, from every kind of reference', () => {
    const forge = (add: (b: BtfBuilder, int: number) => void) => {
      const b = new BtfBuilder();
      add(b, b.int('int', 4, { signed: true }));
      return b.build();
    };
    const cases = [
      forge((b) => b.ptr(99)),
      forge((b, int) =>
        b.composite('struct', 's', 4, [
          ['x', int, 0],
          ['y', 1234567, 0],
        ]),
      ),
      forge((b, int) => b.array(99, int, 2)),
      forge((b, int) => b.array(int, 0xffffffff, 2)),
      forge((b, int) => b.funcProto(int, [['a', 77]])),
      forge((b) => b.modifier('typedef', 't', 0xfffff)),
      forge((b, int) =>
        b.datasec('.bss', 4, [
          [int, 0, 4],
          [55, 0, 4],
        ]),
      ),
    ];
    for (const bytes of cases)
      expect(corruption(() => parseBtf(bytes, { path: 'dump', physical: 0x1000 })).message).toMatch(
        /refers to type id \d+, past the last type \(\d\)/,
      );
    // The error points at the record that holds the reference: the second record, after the int's 16 bytes.
    expect(corruption(() => parseBtf(cases[0]!, { path: 'dump', physical: 0x1000 })).offset).toBe(0x1000 + 24 + 16);
  });

  it('typedef, qualifier and pointer cycles, and over-long chains, are refused when parsed', () => {
    const typedefs = new BtfBuilder();
    typedefs.modifier('typedef', 'A', 2); // A → B
    typedefs.modifier('typedef', 'B', 1); // B → A
    expect(corruption(() => parseBtf(typedefs.build())).message).toMatch(/type id 1 \(typedef\) is part of a cycle/);
    const self = new BtfBuilder();
    self.int('int', 4);
    self.modifier('const', '', 2); // const → itself
    expect(corruption(() => parseBtf(self.build())).message).toMatch(/type id 2 \(const\) is part of a cycle/);
    const pointers = new BtfBuilder();
    pointers.ptr(2);
    pointers.ptr(1);
    expect(corruption(() => parseBtf(pointers.build())).message).toMatch(/is part of a cycle/);

    const chain = (length: number) => {
      const b = new BtfBuilder();
      let id = b.int('int', 4);
      for (let i = 0; i < length; i++) id = i % 2 ? b.modifier('typedef', `t${i}`, id) : b.ptr(id);
      return { bytes: b.build(), last: id };
    };
    const fine = chain(64);
    expect(parseBtf(fine.bytes).sizeOf(fine.last)).toBe(8);
    const started = performance.now();
    expect(corruption(() => parseBtf(chain(100_000).bytes)).message).toMatch(
      /type id 66 \(\w+\) starts a chain of pointers, arrays or typedefs deeper than 64/,
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('anonymous members that contain themselves or nest without end', () => {
    const recursive = new BtfBuilder();
    const int = recursive.int('int', 4);
    recursive.composite('struct', 'ouroboros', 8, [
      ['x', int, 0],
      ['', 2, 0],
    ]);
    expect(corruption(() => parseAndConvert(recursive.build())).message).toMatch(
      /type id 2 contains itself through anonymous members/,
    );

    // The same nesting whichever way the type ids run: innermost first, or outermost first (forward references).
    const nest = (levels: number, outermostFirst: boolean) => {
      const b = new BtfBuilder();
      const int = b.int('int', 4);
      if (outermostFirst) {
        for (let i = 0; i < levels; i++) b.composite('struct', '', 4, [['', int + 2 + i, 0]]);
        b.composite('struct', '', 4, [['leaf', int, 0]]);
      } else {
        let inner = b.composite('struct', '', 4, [['leaf', int, 0]]);
        for (let i = 0; i < levels; i++) inner = b.composite('struct', '', 4, [['', inner, 0]]);
      }
      return b.build();
    };
    for (const outermostFirst of [false, true]) {
      expect(
        parseAndConvert(nest(64, outermostFirst)).user_types[`unnamed_btf_${outermostFirst ? 2 : 66}`]!.fields.leaf!
          .offset,
      ).toBe(0);
      expect(corruption(() => parseAndConvert(nest(65, outermostFirst))).message).toMatch(
        /nests anonymous members deeper than 64/,
      );
      expect(corruption(() => parseAndConvert(nest(10_000, outermostFirst))).message).toMatch(
        /nests anonymous members deeper than 64/,
      );
    }
  });

  it('vlen 65535 on every type', () => {
    const b = new BtfBuilder();
    for (let kind = 1; kind <= 19; kind++) b.raw(0, (kind << 24) | 0xffff, 1, [0, 0, 0]);
    expect(corruption(() => parseBtf(b.build())).message).toMatch(/type id 1 \(int\) has vlen 65535/);
    // Kinds whose vlen counts entries: the entries would run past the section.
    for (const kind of [KIND.struct, KIND.union, KIND.enum, KIND.func_proto, KIND.datasec, KIND.enum64]) {
      const many = new BtfBuilder();
      many.raw(0, (kind << 24) | 0xffff, 4, [0, 1, 0]);
      expect(corruption(() => parseBtf(many.build())).message).toMatch(/vlen 65535\) runs past the type section/);
    }
    const func = new BtfBuilder();
    func.raw(0, (KIND.func << 24) | 0xffff, 0);
    expect(corruption(() => parseBtf(func.build())).message).toMatch(/linkage 65535/);
  });

  it('absurd array counts and members that do not fit', () => {
    const b = new BtfBuilder();
    const int = b.int('int', 4);
    const huge = b.array(int, int, 0xffffffff);
    const square = b.array(huge, int, 0xffffffff);
    const big = b.array(int, int, 1_000_000_000);
    b.composite('struct', 'holds_huge', 16, [['a', huge, 0]]);
    const types = parseBtf(b.build());
    expect(corruption(() => types.sizeOf(huge)).message).toMatch(
      /array type id 2 of 4294967295 elements is larger than 4 GiB/,
    );
    expect(corruption(() => types.sizeOf(square)).message).toMatch(/larger than 4 GiB/);
    expect(types.sizeOf(big)).toBe(4_000_000_000);
    expect(corruption(() => btfToIsf(types)).message).toMatch(/larger than 4 GiB/);

    const overrun = new BtfBuilder();
    const i32 = overrun.int('int', 4);
    overrun.composite('struct', 'short', 16, [['a', overrun.array(i32, i32, 1_000_000_000), 0]]);
    expect(corruption(() => parseAndConvert(overrun.build())).message).toMatch(/runs past the 16-byte struct/);

    const misaligned = new BtfBuilder();
    misaligned.composite('struct', 'odd', 8, [['a', misaligned.int('int', 4), 3]]);
    expect(corruption(() => parseAndConvert(misaligned.build())).message).toMatch(/not byte aligned/);

    const wideBitfield = new BtfBuilder();
    wideBitfield.composite('struct', 'wide', 8, [['a', wideBitfield.int('int', 4), 0, 40]]);
    expect(corruption(() => parseAndConvert(wideBitfield.build())).message).toMatch(/bitfield 0\+40 bits does not fit/);
  });

  it('unknown kinds, unused bits, names past the strings', () => {
    const unknown = new BtfBuilder();
    unknown.raw(0, 20 << 24, 0);
    expect(corruption(() => parseBtf(unknown.build())).message).toMatch(/unknown kind 20/);
    const zero = new BtfBuilder();
    zero.raw(0, 0, 0);
    expect(corruption(() => parseBtf(zero.build())).message).toMatch(/unknown kind 0/);
    const unused = new BtfBuilder();
    unused.raw(0, (KIND.ptr << 24) | (1 << 20), 0);
    expect(corruption(() => parseBtf(unused.build())).message).toMatch(/unused info bits/);
    const badName = new BtfBuilder();
    badName.raw(0x7fffffff, KIND.ptr << 24, 0);
    expect(corruption(() => parseBtf(badName.build())).message).toMatch(
      /name offset 2147483647 is past the 1-byte string section/,
    );
    const badInt = new BtfBuilder();
    badInt.raw(0, KIND.int << 24, 3, [32]);
    expect(corruption(() => parseBtf(badInt.build())).message).toMatch(/int type id 1 has size 3/);
  });

  it('anonymous members sharing a wide subtree cannot expand without bound', () => {
    // 1500 parents each embed the same anonymous struct of 1500 fields: 2.25 million copies from 3000 members.
    const b = new BtfBuilder();
    const int = b.int('int', 4);
    const wide = b.composite(
      'struct',
      '',
      6000,
      Array.from({ length: 1500 }, (_, i): Member => [`f${i}`, int, i * 32]),
    );
    for (let i = 0; i < 1500; i++) b.composite('struct', `parent${i}`, 6000, [['', wide, 0]]);
    const started = performance.now();
    expect(corruption(() => parseAndConvert(b.build())).message).toMatch(
      /anonymous members expand to more fields than the blob could describe/,
    );
    expect(performance.now() - started).toBeLessThan(5000);
  });
});

describe('carveVmlinuxBtf on synthetic physical memory', () => {
  const blob = (structs: number) => {
    const b = new BtfBuilder();
    const long = b.int('long unsigned int', 8);
    for (let i = 0; i < structs; i++) b.composite('struct', `s${i}`, 8, [['v', long, 0]]);
    return b.build();
  };

  it('takes the largest blob that parses: not a larger corrupt one, one cut by the end of memory, or a smaller one', () => {
    const memory = new Uint8Array(1 << 20);
    const small = blob(2);
    const best = blob(40);
    const corrupt = blob(80);
    corrupt[corrupt.length - 1] = 0x41; // string section no longer ends with NUL
    const cut = blob(120);
    memory.set(small, 0x1000);
    memory.set(corrupt, 0x3000);
    memory.set(best, 0x9000);
    memory.set(cut.subarray(0, 64), memory.length - 64);
    const carved = carveVmlinuxBtf(openImageSource(new BufferSource('synthetic.raw', memory)));
    expect(carved.physical).toBe(0x9000);
    expect(carved.bytes).toEqual(best);
    expect(carved.types.find('struct', 's39')).toBeDefined();
  });

  it('NO_PROFILE when no BTF survives', () => {
    const memory = new Uint8Array(1 << 16);
    memory.set(Uint8Array.from([0x9f, 0xeb, 0x01, 0x00, 0xff, 0xff]), 0x100);
    let caught: unknown;
    try {
      carveVmlinuxBtf(openImageSource(new BufferSource('empty.raw', memory)));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(VmscopeError);
    expect((caught as VmscopeError).code).toBe('NO_PROFILE');
    expect((caught as VmscopeError).file).toBe('empty.raw');
  });
});

/** Parse and convert must return or throw VmscopeError; anything else (TypeError, RangeError, a hang) fails. */
function survives(bytes: Uint8Array): 'ok' | 'rejected' {
  try {
    parseAndConvert(bytes);
    return 'ok';
  } catch (error) {
    if (error instanceof VmscopeError) return 'rejected';
    throw error;
  }
}

describe('fuzz', () => {
  it('random type sections behind a valid header', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.nat(),
            fc.integer({ min: 0, max: 0xffffffff }),
            fc.integer({ min: 1, max: 19 }).map((kind) => kind << 24),
          ),
          { maxLength: 120 },
        ),
        (words) => {
          const b = new BtfBuilder();
          for (let i = 0; i + 2 < words.length; i += 3) b.raw(words[i]! % 64, words[i + 1]!, words[i + 2]!);
          const started = performance.now();
          survives(b.build());
          expect(performance.now() - started).toBeLessThan(5000); // a hang guard, not a speed target
        },
      ),
      { numRuns: 2000 },
    );
  });

  describe('mutated copies of the real 6.1 vmlinux BTF', () => {
    let real: Uint8Array;
    let typeSectionEnd: number;
    beforeAll(() => {
      const image = openImage(fixturePath('linux61-clean', 'elf'));
      try {
        real = carveVmlinuxBtf(image).bytes;
      } finally {
        image.close();
      }
      typeSectionEnd = 24 + new DataView(real.buffer, real.byteOffset).getUint32(12, true);
    });

    it('byte flips and u32 overwrites in the header and type section return or throw VmscopeError, each case in bounded time', () => {
      const position = () =>
        fc.oneof(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 24, max: typeSectionEnd - 4 }));
      const word = fc.oneof(
        fc.constantFrom(0, 1, 0xffff, 0xffffffff, 0x0400ffff, 0x80000000, 0x13000000, 0x7fffffff),
        fc.integer({ min: 0, max: 0xffffffff }),
      );
      const outcomes = { ok: 0, rejected: 0 };
      fc.assert(
        fc.property(
          fc.array(fc.tuple(position(), fc.integer({ min: 1, max: 255 })), { maxLength: 3 }),
          fc.array(fc.tuple(position(), word), { maxLength: 2 }),
          (flips, overwrites) => {
            const bytes = real.slice();
            const view = new DataView(bytes.buffer);
            for (const [at, mask] of flips) bytes[at]! ^= mask;
            for (const [at, value] of overwrites) view.setUint32(at, value, true);
            const started = performance.now();
            outcomes[survives(bytes)] += 1;
            expect(performance.now() - started).toBeLessThan(3000);
          },
        ),
        { numRuns: 60 },
      );
      // Sparse mutations let about one case in six parse and convert completely, so the converter is fuzzed too.
      expect(outcomes.ok).toBeGreaterThan(0);
      expect(outcomes.rejected).toBeGreaterThan(0);
    });
  });
});
