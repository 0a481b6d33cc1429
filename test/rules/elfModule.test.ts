import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { communityInputs, elfHeader } from '../../scripts/ruleInputs.mjs';
import { compileSource } from '../../src/rules/compile.js';
import { MODULES } from '../../src/rules/modules/index.js';
import type { ModuleData } from '../../src/rules/modules/types.js';
import { matchReference } from '../../src/rules/reference.js';
import { bufferUnit } from '../../src/rules/unit.js';

/**
 * The elf module against yara's own: every field vmscope reads from an ELF file becomes a rule
 * `field == value` (or `not defined field`), and yara must match exactly the same rules on the
 * same file. Run on executables every Linux machine has (the node binary, /bin/ls) and on the
 * crafted headers of the golden inputs; needs the yara CLI (apt-get install yara).
 */
const yaraMissing = spawnSync('yara', ['--version']).status !== 0;
if (yaraMissing) console.warn('elf module test skipped: the yara CLI is not installed (apt-get install yara)');
const work = mkdtempSync(join(tmpdir(), 'vmscope-elf-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const FIELDS = [
  'type',
  'machine',
  'entry_point',
  'number_of_sections',
  'sh_offset',
  'sh_entry_size',
  'number_of_segments',
  'ph_offset',
  'ph_entry_size',
  'dynamic_section_entries',
  'symtab_entries',
  'dynsym_entries',
];
const ARRAYS: Record<string, string[]> = {
  sections: ['type', 'flags', 'address', 'size', 'offset', 'name'],
  segments: ['type', 'flags', 'offset', 'virtual_address', 'physical_address', 'file_size', 'memory_size', 'alignment'],
  dynamic: ['type', 'val'],
  dynsym: ['name', 'value', 'size', 'type', 'bind', 'shndx'],
  symtab: ['name', 'value', 'size', 'type', 'bind', 'shndx'],
};

function expressions(): string[] {
  const indexes = [0, 1, 2, 5, 9, 1000];
  return [
    ...FIELDS.map((field) => `elf.${field}`),
    ...Object.entries(ARRAYS).flatMap(([array, fields]) =>
      indexes.flatMap((i) => fields.map((field) => `elf.${array}[${i}].${field}`)),
    ),
  ];
}

function valueOf(data: ModuleData, expression: string): ModuleData {
  return expression
    .slice('elf.'.length)
    .split(/[.[\]]/)
    .filter(Boolean)
    .reduce<ModuleData>(
      (value, step) =>
        value !== null && typeof value === 'object' ? (value as Record<string, ModuleData>)[step] : undefined,
      data,
    );
}

describe.skipIf(yaraMissing)('the elf module reads what yara reads', () => {
  const files: Array<[string, () => Buffer]> = [
    ['the node binary', () => readFileSync(process.execPath)],
    ['/bin/ls', () => readFileSync('/bin/ls')],
    ['a crafted i386 header', () => elfHeader({ is64: false })],
    ['the golden headers file', () => communityInputs()['headers-elf.bin']!],
  ];
  it.each(files)('%s', (_, load) => {
    const bytes = load();
    const data = MODULES.get('elf')!.load(bufferUnit(bytes));
    const rules = expressions().map((expression, i) => {
      const value = valueOf(data, expression);
      if (value === undefined) return `rule r${i} { condition: not defined ${expression} }`;
      return typeof value === 'string'
        ? `rule r${i} { condition: ${expression} == "${value.replace(/[\\"]/g, (c) => `\\${c}`)}" }`
        : `rule r${i} { condition: ${expression} == ${value} }`;
    });
    const source = `import "elf"\n${rules.join('\n')}\n`;
    const [rulesFile, input] = [join(work, 'elf.yar'), join(work, 'input')];
    writeFileSync(rulesFile, source);
    writeFileSync(input, bytes);
    const yara = spawnSync('yara', [rulesFile, input], { encoding: 'latin1' });
    expect(yara.status, yara.stderr).toBe(0);
    const theirs = yara.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ')[0]);
    const ours = matchReference(compileSource(source), new Uint8Array(bytes)).map((match) => match.rule);
    expect(ours.sort()).toEqual(theirs.sort());
    expect(ours).toHaveLength(rules.length);
  });
});
