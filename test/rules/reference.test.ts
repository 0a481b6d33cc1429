import { describe, expect, it } from 'vitest';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference } from '../../src/rules/reference.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const matchingRules = (source: string, data: string, options = {}) =>
  matchReference(compileSource(source), bytes(data), options).map((match) => match.rule);

describe('reference matcher semantics', () => {
  it('reports nothing when a global rule fails, and never reports private rules', () => {
    const rules =
      'global rule gate { strings: $a = "ok" condition: $a }\nprivate rule hidden { condition: true }\nrule shown { condition: hidden }';
    expect(matchingRules(rules, 'ok')).toEqual(['gate', 'shown']);
    expect(matchingRules(rules, 'no')).toEqual([]);
  });

  it('treats undefined values as YARA does: false in and/or, propagated by not and comparisons', () => {
    const rule = (condition: string) => `rule r { strings: $a = "x" condition: $a and (${condition}) }`;
    expect(matchingRules(rule('@a[2] == 0 or true'), 'x')).toEqual(['r']);
    expect(matchingRules(rule('not (@a[2] == 0)'), 'x')).toEqual([]);
    expect(matchingRules(rule('not (1 \\ (#a - 1) == 1)'), 'x')).toEqual([]);
    expect(matchingRules(rule('-7 \\ 2 == -3 and -7 % 2 == -1 and 1 << 64 == 0'), 'x')).toEqual(['r']);
  });

  it('offsets conditions and reports by the base offset, and uses the given filesize', () => {
    const rules = compileSource('rule r { strings: $a = "x" condition: $a at 0x1001 and filesize == 0x10000 }');
    const [match] = matchReference(rules, bytes('.x.'), { base: 0x1000, filesize: 0x10000 });
    expect(match?.strings).toEqual([{ rule: 'r', string: '$a', offset: 0x1001, length: 1 }]);
  });

  it('keeps only the at-offset match of a string used only as `$s at N`', () => {
    const rules = compileSource('rule r { strings: $a = "ab" condition: $a at 2 }');
    expect(matchReference(rules, bytes('abab'))[0]?.strings.map((match) => match.offset)).toEqual([2]);
  });

  it('does not fall back to the wide form of a regex whose ascii form fullword rejects (yara 4.2 does the same)', () => {
    const data = new Uint8Array([0x78, 0x41, 0x00, 0x20]); // "xA\0 "
    const offsets = (strings: string) =>
      matchReference(compileSource(`rule r { strings: ${strings} condition: $a }`), data)[0]?.strings.map((match) => [
        match.offset,
        match.length,
      ]);
    expect(offsets('$a = /\\w/ wide ascii fullword')).toBeUndefined();
    expect(offsets('$a = /A/ wide ascii fullword')).toEqual([[1, 2]]); // a literal regex is a text string to yara
    expect(offsets('$a = "A" wide ascii fullword')).toEqual([[1, 2]]);
  });

  it('reports one match per offset: the first variant, fullword checked per variant', () => {
    const rules = compileSource('rule r { strings: $a = "ab" ascii wide fullword condition: $a }');
    const data = new Uint8Array([0x61, 0x62, 0x20, 0x61, 0x00, 0x62, 0x00, 0x20, 0x78, 0x61, 0x62]);
    expect(matchReference(rules, data)[0]?.strings.map((match) => [match.offset, match.length])).toEqual([
      [0, 2],
      [3, 4],
    ]);
  });
});
