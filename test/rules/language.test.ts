import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { base64Forms } from '../../src/rules/base64.js';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference } from '../../src/rules/reference.js';
import { RuleScanner } from '../../src/rules/scanner.js';
import { bufferUnit } from '../../src/rules/unit.js';

/**
 * The core-language constructs beyond strings, each against an oracle written independently
 * (DataView, BigInt, Buffer's base64, plain loops), through both the reference matcher and the
 * scanner (prefilter and a small window, conditions reading the unit).
 */
function matchingRules(source: string, data: Uint8Array): { reference: string[]; scanner: string[] } {
  const rules = compileSource(source);
  const scanner = RuleScanner.create(rules, { windowBytes: 64 * 1024 });
  return {
    reference: matchReference(rules, data).map((match) => match.rule),
    scanner: scanner.evaluate(scanner.scanBuffer(data).hits, data.length, bufferUnit(data)).map((match) => match.rule),
  };
}

function holds(condition: string, data: Uint8Array, strings = ''): boolean {
  const { reference, scanner } = matchingRules(
    `import "math"\nimport "hash"\nrule r { ${strings ? `strings: ${strings}` : ''} condition: ${condition} }`,
    data,
  );
  expect(scanner, condition).toEqual(reference);
  return reference.length === 1;
}

const READS = [
  ['uint8', 1, (view: DataView, at: number) => view.getUint8(at)],
  ['uint16', 2, (view: DataView, at: number) => view.getUint16(at, true)],
  ['uint32', 4, (view: DataView, at: number) => view.getUint32(at, true)],
  ['int8', 1, (view: DataView, at: number) => view.getInt8(at)],
  ['int16', 2, (view: DataView, at: number) => view.getInt16(at, true)],
  ['int32', 4, (view: DataView, at: number) => view.getInt32(at, true)],
  ['uint16be', 2, (view: DataView, at: number) => view.getUint16(at, false)],
  ['uint32be', 4, (view: DataView, at: number) => view.getUint32(at, false)],
  ['int16be', 2, (view: DataView, at: number) => view.getInt16(at, false)],
  ['int32be', 4, (view: DataView, at: number) => view.getInt32(at, false)],
] as const;

describe('integer reads', () => {
  it('read what DataView reads, and are undefined from the last bytes of the unit on and past its end', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 12 }),
        fc.integer({ min: -2, max: 14 }),
        fc.constantFrom(...READS),
        (data, offset, [name, size, read]) => {
          const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
          const inside = offset >= 0 && offset + size <= data.length;
          expect(holds(`defined ${name}(${offset})`, data)).toBe(inside);
          if (inside) expect(holds(`${name}(${offset}) == ${read(view, offset)}`, data)).toBe(true);
          // Undefined is false whichever way it is compared, and `not` keeps it undefined.
          if (!inside)
            expect(holds(`not (${name}(${offset}) == 0) or not (${name}(${offset}) != 0)`, data)).toBe(false);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('take any integer expression as offset, as in the MZ/PE check rules are written with', () => {
    const data = new Uint8Array(0x100);
    data.set([0x4d, 0x5a]);
    data[0x3c] = 0x80;
    data.set([0x50, 0x45, 0, 0], 0x80);
    expect(holds('uint16(0) == 0x5a4d and uint32(uint32(0x3c)) == 0x00004550', data)).toBe(true);
    expect(
      holds('uint32be(uint32(0x3c) + 0) == 0x50450000 and uint8(0x3c) \\ 2 == 64 and int8(0x3c) == -128', data),
    ).toBe(true);
  });
});

