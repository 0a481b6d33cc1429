import { beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { exportIsf } from '../../src/analyses/isfExport.js';
import { parseIsf, type IsfDocument, type IsfTypeDescriptor } from '../../src/symbols/isf.js';
import { fixturePath } from '../support/fixtures.js';

/**
 * Volatility 3 validates an ISF against its schema (volatility3/schemas/schema-6.x.json), whose
 * objects all forbid extra keys. These are that schema's rules, restated: an exported ISF that
 * breaks one would be refused by Volatility.
 */
const allowed = {
  document: ['metadata', 'base_types', 'user_types', 'enums', 'symbols'],
  metadata: ['format', 'producer', 'linux'],
  linux: ['symbols', 'types'],
  metadataItem: ['kind', 'name', 'hash_type', 'hash_value'],
  baseType: ['size', 'signed', 'kind', 'endian'],
  userType: ['kind', 'size', 'fields'],
  field: ['type', 'offset', 'anonymous'],
  enumeration: ['size', 'base', 'constants'],
  symbol: ['address', 'linkage_name', 'type', 'constant_data'],
};

function keysWithin(value: object, keys: string[], where: string, problems: string[]): void {
  for (const key of Object.keys(value)) if (!keys.includes(key)) problems.push(`${where}: unexpected key "${key}"`);
}

/** Behind a pointer a struct may be opaque (BTF only forward-declares types that modules define). */
function checkDescriptor(
  type: IsfTypeDescriptor,
  where: string,
  document: IsfDocument,
  problems: string[],
  behindPointer = false,
): void {
  switch (type.kind) {
    case 'base':
      keysWithin(type, ['kind', 'name'], where, problems);
      if (!(type.name in document.base_types)) problems.push(`${where}: unknown base type ${type.name}`);
      break;
    case 'pointer':
      keysWithin(type, ['kind', 'subtype', 'base'], where, problems);
      checkDescriptor(type.subtype, `${where}*`, document, problems, true);
      break;
    case 'array':
      keysWithin(type, ['kind', 'subtype', 'count'], where, problems);
      if (!Number.isInteger(type.count) || type.count < 0) problems.push(`${where}: bad array count`);
      checkDescriptor(type.subtype, `${where}[]`, document, problems, behindPointer);
      break;
    case 'struct':
    case 'union':
    case 'class':
      keysWithin(type, ['kind', 'name'], where, problems);
      if (!behindPointer && !(type.name in document.user_types))
        problems.push(`${where}: unknown ${type.kind} ${type.name}`);
      break;
    case 'enum':
      keysWithin(type, ['kind', 'name'], where, problems);
      if (!(type.name in document.enums)) problems.push(`${where}: unknown enum ${type.name}`);
      break;
    case 'function':
      keysWithin(type, ['kind'], where, problems);
      break;
    case 'bitfield':
      keysWithin(type, ['kind', 'bit_position', 'bit_length', 'type'], where, problems);
      if (type.type.kind !== 'base' && type.type.kind !== 'enum')
        problems.push(`${where}: bitfield of ${type.type.kind}`);
      checkDescriptor(type.type, `${where}:bits`, document, problems);
      break;
    default:
      problems.push(`${where}: unknown type kind ${(type as { kind: string }).kind}`);
  }
}

describe.each(['linux61-clean', 'linux612-clean'])('ISF exported from %s', (name) => {
  let document: IsfDocument;
  beforeAll(async () => {
    const context = new DumpContext(fixturePath(name, 'elf'), { cacheDir: false });
    document = parseIsf(await exportIsf(context), 'exported.json');
    context.close();
  });

  it('follows the Volatility ISF 6.x schema', () => {
    const problems: string[] = [];
    keysWithin(document, allowed.document, 'document', problems);
    keysWithin(document.metadata, allowed.metadata, 'metadata', problems);
    expect(document.metadata.format).toMatch(/^6\.\d+\.\d+$/);
    expect(document.metadata.producer?.version).toMatch(/^\d+\.\d+\.\d+$/);
    keysWithin(document.metadata.linux!, allowed.linux, 'metadata.linux', problems);
    for (const item of [...(document.metadata.linux!.symbols ?? []), ...(document.metadata.linux!.types ?? [])]) {
      keysWithin(item, allowed.metadataItem, 'metadata item', problems);
      if (!/^(dwarf|symtab|system-map)$/.test(item.kind)) problems.push(`metadata item kind ${item.kind}`);
    }
    for (const [baseName, base] of Object.entries(document.base_types)) {
      keysWithin(base, allowed.baseType, `base_types.${baseName}`, problems);
      if (!/^(void|int|float|char|bool)$/.test(base.kind)) problems.push(`base_types.${baseName}: kind ${base.kind}`);
    }
    for (const [typeName, type] of Object.entries(document.user_types)) {
      keysWithin(type, allowed.userType, `user_types.${typeName}`, problems);
      for (const [fieldName, field] of Object.entries(type.fields)) {
        keysWithin(field, allowed.field, `${typeName}.${fieldName}`, problems);
        checkDescriptor(field.type, `${typeName}.${fieldName}`, document, problems);
      }
    }
    for (const [enumName, enumeration] of Object.entries(document.enums))
      keysWithin(enumeration, allowed.enumeration, `enums.${enumName}`, problems);
    for (const [symbolName, symbol] of Object.entries(document.symbols)) {
      keysWithin(symbol, allowed.symbol, `symbols.${symbolName}`, problems);
      if (symbol.type) checkDescriptor(symbol.type, `symbols.${symbolName}`, document, problems);
    }
    expect(problems.slice(0, 20)).toEqual([]);
  });

  it('has what Volatility needs to pick and place it: linux_banner bytes and link-time kernel symbols', () => {
    expect(Buffer.from(document.symbols.linux_banner!.constant_data!, 'base64').toString('latin1')).toMatch(
      /^Linux version /,
    );
    // Link-time (unrandomized) addresses: _text sits at __START_KERNEL (0xffffffff81000000).
    expect(BigInt(document.symbols._text!.address)).toBe(0xffffffff81000000n);
    for (const needed of ['init_task', 'init_top_pgt', 'sys_call_table', 'modules']) {
      expect(document.symbols[needed], needed).toBeDefined();
    }
    for (const struct of ['task_struct', 'mm_struct', 'module', 'list_head', 'cred'])
      expect(document.user_types[struct], struct).toBeDefined();
  });
});
