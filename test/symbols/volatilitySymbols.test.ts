import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { exportIsf } from '../../src/analyses/isfExport.js';
import { btfIsfConversion, carveVmlinuxBtf, parseBtf } from '../../src/symbols/btf.js';
import {
  parseIsf,
  readIsfFile,
  writeIsfFile,
  type IsfDocument,
  type IsfTypeDescriptor,
} from '../../src/symbols/isf.js';
import { Profile } from '../../src/symbols/profile.js';
import { codeUseEvidence } from '../../src/symbols/codeUseTypes.js';
import { typeDataSymbols } from '../../src/symbols/symbolTypes.js';
import { VmscopeError } from '../../src/util/errors.js';
import volatility from '../../src/symbols/volatilitySymbols.json' with { type: 'json' };
import { fixturePath, truth } from '../support/fixtures.js';
import { BtfBuilder } from './btfBuilder.js';

interface ListedSymbol {
  symbol: string;
  expects: string;
  use: 'object' | 'address';
  sources: string[];
  until?: string;
  optional?: string;
}
const listed = volatility.symbols as ListedSymbol[];

const work = mkdtempSync(join(tmpdir(), 'vmscope-volsyms-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Why a descriptor does not name a type the document holds (undefined when it does), following pointers and arrays. */
function missingType(type: IsfTypeDescriptor, document: IsfDocument): string | undefined {
  switch (type.kind) {
    case 'base':
      return type.name in document.base_types ? undefined : `base type ${type.name}`;
    case 'struct':
    case 'union':
    case 'class':
      return document.user_types[type.name]?.kind === type.kind ? undefined : `${type.kind} ${type.name}`;
    case 'enum':
      return type.name in document.enums ? undefined : `enum ${type.name}`;
    case 'pointer':
    case 'array':
      return missingType(type.subtype, document);
    case 'function':
      return undefined;
    case 'bitfield':
      return 'a bitfield as a symbol type';
  }
}

describe('the committed list of Volatility 3 symbol lookups', () => {
  it('names, for every symbol, the type Volatility reads and the Volatility source lines it came from', () => {
    expect(listed.length).toBeGreaterThan(30);
    for (const entry of listed) {
      expect(entry.symbol, JSON.stringify(entry)).toMatch(/^\w+$/);
      expect(entry.expects.length, entry.symbol).toBeGreaterThan(0);
      expect(['object', 'address'], entry.symbol).toContain(entry.use);
      expect(entry.sources.length, entry.symbol).toBeGreaterThan(0);
      for (const source of entry.sources)
        expect(source, entry.symbol).toMatch(/^volatility3\/framework\/\S+\.py(:\d+|@[0-9a-f]{40}: .+)$/);
    }
    for (const issueNamed of [
      'init_task',
      'modules',
      'init_pid_ns',
      'sys_call_table',
      'ia32_sys_call_table',
      'idt_table',
      'mod_tree',
      'module_kset',
      'net_namespace_list',
      'tty_drivers',
      'keyboard_notifier_list',
      'prb',
      'log_buf',
      'prog_idr',
      'nf_hooks',
    ]) {
      expect(listed.map((entry) => entry.symbol)).toContain(issueNamed);
    }
  });
});

describe.each(['linux61-clean', 'linux612-clean'])('symbol types in the ISF exported from %s', (name) => {
  let document: IsfDocument;
  beforeAll(async () => {
    const context = new DumpContext(fixturePath(name, 'elf'), { cacheDir: false });
    document = parseIsf(await exportIsf(context), 'exported.json');
    context.close();
  });

  it('gives every listed symbol the kernel has a type that user_types/base_types/enums hold; the kernel has every listed symbol of its era', () => {
    const problems: string[] = [];
    for (const entry of listed) {
      const symbol = document.symbols[entry.symbol];
      if (symbol === undefined) {
        if (entry.until === undefined && entry.optional === undefined) problems.push(`${entry.symbol}: not in the ISF`);
        continue;
      }
      if (symbol.type === undefined) problems.push(`${entry.symbol}: no type (Volatility expects ${entry.expects})`);
      else {
        const missing = missingType(symbol.type, document);
        if (missing) problems.push(`${entry.symbol}: its type names ${missing}, which the ISF lacks`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('reads types as Volatility does: init_task a task_struct, modules a list_head, prb and log_buf pointers', () => {
    expect(document.symbols.init_task!.type).toEqual({ kind: 'struct', name: 'task_struct' });
    expect(document.symbols.modules!.type).toEqual({ kind: 'struct', name: 'list_head' });
    expect(document.symbols.net_namespace_list!.type).toEqual({ kind: 'struct', name: 'list_head' });
    expect(document.symbols.prb!.type).toEqual({
      kind: 'pointer',
      subtype: { kind: 'struct', name: 'printk_ringbuffer' },
    });
    expect(document.symbols.log_buf!.type).toEqual({ kind: 'pointer', subtype: { kind: 'base', name: 'char' } });
  });

  it('sizes sys_call_table from its kallsyms extent to exactly the entries the guest read', () => {
    const type = document.symbols.sys_call_table!.type!;
    expect(type.kind).toBe('array');
    if (type.kind !== 'array') return;
    expect(type.subtype).toEqual({ kind: 'pointer', subtype: { kind: 'function' } });
    expect(type.count).toBe((truth(name).sys_call_table as { entries: unknown[] }).entries.length);
    const idt = document.symbols.idt_table!.type!;
    expect(idt.kind === 'array' && idt.count).toBe(256);
  });

  it('names its sources truthfully: kallsyms from memory, the BTF the guest exposed (by its sha256), where each symbol type came from', () => {
    const { symbols, types } = document.metadata.linux!;
    expect(symbols!.map((item) => item.name)).toEqual(['kallsyms from memory (located by VMCOREINFO)']);
    const btf = types!.find((item) => item.hash_value !== undefined)!;
    expect(btf.hash_value).toBe(truth(name).kernel.btf.sha256);
    expect(btf.name).toContain(`${truth(name).kernel.btf.size} bytes`);
    const declared = types!.find(
      (item) => item.name!.startsWith('symbol types from kernel declarations') && item.name!.includes('init_task'),
    );
    expect(declared?.name?.split(': ')[1]?.split(' ')).toContain('modules');
    expect(types!.some((item) => /BTF DATASEC variables.*: \d+ variables$/.test(item.name!))).toBe(true);
    // A per-CPU variable typed from BTF: runqueues is a struct rq.
    expect(document.symbols.runqueues!.type).toEqual({ kind: 'struct', name: 'rq' });
    // Variables typed from the code's use of them: DEFINE_MUTEX(module_mutex); the online-CPU mask, passed both as a cpumask and as its bits.
    expect(types!.find((item) => item.name!.startsWith('symbol types from kernel code'))?.name).toMatch(
      /: \d{4,} variables$/,
    );
    expect(document.symbols.module_mutex!.type).toEqual({ kind: 'struct', name: 'mutex' });
    expect(document.symbols.__cpu_online_mask!.type).toEqual({ kind: 'struct', name: 'cpumask' });
  });
});

describe('symbol types survive the profile cache and an ISF round trip', () => {
  it('a cached profile exports the same symbol types and the same sources (BTF hash included) as a fresh derivation', async () => {
    const cacheDir = join(work, 'cache');
    const exports: IsfDocument[] = [];
    for (const expectedOrigin of ['derived', 'cache']) {
      const context = new DumpContext(fixturePath('linux61-clean', 'elf'), { cacheDir });
      expect((await context.profile()).origin).toBe(expectedOrigin);
      exports.push(parseIsf(await exportIsf(context), 'exported.json'));
      context.close();
    }
    const [fresh, cached] = exports as [IsfDocument, IsfDocument];
    expect(cached.metadata.linux).toEqual(fresh.metadata.linux);
    expect(cached.metadata.linux!.types![0]!.hash_value).toBe(truth('linux61-clean').kernel.btf.sha256);
    expect(cached.symbols).toEqual(fresh.symbols);
  });

  it('an ISF read back keeps its data symbols typed, and says where from', async () => {
    const context = new DumpContext(fixturePath('linux61-clean', 'elf'), { cacheDir: false });
    const document = parseIsf(await exportIsf(context), 'exported.json');
    const reloaded = Profile.fromIsf(document, context.kernel.kaslrSlide, 'isf', 'exported.json');
    context.close();
    expect(reloaded.symbolType('init_task')).toEqual({ type: { kind: 'struct', name: 'task_struct' }, source: 'isf' });
    expect(reloaded.toIsf('0.0.0').symbols.init_task!.type).toEqual({ kind: 'struct', name: 'task_struct' });
  });
});

describe('a kernel declaration the kernel contradicts is refused, not trusted', () => {
  it('drops init_task when the next symbol leaves less room than a task_struct, and a per-CPU variable whose kallsyms value is not its DATASEC offset', () => {
    const context = new DumpContext(fixturePath('linux612-clean', 'elf'), { cacheDir: false });
    const btf = carveVmlinuxBtf(context.image);
    context.close();
    const { isf, describe: describeType } = btfIsfConversion(btf.types);
    const base = 0xffffffff81000000n;
    const symbols = [
      { name: 'init_task', address: base, type: 'D', absolute: false },
      { name: 'init_sighand', address: base + 64n, type: 'd', absolute: false },
      { name: 'modules', address: base + 0x1000n, type: 'D', absolute: false },
      { name: 'module_mutex', address: base + 0x1010n, type: 'D', absolute: false },
      { name: 'runqueues', address: 0x40n, type: 'A', absolute: true },
    ];
    const typing = typeDataSymbols({ btf: btf.types, isf, describe: describeType, symbols });
    expect(typing.types.has('init_task')).toBe(false);
    expect(typing.refused.find((why) => why.startsWith('init_task:'))).toMatch(/next symbol is 64 bytes after it/);
    expect(typing.types.get('modules')).toEqual({ type: { kind: 'struct', name: 'list_head' }, source: 'declared' });
    expect(typing.types.has('runqueues')).toBe(false);
  });
});

/** Kernel text that calls `target` with `&variable` in %rdi (`mov $variable, %rdi`) and again by `lea variable(%rip), %rdi`. */
function callingCode(textStart: bigint, target: bigint, variable: bigint): Uint8Array {
  const code = new Uint8Array(64).fill(0x90);
  const view = new DataView(code.buffer);
  code.set([0x48, 0xc7, 0xc7], 0);
  view.setInt32(3, Number(BigInt.asIntN(32, variable)), true);
  code[7] = 0xe8;
  view.setInt32(8, Number(target - (textStart + 12n)), true);
  code.set([0x48, 0x8d, 0x3d], 20);
  view.setInt32(23, Number(variable - (textStart + 27n)), true);
  code[27] = 0xe8;
  view.setInt32(28, Number(target - (textStart + 32n)), true);
  return code;
}

describe('types from how kernel code uses a variable', () => {
  let btf: ReturnType<typeof carveVmlinuxBtf>['types'];
  let conversion: ReturnType<typeof btfIsfConversion>;
  beforeAll(() => {
    const context = new DumpContext(fixturePath('linux612-clean', 'elf'), { cacheDir: false });
    btf = carveVmlinuxBtf(context.image).types;
    context.close();
    conversion = btfIsfConversion(btf);
  });

  const text = 0xffffffff81000000n;
  const data = 0xffffffff82000000n;
  const symbolsFor = (variable: string, room: bigint) => [
    { name: '_stext', address: text, type: 'T', absolute: false },
    { name: 'mutex_lock', address: text + 0x100n, type: 'T', absolute: false },
    { name: '_etext', address: text + 0x200n, type: 'T', absolute: false },
    { name: variable, address: data, type: 'D', absolute: false },
    { name: 'after', address: data + room, type: 'D', absolute: false },
  ];
  const reader = (code: Uint8Array) => (address: bigint, length: number) => {
    const bytes = new Uint8Array(length);
    if (address >= text && address < text + 0x200n) bytes.set(code.subarray(0, Math.min(code.length, length)));
    return bytes;
  };

  it('types a variable passed to mutex_lock(struct mutex *) as a struct mutex, from mov-imm32 and lea-rip forms alike', () => {
    const room = BigInt(conversion.isf.user_types.mutex!.size);
    const typing = typeDataSymbols({
      btf,
      isf: conversion.isf,
      describe: conversion.describe,
      symbols: symbolsFor('some_lock', room),
      read: reader(callingCode(text, text + 0x100n, data)),
    });
    expect(typing.types.get('some_lock')).toEqual({ type: { kind: 'struct', name: 'mutex' }, source: 'code-use' });
    const evidence = codeUseEvidence({
      btf,
      describe: conversion.describe,
      symbols: symbolsFor('some_lock', room),
      text: { start: text, end: text + 0x200n },
      read: reader(callingCode(text, text + 0x100n, data)),
    });
    expect([...evidence.get('some_lock')!.values()]).toEqual([{ type: { kind: 'struct', name: 'mutex' }, sites: 2 }]);
  });

  it('does not take the type of a first member for the object when the object is much bigger than it', () => {
    const typing = typeDataSymbols({
      btf,
      isf: conversion.isf,
      describe: conversion.describe,
      symbols: symbolsFor('lock_holder', 4096n),
      read: reader(callingCode(text, text + 0x100n, data)),
    });
    expect(typing.types.has('lock_holder')).toBe(false);
  });

  it("refuses a declaration the kernel's code contradicts", () => {
    const typing = typeDataSymbols({
      btf,
      isf: conversion.isf,
      describe: conversion.describe,
      symbols: symbolsFor('modules', 64n),
      read: reader(callingCode(text, text + 0x100n, data)),
    });
    expect(typing.types.has('modules')).toBe(false);
    expect(typing.refused).toEqual([
      "modules: declared struct list_head, but the kernel's code passes it as struct mutex",
    ]);
  });
});

describe('global variables in BTF (pahole global_var)', () => {
  it('types each variable of a .bss DATASEC that kallsyms places at the section base its neighbours agree on, and only those', () => {
    const b = new BtfBuilder();
    const long = b.int('long unsigned int', 8);
    const pair = b.composite('struct', 'pair', 16, [
      ['a', long, 0],
      ['b', long, 64],
    ]);
    const vars = (['first', 'second', 'third', 'moved'] as const).map((name) =>
      b.variable(name, name === 'first' ? pair : long, 1),
    );
    b.datasec('.bss', 0x100, [
      [vars[0]!, 0x10, 16],
      [vars[1]!, 0x40, 8],
      [vars[2]!, 0x48, 8],
      [vars[3]!, 0x50, 8],
    ]);
    const btf = parseBtf(b.build());
    const { isf, describe: describeType } = btfIsfConversion(btf);
    const base = 0xffffffff83000000n;
    const symbols = [
      { name: 'first', address: base + 0x10n, type: 'B', absolute: false },
      { name: 'second', address: base + 0x40n, type: 'b', absolute: false },
      { name: 'third', address: base + 0x48n, type: 'B', absolute: false },
      // Not where the DATASEC says: a different object of that name, left untyped.
      { name: 'moved', address: base + 0x1000n, type: 'B', absolute: false },
    ];
    const typing = typeDataSymbols({ btf, isf, describe: describeType, symbols });
    expect(typing.types.get('first')).toEqual({ type: { kind: 'struct', name: 'pair' }, source: 'btf-datasec' });
    expect(typing.types.get('third')).toEqual({
      type: { kind: 'base', name: 'long unsigned int' },
      source: 'btf-datasec',
    });
    expect(typing.types.has('moved')).toBe(false);
    // With only one variable placed, no base is agreed: nothing is typed from that section.
    expect(typeDataSymbols({ btf, isf, describe: describeType, symbols: symbols.slice(0, 1) }).types.size).toBe(0);
  });
});

describe('writing an ISF', () => {
  const text = JSON.stringify({
    metadata: { format: '6.2.0', linux: {} },
    base_types: {},
    user_types: {},
    enums: {},
    symbols: { a: { address: 1 } },
  });

  it('compresses to xz when the name ends in .xz, and reads back to the same document', async () => {
    const path = join(work, 'out.json.xz');
    writeIsfFile(path, text.padEnd(text.length + 4096, ' '));
    expect([...readFileSync(path).subarray(0, 6)]).toEqual([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
    expect((await readIsfFile(path)).symbols.a!.address).toBe(1);
    expect(readFileSync(path).length).toBeLessThan(text.length + 4096);
  });

  it('without the xz command, says how to get it instead of writing something else', () => {
    const path = join(work, 'none.json.xz');
    const savedPath = process.env.PATH;
    process.env.PATH = join(work, 'empty-bin');
    try {
      expect(() => writeIsfFile(path, text)).toThrowError(VmscopeError);
      expect(() => writeIsfFile(path, text)).toThrowError(/xz command is not installed.*-o FILE\.json/);
    } finally {
      process.env.PATH = savedPath;
    }
  });
});