describe('operators', () => {
  const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
  it('follow C on int64 (truncating division and remainder, shifts, bitwise)', () => {
    fc.assert(
      fc.property(int64, int64, fc.bigInt({ min: 0n, max: 70n }), (a, b, shift) => {
        const literal = (value: bigint) => (value < 0n ? `(0 - ${-value})` : `${value}`);
        const [x, y] = [literal(a), literal(b)];
        const wrap = (value: bigint) => BigInt.asIntN(64, value);
        const data = new Uint8Array(1);
        if (b !== 0n) {
          expect(holds(`${x} \\ ${y} == ${literal(wrap(a / b))}`, data)).toBe(true);
          expect(holds(`${x} % ${y} == ${literal(a % b)}`, data)).toBe(true);
        }
        expect(
          holds(
            `(${x} & ${y}) == ${literal(a & b)} and (${x} | ${y}) == ${literal(a | b)} and (${x} ^ ${y}) == ${literal(a ^ b)}`,
            data,
          ),
        ).toBe(true);
        expect(holds(`${x} << ${shift} == ${literal(shift >= 64n ? 0n : wrap(a << shift))}`, data)).toBe(true);
        expect(holds(`${x} >> ${shift} == ${literal(shift >= 64n ? 0n : a >> shift)}`, data)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('leave hex bytes that look like exponents (5e, 1E) to the hex string, wherever it starts', () => {
    const data = Uint8Array.from([0x5e, 0x5e, 0x1e, 0x3e]);
    expect(holds('$a and $b', data, '$a = { 5e 5E 1e 3e } $b =\n /* bytes */ { 5e\n 5e }')).toBe(true);
  });

  it('read hexadecimal, octal and size suffixes', () => {
    expect(holds('0x10 == 16 and 0o17 == 15 and 2KB == 2048 and 1MB == 1048576', new Uint8Array(1))).toBe(true);
  });

  it('compare strings as yara does (contains, startswith, endswith and their case-folding forms, iequals, matches)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'B', 'b', 'A', 'c'), maxLength: 6 });
    fc.assert(
      fc.property(text, text, (left, right) => {
        const data = new Uint8Array(1);
        const [l, r] = [`"${left}"`, `"${right}"`];
        expect(holds(`${l} contains ${r}`, data)).toBe(left.includes(right));
        expect(holds(`${l} icontains ${r}`, data)).toBe(left.toLowerCase().includes(right.toLowerCase()));
        expect(holds(`${l} startswith ${r}`, data)).toBe(left.startsWith(right));
        expect(holds(`${l} iendswith ${r}`, data)).toBe(left.toLowerCase().endsWith(right.toLowerCase()));
        expect(holds(`${l} iequals ${r}`, data)).toBe(left.toLowerCase() === right.toLowerCase());
        expect(holds(`${l} == ${r}`, data)).toBe(left === right);
        if (right !== '') expect(holds(`${l} matches /${right}/i`, data)).toBe(new RegExp(right, 'i').test(left));
      }),
      { numRuns: 150 },
    );
  });
});

describe('loops, sets and defined', () => {
  it('for … in a range or a list counts the values whose body holds (an empty range satisfies only all/none)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => bytes.map((byte) => byte & 1)),
        fc.integer({ min: 0, max: 45 }),
        fc.integer({ min: 0, max: 45 }),
        (data, from, to) => {
          const values = Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
          const odd = values.filter((at) => at < data.length && data[at] === 1).length;
          expect(holds(`for any i in (${from}..${to}) : (uint8(i) == 1)`, data)).toBe(odd > 0);
          expect(holds(`for all i in (${from}..${to}) : (uint8(i) == 1)`, data)).toBe(odd === values.length);
          expect(holds(`for none i in (${from}..${to}) : (uint8(i) == 1)`, data)).toBe(odd === 0);
          expect(holds(`for 2 i in (${from}, ${to}, 0) : (uint8(i) == 1)`, data)).toBe(
            [from, to, 0].filter((at) => at < data.length && data[at] === 1).length >= 2,
          );
        },
      ),
      { numRuns: 150 },
    );
  });

  it('@s[i] and !s[i] take expressions and nest in for … in over #s', () => {
    const data = new TextEncoder().encode('xx ab ab ab');
    expect(
      holds(
        'for all i in (1..#a) : (@a[i] % 3 == 0 and !a[i] == 2) and @a[#a - 1] == 6 and not defined @a[#a + 1]',
        data,
        '$a = "ab"',
      ),
    ).toBe(true);
    expect(holds('#a in (0..6) == 2 and #a in (7..100) == 1', data, '$a = "ab"')).toBe(true);
  });

  it('string sets with wildcards, percentages and rule sets', () => {
    const data = new TextEncoder().encode('alpha beta');
    const rules = `rule rule_a { strings: $a1 = "alpha" $a2 = "gamma" $b = "beta" condition: any of ($a*) and 50% of them and none of ($a2) }
      rule rule_b { condition: filesize > 100 }
      rule both { condition: 1 of (rule_*) and not all of (rule_a, rule_b) }`;
    const { reference, scanner } = matchingRules(rules, data);
    expect(reference).toEqual(['rule_a', 'both']);
    expect(scanner).toEqual(reference);
  });

  it('rules without strings match as yara reports them', () => {
    const { reference, scanner } = matchingRules(
      'rule always { condition: true } rule sized { condition: filesize > 0 } rule empty { condition: filesize == 0 }',
      new Uint8Array(3),
    );
    expect(reference).toEqual(['always', 'sized']);
    expect(scanner).toEqual(reference);
  });
});

describe('base64 strings', () => {
  it("give yara's three alignments (its documentation's example)", () => {
    const alphabet = new TextEncoder().encode('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');
    const forms = base64Forms(new TextEncoder().encode('This program cannot'), alphabet).map((form) =>
      new TextDecoder().decode(form),
    );
    expect(forms).toEqual(['VGhpcyBwcm9ncmFtIGNhbm5vd', 'RoaXMgcHJvZ3JhbSBjYW5ub3', 'UaGlzIHByb2dyYW0gY2Fubm90']);
  });

  it('find the text base64-encoded inside any encoded stream, also wide and with a custom alphabet', () => {
    const bytes = fc.uint8Array({ maxLength: 5 });
    const text = fc.string({ unit: fc.constantFrom('a', 'b', 'Q', '!', '~'), minLength: 3, maxLength: 8 });
    fc.assert(
      fc.property(bytes, text, bytes, (before, plain, after) => {
        const encoded = Buffer.concat([before, Buffer.from(plain, 'latin1'), after]).toString('base64');
        expect(holds('$a', new Uint8Array(Buffer.from(`..${encoded}..`, 'latin1')), `$a = "${plain}" base64`)).toBe(
          true,
        );
        expect(
          holds('$a', new Uint8Array(Buffer.from(`..${encoded}..`, 'utf16le')), `$a = "${plain}" base64wide`),
        ).toBe(true);
        const custom = encoded.replace(/[A-Za-z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
        const swapped = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/';
        expect(
          holds('$a', new Uint8Array(Buffer.from(`..${custom}..`, 'latin1')), `$a = "${plain}" base64("${swapped}")`),
        ).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

describe('modules', () => {
  it('math and hash compute what Node and plain formulas compute, over ranges clipped at the end', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.integer({ min: 0, max: 70 }),
        fc.integer({ min: 0, max: 70 }),
        (data, offset, size) => {
          const inside = offset < data.length;
          const range = data.subarray(offset, offset + size);
          const md5 = createHash('md5').update(range).digest('hex');
          expect(holds(`hash.md5(${offset}, ${size}) == "${md5}"`, data)).toBe(inside);
          const sum = range.reduce((total, byte) => (total + byte) >>> 0, 0);
          expect(holds(`hash.checksum32(${offset}, ${size}) == ${sum}`, data)).toBe(inside);
          const counts = new Map<number, number>();
          for (const byte of range) counts.set(byte, (counts.get(byte) ?? 0) + 1);
          const entropy =
            range.length === 0
              ? 0
              : -[...counts.values()].reduce(
                  (total, count) => total + (count / range.length) * Math.log2(count / range.length),
                  0,
                );
          expect(
            holds(
              `math.in_range(math.entropy(${offset}, ${size}), ${(entropy - 1e-9).toFixed(12)}, ${(entropy + 1e-9).toFixed(12)})`,
              data,
            ),
          ).toBe(inside);
        },
      ),
      { numRuns: 100 },
    );
  });
});
