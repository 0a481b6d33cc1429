import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference } from '../../src/rules/reference.js';
import { RuleScanner } from '../../src/rules/scanner.js';

const corpusDir = join(dirname(fileURLToPath(import.meta.url)), 'corpus');
const rules = compileSource(readFileSync(join(corpusDir, 'corpus.yar'), 'utf8'), 'corpus.yar');
const chainRules = new Set(['hex_chained_bounded_jump', 'hex_chained_three_parts', 'hex_open_jump']);

/** `yara -s -L corpus.yar chains.bin` (yara 4.2.3): offset and length of each chained match; golden files keep no lengths. */
const YARA_LENGTHS = [
  'hex_chained_bounded_jump 0xbb8 264',
  'hex_chained_three_parts 0x1388 512',
  'hex_chained_three_parts 0x1770 512',
  'hex_chained_three_parts 0x1d4c 512',
  'hex_open_jump 0xa 492',
  'hex_open_jump 0x64 402',
  'hex_open_jump 0x389 512',
  'hex_open_jump 0x7d0 512',
];

describe('chained hex strings (jumps over 200 bytes)', () => {
  const data = new Uint8Array(readFileSync(join(corpusDir, 'chains.bin')));
  const lengths = (matches: ReturnType<typeof matchReference>) =>
    matches
      .filter((match) => chainRules.has(match.rule))
      .flatMap((match) => match.strings.map((hit) => `${hit.rule} 0x${hit.offset.toString(16)} ${hit.length}`));

  it('are cut into parts at their long jumps only', () => {
    const strings = rules.rules.filter((rule) => chainRules.has(rule.name)).map((rule) => rule.strings[0]!);
    expect(strings.map((string) => [string.variants.length, string.chainGaps])).toEqual([
      [2, [{ min: 250, max: 300 }]],
      [
        3,
        [
          { min: 201, max: Infinity },
          { min: 300, max: Infinity },
        ],
      ],
      [2, [{ min: 8, max: Infinity }]],
    ]);
  });

  it('match where yara does, with the lengths yara reports, in the reference and in the scanner', () => {
    expect(lengths(matchReference(rules, data))).toEqual(YARA_LENGTHS);
    const scanner = RuleScanner.create(rules, { windowBytes: 64 * 1024 });
    expect(lengths(scanner.evaluate(scanner.scanBuffer(data).hits, data.length))).toEqual(YARA_LENGTHS);
  });

  it('join parts found in different chunks, far beyond what one window holds', () => {
    const spread = new Uint8Array(400_000).fill(0x2e);
    spread.set([0x13, 0x37], 1000);
    spread.set([0x73, 0x31], 350_000);
    const scanner = RuleScanner.create(rules, { windowBytes: 64 * 1024 });
    const found = scanner
      .evaluate(scanner.scanBuffer(spread).hits, spread.length)
      .find((match) => match.rule === 'hex_open_jump');
    expect(found?.strings).toEqual([{ rule: 'hex_open_jump', string: '$a', offset: 1000, length: 512 }]);
  });
});
