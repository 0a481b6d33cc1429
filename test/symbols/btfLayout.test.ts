import { beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { discoverLinuxKernel } from '../../src/os/linux/discovery.js';
import {
  btfIsfNames,
  btfToIsf,
  carveVmlinuxBtf,
  parseBtf,
  type BtfIsfNames,
  type BtfTypes,
} from '../../src/symbols/btf.js';
import type { IsfField, IsfTypeDescriptor, IsfTypes, IsfUserType } from '../../src/symbols/isf.js';
import { fixturePath } from '../support/fixtures.js';

/** sizeof a field's type as the ISF alone describes it. */
function isfSize(isf: IsfTypes, type: IsfTypeDescriptor): number {
  switch (type.kind) {
    case 'base':
      return isf.base_types[type.name]!.size;
    case 'pointer':
      return 8;
    case 'array':
      return type.count * isfSize(isf, type.subtype);
    case 'struct':
    case 'union':
    case 'class':
      return isf.user_types[type.name]!.size;
    case 'enum':
      return isf.enums[type.name]!.size;
    case 'bitfield':
      return isfSize(isf, type.type);
    case 'function':
      throw new Error('a field cannot be a function');
  }
}

const LIST_HEAD: IsfTypeDescriptor = { kind: 'struct', name: 'list_head' };
const pointerTo = (name: string): IsfTypeDescriptor => ({ kind: 'pointer', subtype: { kind: 'struct', name } });

describe.each(['linux61-clean', 'linux612-clean'])('layouts from the BTF of %s', (name) => {
  let btf: Uint8Array;
  let types: BtfTypes;
  let names: BtfIsfNames;
  let isf: IsfTypes;
  let vmcoreinfo: ReadonlyMap<string, string>;

  beforeAll(() => {
    const image = openImage(fixturePath(name, 'elf'));
    try {
      vmcoreinfo = discoverLinuxKernel(image).vmcoreinfo!.entries;
      ({ bytes: btf, types } = carveVmlinuxBtf(image));
    } finally {
      image.close();
    }
    names = btfIsfNames(types);
    isf = btfToIsf(types);
  });

  /** The ISF user type a C struct, union or typedef name stands for (typedefs resolved through BTF). */
  function userTypeNamed(cName: string): { isfName: string; btfId: number } | undefined {
    const typedef = types.find('typedef', cName);
    const id =
      types.find('struct', cName) ??
      types.find('union', cName) ??
      (typedef === undefined ? undefined : types.resolve(typedef));
    const isfName = id === undefined ? undefined : names.userTypes.get(id);
    return isfName === undefined ? undefined : { isfName, btfId: id! };
  }

  const field = (type: string, fieldName: string): IsfField => {
    const found = isf.user_types[type]?.fields[fieldName];
    if (!found) throw new Error(`${type}.${fieldName} is missing`);
    return found;
  };

  it('struct list_head, straight from the parsed BTF: 16 bytes, next at 0 and prev at 8, pointers to list_head', () => {
    const id = types.find('struct', 'list_head')!;
    expect(types.sizeOf(id)).toBe(16);
    const fields = types.fields(id);
    expect(fields.map((f) => [f.name, f.bitOffset, f.bitSize])).toEqual([
      ['next', 0, 0],
      ['prev', 64, 0],
    ]);
    for (const f of fields) {
      const pointer = types.type(f.resolvedType);
      expect(pointer.kind).toBe('ptr');
      expect(types.resolve((pointer as { type: number }).type)).toBe(id);
    }
    expect(isf.user_types.list_head).toEqual({
      kind: 'struct',
      size: 16,
      fields: { next: { offset: 0, type: pointerTo('list_head') }, prev: { offset: 8, type: pointerTo('list_head') } },
    });
  });

  it("agrees with every OFFSET, SIZE and LENGTH the kernel's own VMCOREINFO states", () => {
    const mismatches: string[] = [];
    const missing: string[] = [];
    const checked = { offset: 0, size: 0, length: 0, throughAnonymousMembers: 0 };
    for (const [key, value] of vmcoreinfo) {
      const match = /^(OFFSET|SIZE|LENGTH)\((\w+)(?:\.(\w+))?\)$/.exec(key);
      if (!match) continue;
      const [, what, cName, fieldName] = match as unknown as [
        string,
        'OFFSET' | 'SIZE' | 'LENGTH',
        string,
        string | undefined,
      ];
      // LENGTH(mem_section) and the like count array symbols, not struct fields.
      if (what === 'LENGTH' && fieldName === undefined) continue;
      const target = userTypeNamed(cName);
      if (!target) {
        missing.push(key);
        continue;
      }
      const userType: IsfUserType = isf.user_types[target.isfName]!;
      const expected = Number(value);
      if (what === 'SIZE') {
        checked.size += 1;
        if (userType.size !== expected) mismatches.push(`${key}=${value}, ISF says ${userType.size}`);
        continue;
      }
      const found = userType.fields[fieldName!];
      const actual = what === 'OFFSET' ? found?.offset : found?.type.kind === 'array' ? found.type.count : undefined;
      if (what === 'OFFSET') checked.offset += 1;
      else checked.length += 1;
      if (actual !== expected) mismatches.push(`${key}=${value}, ISF says ${JSON.stringify(found)}`);
      // Fields the ISF has only because anonymous members were flattened into their parent.
      if (!types.fields(target.btfId).some((member) => member.name === fieldName)) checked.throughAnonymousMembers += 1;
    }
    expect(mismatches).toEqual([]);
    expect(missing).toEqual([]);
    // The counts are this kernel's VMCOREINFO; a change means entries were skipped or misread.
    expect(checked).toEqual(
      name === 'linux61-clean'
        ? { offset: 49, size: 16, length: 2, throughAnonymousMembers: 7 }
        : { offset: 45, size: 16, length: 2, throughAnonymousMembers: 5 },
    );
  });

  it('task_struct: tasks, pid, tgid, comm, mm, real_parent, children, sibling, cred with the expected types', () => {
    const taskStruct = isf.user_types.task_struct!;
    const expectations: Record<string, IsfTypeDescriptor> = {
      tasks: LIST_HEAD,
      children: LIST_HEAD,
      sibling: LIST_HEAD,
      pid: { kind: 'base', name: 'int' },
      tgid: { kind: 'base', name: 'int' },
      comm: { kind: 'array', count: 16, subtype: { kind: 'base', name: 'char' } },
      mm: pointerTo('mm_struct'),
      real_parent: pointerTo('task_struct'),
      cred: { kind: 'pointer', subtype: { kind: 'struct', name: 'cred' } },
    };
    for (const [fieldName, type] of Object.entries(expectations)) {
      const found = field('task_struct', fieldName);
      expect(found.type, fieldName).toEqual(type);
      expect(found.offset + isfSize(isf, found.type), fieldName).toBeLessThanOrEqual(taskStruct.size);
    }
    expect(isf.base_types.int).toEqual({ kind: 'int', size: 4, signed: true, endian: 'little' });
    expect(isf.base_types.char).toMatchObject({ kind: 'char', size: 1 });
    // Declared in this order in include/linux/sched.h.
    expect(field('task_struct', 'pid').offset + 4).toBe(field('task_struct', 'tgid').offset);
    expect(field('task_struct', 'children').offset + 16).toBe(field('task_struct', 'sibling').offset);
    expect(field('task_struct', 'real_parent').offset).toBeLessThan(field('task_struct', 'children').offset);
  });

  it('mm_struct: pgd, arg_start, arg_end, env_start, env_end, found through its anonymous struct', () => {
    const mm = isf.user_types.mm_struct!;
    expect(field('mm_struct', 'pgd').type).toEqual(pointerTo('pgd_t'));
    expect(isf.user_types.pgd_t!.size).toBe(8);
    const offsets = ['arg_start', 'arg_end', 'env_start', 'env_end'].map((fieldName) => {
      const found = field('mm_struct', fieldName);
      expect(found.type).toEqual({ kind: 'base', name: 'long unsigned int' });
      expect(found.offset + 8).toBeLessThanOrEqual(mm.size);
      return found.offset;
    });
    // `unsigned long arg_start, arg_end, env_start, env_end;`: four consecutive words.
    expect(offsets.map((offset) => offset - offsets[0]!)).toEqual([0, 8, 16, 24]);
    // They live in mm_struct's anonymous (randomizable) struct; the ISF keeps that member too.
    const anonymous = Object.values(mm.fields).filter((f) => f.anonymous);
    expect(anonymous.length).toBeGreaterThan(0);
    const holder = anonymous.find(
      (f) => f.type.kind === 'struct' && isf.user_types[f.type.name]!.fields.arg_start !== undefined,
    )!;
    expect(holder).toBeDefined();
    expect(holder.offset + isf.user_types[(holder.type as { name: string }).name]!.fields.arg_start!.offset).toBe(
      offsets[0],
    );
    expect(types.fields(types.find('struct', 'mm_struct')!).some((member) => member.name === 'arg_start')).toBe(false);
  });

  it('module: list, name, state, and core_layout (6.1) or mem[] (6.12)', () => {
    const module = isf.user_types.module!;
    expect(field('module', 'list').type).toEqual(LIST_HEAD);
    // MODULE_NAME_LEN is 64 - sizeof(unsigned long).
    expect(field('module', 'name').type).toEqual({ kind: 'array', count: 56, subtype: { kind: 'base', name: 'char' } });
    expect(field('module', 'state').type).toEqual({ kind: 'enum', name: 'module_state' });
    expect(isf.enums.module_state!.constants).toMatchObject({
      MODULE_STATE_LIVE: 0,
      MODULE_STATE_COMING: 1,
      MODULE_STATE_GOING: 2,
      MODULE_STATE_UNFORMED: 3,
    });
    for (const fieldName of ['list', 'name', 'state']) {
      const found = field('module', fieldName);
      expect(found.offset + isfSize(isf, found.type)).toBeLessThanOrEqual(module.size);
    }
    if (name === 'linux61-clean') {
      expect(field('module', 'core_layout').type).toEqual({ kind: 'struct', name: 'module_layout' });
      expect(module.fields.mem).toBeUndefined();
    } else {
      const mem = field('module', 'mem');
      // One entry per enum mod_mem_type value below MOD_MEM_NUM_TYPES.
      expect(mem.type).toEqual({
        kind: 'array',
        count: isf.enums.mod_mem_type!.constants.MOD_MEM_NUM_TYPES,
        subtype: { kind: 'struct', name: 'module_memory' },
      });
      expect(mem.offset + isfSize(isf, mem.type)).toBeLessThanOrEqual(module.size);
      expect(module.fields.core_layout).toBeUndefined();
    }
  });

  it("a C name the kernel defines twice belongs to the definition in use: dmaengine's struct dma_chan, printk's struct console", () => {
    expect(types.findAll('struct', 'dma_chan').length).toBe(2);
    expect(Object.keys(isf.user_types.dma_chan!.fields)).toEqual(
      expect.arrayContaining(['device', 'cookie', 'chan_id', 'client_count']),
    );
    expect(Object.keys(isf.user_types.console!.fields)).toEqual(
      expect.arrayContaining(['name', 'write', 'device', 'flags', 'index']),
    );
  });

  it('the ISF is self-consistent: every field lies inside its type and every reference resolves', () => {
    // Names the kernel only ever declares (`struct foo;`), never defines.
    const fwdOnly = new Set(
      types.types.flatMap((type) =>
        type.kind === 'fwd' && types.find(type.union ? 'union' : 'struct', type.name) === undefined ? [type.name] : [],
      ),
    );
    const problems: string[] = [];
    const resolves = (type: IsfTypeDescriptor, where: string, behindPointer: boolean): void => {
      switch (type.kind) {
        case 'base':
          if (!isf.base_types[type.name]) problems.push(`${where}: base ${type.name}`);
          break;
        case 'pointer':
          resolves(type.subtype, where, true);
          break;
        case 'array':
          resolves(type.subtype, where, behindPointer);
          break;
        case 'struct':
        case 'union':
        case 'class':
          // Only a pointer may name a struct the kernel declares but never defines.
          if (!isf.user_types[type.name] && !(behindPointer && fwdOnly.has(type.name)))
            problems.push(`${where}: ${type.kind} ${type.name}`);
          break;
        case 'enum':
          if (!isf.enums[type.name]) problems.push(`${where}: enum ${type.name}`);
          break;
        case 'bitfield':
          if (type.bit_position + type.bit_length > isfSize(isf, type.type) * 8)
            problems.push(`${where}: bitfield overflows its storage`);
          resolves(type.type, where, behindPointer);
          break;
        case 'function':
          if (!behindPointer) problems.push(`${where}: a function as data`);
          break;
      }
    };
    let fields = 0;
    for (const [typeName, userType] of Object.entries(isf.user_types)) {
      for (const [fieldName, f] of Object.entries(userType.fields)) {
        fields += 1;
        resolves(f.type, `${typeName}.${fieldName}`, false);
        if (f.offset + isfSize(isf, f.type) > userType.size)
          problems.push(`${typeName}.${fieldName} ends past ${userType.size}`);
      }
    }
    for (const [enumName, enumeration] of Object.entries(isf.enums)) {
      const base = isf.base_types[enumeration.base];
      if (!base || base.kind !== 'int' || base.size !== enumeration.size)
        problems.push(`enum ${enumName}: base ${enumeration.base}`);
    }
    expect(problems).toEqual([]);
    expect(fields).toBeGreaterThan(50_000);
    expect(isf.base_types.pointer).toEqual({ kind: 'int', size: 8, signed: false, endian: 'little' });
    expect(isf.base_types.void).toEqual({ kind: 'void', size: 0, signed: false, endian: 'little' });
  });

  it('converts deterministically: a fresh parse of the same bytes gives the same ISF text', () => {
    const again = btfToIsf(parseBtf(btf.slice()));
    const text = (value: IsfTypes) =>
      JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    expect(text(again)).toBe(text(isf));
  });
});
