import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { searchReference } from '../../src/kernels/multiNeedle.js';
import { compileSource } from '../../src/rules/compile.js';
import { LazyDfa, UnanchoredEndsDfa } from '../../src/rules/lazyDfa.js';
import { PikeVm } from '../../src/rules/pikeVm.js';
import { stringMatches } from '../../src/rules/reference.js';

const hexByte = (byte: number) => byte.toString(16).padStart(2, '0');

/** Start offsets of the first string of the single rule in `source`. */
function offsetsOf(source: string, data: Uint8Array): number[] {
  const string = compileSource(source).rules[0]!.strings[0]!;
  return stringMatches(string, data).map((match) => match.offset);
}

// Small alphabets so that patterns actually occur in the haystacks.
const haystack = fc.uint8Array({ minLength: 0, maxLength: 300 }).map((bytes) => bytes.map((byte) => byte & 0x03));
const needle = fc.uint8Array({ minLength: 1, maxLength: 6 }).map((bytes) => bytes.map((byte) => byte & 0x03));

describe('exact byte patterns agree with a naive search', () => {
  it('as a text string with \\x escapes', () => {
    fc.assert(
      fc.property(haystack, needle, (data, bytes) => {
        const text = Array.from(bytes, (byte) => `\\x${hexByte(byte)}`).join('');
        const expected = searchReference(data, [bytes]).map((hit) => hit.offset);
        expect(offsetsOf(`rule r { strings: $a = "${text}" condition: $a }`, data)).toEqual(expected);
      }),
    );
  });

  it('as a hex string', () => {
    fc.assert(
      fc.property(haystack, needle, (data, bytes) => {
        const hex = Array.from(bytes, hexByte).join(' ');
        const expected = searchReference(data, [bytes]).map((hit) => hit.offset);
        expect(offsetsOf(`rule r { strings: $a = { ${hex} } condition: $a }`, data)).toEqual(expected);
      }),
    );
  });

  it('as a nocase string, against a case-folded search', () => {
    const letters = fc.constantFrom(...'aAbB'.split('').map((c) => c.charCodeAt(0)));
    fc.assert(
      fc.property(
        fc
          .uint8Array({ maxLength: 200 })
          .chain((raw) =>
            fc.tuple(
              fc.array(letters, { minLength: raw.length, maxLength: raw.length }),
              fc.array(letters, { minLength: 1, maxLength: 5 }),
            ),
          ),
        ([dataBytes, needleBytes]) => {
          const data = Uint8Array.from(dataBytes);
          const fold = (bytes: ArrayLike<number>) => Uint8Array.from(bytes, (byte) => byte | 0x20);
          const expected = searchReference(fold(data), [fold(needleBytes)]).map((hit) => hit.offset);
          const text = String.fromCharCode(...needleBytes);
          expect(offsetsOf(`rule r { strings: $a = "${text}" nocase condition: $a }`, data)).toEqual(expected);
        },
      ),
    );
  });
});

/**
 * Regexes over the alphabet "abc" built only from constructs whose meaning YARA and JavaScript
 * share (no `^`/`$`/`\b`, no newlines for `.` to differ on). A sticky JS RegExp at each offset
 * gives the backtracking engine's preferred match there, which the Pike VM must reproduce.
 * Only atoms that cannot match empty are quantified: ECMAScript rejects an empty iteration of a
 * quantified group and backtracks into it, a rule of its own (`/a(b*?)?/` matches "ab" on "ab").
 */
const matchesEmpty = (atom: string) => new RegExp(`^(?:${atom})$`).test('');
const regexSource: fc.Arbitrary<string> = fc.letrec<{ node: string; atom: string }>((tie) => ({
  atom: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('a', 'b', 'c', '.', '[ab]', '[^a]', '\\w', '[a-b]'),
    tie('node').map((inner) => `(${inner})`),
  ),
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc
      .tuple(tie('atom'), fc.constantFrom('', '*', '+', '?', '*?', '+?', '??', '{2}', '{1,3}', '{0,2}?', '{2,}'))
      .map(([atom, quantifier]) => (matchesEmpty(atom) ? atom : atom + quantifier)),
    fc.array(tie('atom'), { minLength: 2, maxLength: 4 }).map((atoms) => atoms.join('')),
    fc.tuple(tie('node'), tie('node')).map(([left, right]) => `${left}|${right}`),
  ),
})).node;

