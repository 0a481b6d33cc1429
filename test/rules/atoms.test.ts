import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileSource, type CompiledString } from '../../src/rules/compile.js';
import { stringMatches } from '../../src/rules/reference.js';

function compiledString(strings: string, condition = '$a'): CompiledString {
  return compileSource(`rule r { strings: ${strings} condition: ${condition} }`).rules[0]!.strings[0]!;
}

const atomOf = (string: CompiledString, variant = 0) => {
  const atom = string.variants[variant]!.atom!;
  return {
    bytes: Array.from(atom.bytes),
    offset: atom.offset,
    maxOffset: atom.maxOffset,
    caseInsensitive: atom.caseInsensitive,
  };
};

describe('atoms', () => {
  it('skip a zero prefix for the rarer bytes after it', () => {
    expect(atomOf(compiledString('$a = { 00 00 00 00 DE AD BE EF }'))).toEqual({
      bytes: [0xde, 0xad, 0xbe, 0xef],
      offset: 4,
      maxOffset: 4,
      caseInsensitive: false,
    });
  });

  it('never start with 00 00 (the filter would lose its zero-page skip); a pattern of zeros is left to its automaton', () => {
    expect(atomOf(compiledString('$a = { 00 00 00 00 00 00 00 00 48 }'))).toEqual({
      bytes: [0x00, 0x48],
      offset: 7,
      maxOffset: 7,
      caseInsensitive: false,
    });
    expect(compiledString('$a = { 00 00 00 00 }').variants[0]!.atom).toBeUndefined();
  });

  it('that would flood verification are dropped: the pattern is searched by its automaton', () => {
    // The wide form's only fixed bytes are its zeros; one common letter anywhere in 4 KiB is no filter either.
    expect(compiledString('$a = /[0-9a-f]{20}/ wide').variants[0]!.atom).toBeUndefined();
    expect(compiledString('$a = /[0-9]+e/').variants[0]!.atom).toBeUndefined();
    expect(compiledString('$a = /[0-9]+ezq/').variants[0]!.atom).toBeDefined();
  });

  it('prefer one rare byte to a run of zeros, across wildcards', () => {
    expect(atomOf(compiledString('$a = { 00 00 00 00 ?? ?? 41 }'))).toEqual({
      bytes: [0x41],
      offset: 6,
      maxOffset: 6,
      caseInsensitive: false,
    });
  });

  it('may sit after a jump or a variable repeat, within a range of offsets', () => {
    expect(atomOf(compiledString('$a = { 00 00 [1-2] DE AD BE EF }'))).toEqual({
      bytes: [0xde, 0xad, 0xbe, 0xef],
      offset: 3,
      maxOffset: 4,
      caseInsensitive: false,
    });
    expect(atomOf(compiledString('$a = /abc[0-9]+zzzz/'))).toEqual({
      bytes: [0x7a, 0x7a, 0x7a, 0x7a],
      offset: 4,
      maxOffset: 4096,
      caseInsensitive: false,
    });
  });

  it('fold case for nocase strings and case-insensitive regexes', () => {
    expect(atomOf(compiledString('$a = "HeLLo" nocase'))).toMatchObject({ caseInsensitive: true });
    expect(atomOf(compiledString('$a = "HeLLo" nocase')).bytes.every((byte) => byte < 0x41 || byte > 0x5a)).toBe(true);
    expect(atomOf(compiledString('$a = /hello/i'))).toMatchObject({ caseInsensitive: true });
  });

  it('come per variant: ascii and wide, each xor key', () => {
    expect(compiledString('$a = "abc" ascii wide').variants.map((variant) => variant.atom!.bytes.length)).toEqual([
      3, 4,
    ]);
    const xor = compiledString('$a = "abcd" xor');
    expect(xor.variants).toHaveLength(256);
    expect(atomOf(xor, 0x20).bytes).toEqual([0x41, 0x42, 0x43, 0x44]);
  });

  it('are absent when no byte is fixed, and the string is flagged to scan everywhere', () => {
    expect(compiledString('$a = /[ab]c?[cd]/').scanEverywhere).toBe(true);
    expect(compiledString('$a = { ?? ?? ( 01 | ?? ) }').scanEverywhere).toBe(true);
    expect(compiledString('$a = /x|y*/').scanEverywhere).toBe(true);
    expect(compiledString('$a = { ?? 01 }').scanEverywhere).toBe(false);
  });

  it('of an alternation are one per option, where no single atom is worth searching', () => {
    const variant = compiledString('$a = /(\\.pyc$|Python|[ab]zq)/').variants[0]!;
    expect(variant.atom).toBeUndefined();
    const atoms = variant.kind === 'program' ? variant.alternationAtoms : undefined;
    expect(atoms?.map((atom) => [Buffer.from(atom.bytes).toString('latin1'), atom.offset, atom.maxOffset])).toEqual([
      ['.pyc', 0, 0],
      ['Pyth', 0, 0],
      ['zq', 1, 1],
    ]);
    const shifted = compiledString('$a = { ?? ?? ( 01 02 | 03 04 ) }');
    expect(shifted.scanEverywhere).toBe(false);
    const shiftedAtoms = shifted.variants[0]!.kind === 'program' ? shifted.variants[0]!.alternationAtoms : undefined;
    expect(shiftedAtoms?.map((atom) => [Array.from(atom.bytes), atom.offset])).toEqual([
      [[1, 2], 2],
      [[3, 4], 2],
    ]);
  });

  it('occur in every match of a hex pattern, within their offsets', () => {
    const element = fc.oneof(
      fc.integer({ min: 0, max: 3 }).map((byte) => `0${byte}`),
      fc.constant('??'),
      fc.constant('0?'),
      fc.constantFrom('[1]', '[0-2]'),
    );
    const pattern = fc
      .tuple(fc.integer({ min: 0, max: 3 }), fc.array(element, { maxLength: 6 }), fc.integer({ min: 0, max: 3 }))
      .map(([first, middle, last]) => [`0${first}`, ...middle, `0${last}`].join(' '));
    const data = fc.uint8Array({ maxLength: 200 }).map((bytes) => bytes.map((byte) => byte & 3));
    fc.assert(
      fc.property(pattern, data, (hex, bytes) => {
        const string = compiledString(`$a = { ${hex} }`);
        const atom = string.variants[0]!.atom;
        if (!atom) return;
        const atomAt = (at: number) =>
          Array.from(bytes.subarray(at, at + atom.bytes.length)).join() === Array.from(atom.bytes).join();
        for (const match of stringMatches(string, bytes)) {
          const distances = Array.from({ length: atom.maxOffset - atom.offset + 1 }, (_, i) => atom.offset + i);
          expect(distances.some((distance) => atomAt(match.offset + distance))).toBe(true);
        }
      }),
    );
  });
});