describe('regular expressions agree with JavaScript RegExp', () => {
  it('on every start offset: same matches, same preferred lengths', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), maxLength: 40 });
    fc.assert(
      fc.property(regexSource, text, (source, input) => {
        const data = Uint8Array.from(input, (c) => c.charCodeAt(0));
        const sticky = new RegExp(source, 'y');
        const expected = Array.from(data.keys()).flatMap((start) => {
          sticky.lastIndex = start;
          const length = sticky.exec(input)?.[0].length ?? 0;
          return length > 0 ? [{ offset: start, length }] : []; // yara never reports empty matches
        });
        const string = compileSource(`rule r { strings: $a = /${source}/ condition: $a }`).rules[0]!.strings[0]!;
        expect(stringMatches(string, data)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

describe('the lazy DFA answers as the Pike VM', () => {
  it('at every start, with the state cache big and tiny (starting over mid-match)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), maxLength: 60 });
    fc.assert(
      fc.property(
        regexSource,
        fc.constantFrom('', 's'),
        text,
        fc.constantFrom(4096, 2),
        (source, flags, input, maxStates) => {
          const variant = compileSource(`rule r { strings: $a = /${source}/${flags} condition: $a }`).rules[0]!
            .strings[0]!.variants[0]!;
          if (variant.kind !== 'program') return;
          expect(LazyDfa.supports(variant.program)).toBe(true);
          const data = Uint8Array.from(input, (c) => c.charCodeAt(0));
          const [vm, dfa] = [new PikeVm(variant.program), new LazyDfa(variant.program, maxStates)];
          for (let start = 0; start <= data.length; start++)
            expect(dfa.matchAt(data, start), `/${source}/${flags} at ${start}`).toBe(vm.matchAt(data, start));
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('the unanchored DFA finds where non-empty matches end', () => {
  /** Positions where some match of at least one byte ends, by JavaScript RegExp on every slice. */
  const nonEmptyEnds = (source: string, flags: string, input: string) => {
    const whole = new RegExp(`^(?:${source})$`, flags);
    return Array.from({ length: input.length }, (_, i) => i + 1).filter((end) =>
      Array.from({ length: end }, (_, start) => start).some((start) => whole.test(input.slice(start, end))),
    );
  };
  it('at every position, for two programs in one pass, with the state cache big and tiny (starting over mid-input)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), maxLength: 80 });
    fc.assert(
      fc.property(
        regexSource,
        regexSource,
        fc.constantFrom('', 's'),
        text,
        fc.constantFrom(4096, 2),
        (first, second, flags, input, maxStates) => {
          const programs = [first, second].map((source) => {
            const variant = compileSource(`rule r { strings: $a = /${source}/${flags} condition: $a }`).rules[0]!
              .strings[0]!.variants[0]!;
            if (variant.kind !== 'program') throw new Error(`/${source}/ compiled to a literal`);
            return variant.program;
          });
          const data = Uint8Array.from(input, (c) => c.charCodeAt(0));
          const ends = new UnanchoredEndsDfa(programs, maxStates)
            .matchEnds(data)
            .map((positions) => Array.from(positions));
          expect(ends, `/${first}/ /${second}/`).toEqual(
            [first, second].map((source) => nonEmptyEnds(source, flags, input)),
          );
        },
      ),
      { numRuns: 400 },
    );
  });

  it('skips runs of zeros without missing the matches around and across them', () => {
    const zeroRun = fc.integer({ min: 0, max: 40 }).map((length) => '\0'.repeat(length));
    const text = fc
      .array(fc.oneof(fc.constantFrom('a', 'b', '\0a', 'a\0'), zeroRun), { maxLength: 12 })
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(
        fc.constantFrom('a\\x00*b', 'a+', '\\x00a', '(a|\\x00{3})b?'),
        text,
        fc.integer({ min: 0, max: 3 }),
        (source, input, shift) => {
          // A view at an unaligned offset too: the run skipper reads four bytes at a time where it can.
          const buffer = new Uint8Array(input.length + shift);
          buffer.set(
            Uint8Array.from(input, (c) => c.charCodeAt(0)),
            shift,
          );
          const data = buffer.subarray(shift);
          const variant = compileSource(`rule r { strings: $a = /${source}/ condition: $a }`).rules[0]!.strings[0]!
            .variants[0]!;
          if (variant.kind !== 'program') throw new Error(`/${source}/ compiled to a literal`);
          const jsSource = source.replace(/\\x00/g, '\\0');
          expect(Array.from(new UnanchoredEndsDfa([variant.program]).matchEnds(data)[0]!)).toEqual(
            nonEmptyEnds(jsSource, '', input),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
