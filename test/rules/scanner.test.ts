import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RangeMappedImage } from '../../src/image/rangeImage.js';
import { BufferSource } from '../../src/image/source.js';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference, stringMatches } from '../../src/rules/reference.js';
import { RuleScanner } from '../../src/rules/scanner.js';

/** The smallest window: with matches up to 4 KiB the chunks' owned parts are ~60 KiB, so 200 KiB of data crosses several edges. */
const WINDOW = 64 * 1024;

/** Strings over a small alphabet, every construct the scanner handles differently: whole literals, atoms, case spellings, ranged atoms, no atom. */
const stringSource = fc.oneof(
  fc
    .tuple(fc.stringMatching(/^[abc\x00]{1,5}$/), fc.subarray(['nocase', 'wide', 'ascii', 'fullword']))
    .map(([text, modifiers]) => `"${escape(text)}" ${modifiers.join(' ')}`),
  fc
    .tuple(fc.stringMatching(/^[abc]{1,4}$/), fc.integer({ min: 0, max: 3 }))
    .map(([text, key]) => `"${text}" xor(0-${key})`),
  fc
    .tuple(
      fc.constantFrom('61', '62', '00', '??', '6?'),
      fc.constantFrom('[0-2]', '[1-3]', '??', '63', ''),
      fc.constantFrom('61 62', '00 63', '62'),
    )
    .map((parts) => `{ ${parts.join(' ')} }`),
  fc
    .tuple(
      fc.constantFrom(
        'a[bc]+d?',
        'b.{1,3}c',
        '(ab|cd)c',
        'c*ab',
        '[^a]b{2}',
        'a.*?b',
        // One atom per option of an alternation: at a fixed distance, at a range of them, nested.
        '(abd|[bc]da|cab)',
        '[ab].{0,3}(bcd|cdb)',
        '(ba(cd|dc)|dd[ab]c)+',
      ),
      fc.constantFrom('', 'i', 's'),
      fc.constantFrom('', 'wide', 'ascii wide', 'fullword'),
    )
    .map(([body, flags, modifiers]) => `/${body}/${flags} ${modifiers}`),
);

function escape(text: string): string {
  return [...text].map((char) => (char === '\x00' ? '\\x00' : char)).join('');
}

/** Data that makes the strings above match often, with the letters `fullword` and `nocase` care about. */
const dataOf = (length: number) =>
  fc
    .uint8Array({ minLength: length, maxLength: length })
    .map((bytes) => bytes.map((byte) => [0x61, 0x62, 0x63, 0x64, 0x41, 0x42, 0x00, 0x20][byte & 7]!));

function rulesOf(strings: readonly string[]): string {
  return `rule r { strings: ${strings.map((string, i) => `$s${i} = ${string}`).join('\n')} condition: any of them }`;
}

describe('RuleScanner agrees with the reference matcher', () => {
  it('on random strings and data crossing chunk edges', () => {
    fc.assert(
      fc.property(fc.array(stringSource, { minLength: 1, maxLength: 6 }), dataOf(200 * 1024), (strings, data) => {
        const rules = compileSource(rulesOf(strings));
        const scanner = RuleScanner.create(rules, { windowBytes: WINDOW });
        const { hits, truncated } = scanner.scanBuffer(data);
        expect(truncated).toEqual([]);
        rules.rules[0]!.strings.forEach((string, index) => {
          const ours = [...hits]
            .filter((hit) => hit.string === index)
            .map(({ offset, length }) => ({ offset, length }));
          expect(ours, `${string.id} = ${strings[index]}`).toEqual(stringMatches(string, data));
        });
      }),
      { numRuns: 12 },
    );
  });

  it('on the multi-needle path (few exact literals) at every chunk edge', () => {
    // A literal planted across each byte position around the first owned edge.
    const rules = compileSource('rule r { strings: $a = "needle" fullword $b = { 00 6E 65 } condition: $a or $b }');
    const scanner = RuleScanner.create(rules, { windowBytes: WINDOW });
    const data = new Uint8Array(3 * WINDOW).fill(0x20);
    for (let at = WINDOW - 40; at < WINDOW + 8; at += 9) data.set(Buffer.from('\x00needle'), at);
    const { hits } = scanner.scanBuffer(data);
    const byOffset = (a: { offset: number }, b: { offset: number }) => a.offset - b.offset;
    const expected = matchReference(rules, data)[0]!
      .strings.map(({ offset, length }) => ({ offset, length }))
      .sort(byOffset);
    expect([...hits].map(({ offset, length }) => ({ offset, length }))).toEqual(expected);
    expect(hits.length).toBeGreaterThan(8);
  });

  it('finds nothing across a gap between physical ranges, and everything on either side', () => {
    const rules = compileSource('rule r { strings: $a = "split" nocase condition: $a }');
    const file = new Uint8Array(2 * WINDOW).fill(0x2e);
    file.set(Buffer.from('SPLIT'), 100);
    file.set(Buffer.from('spl'), WINDOW - 3); // "spl" ends range 1, "it" starts range 2: not one match
    file.set(Buffer.from('it split'), WINDOW);
    const image = new RangeMappedImage(new BufferSource('memory', file), 'raw', [
      { start: 0x10000, end: 0x10000 + WINDOW, fileOffset: 0 },
      { start: 0x80000, end: 0x80000 + WINDOW, fileOffset: WINDOW },
    ]);
    const { hits } = RuleScanner.create(rules, { windowBytes: WINDOW }).scanImage(image);
    expect([...hits].map((hit) => hit.offset)).toEqual([0x10000 + 100, 0x80000 + 3]);
  });

  it('splits more atoms than one filter holds over several filters', () => {
    const words = Array.from({ length: 5000 }, (_, i) => `w${i.toString(36).padStart(3, '0')}x`);
    const source = words.map((word, i) => `rule r${i} { strings: $a = "${word}" nocase condition: $a }`).join('\n');
    const rules = compileSource(source);
    const data = new Uint8Array(
      Buffer.from(
        words
          .filter((_, i) => i % 7 === 0)
          .join(' ')
          .toUpperCase(),
      ),
    );
    const scanner = RuleScanner.create(rules, { windowBytes: WINDOW });
    const matched = scanner.evaluate(scanner.scanBuffer(data).hits, data.length).map((match) => match.rule);
    expect(matched).toEqual(words.flatMap((_, i) => (i % 7 === 0 ? [`r${i}`] : [])));
  });

  it('keeps the first matches of a string that matches too often, and says so', () => {
    const rules = compileSource('rule r { strings: $z = { 00 00 } $a = "a" condition: $z and $a }');
    const data = new Uint8Array(WINDOW * 2);
    data[5] = 0x61;
    const scanner = RuleScanner.create(rules, { windowBytes: WINDOW, limits: { perString: 1000 } });
    const { hits, truncated } = scanner.scanBuffer(data);
    expect(truncated).toEqual([0]);
    const zeros = [...hits].filter((hit) => hit.string === 0);
    expect(zeros).toHaveLength(1000);
    expect(zeros[999]!.offset).toBe(1001); // "\0\0" at 0..3, then from 6 on (4 and 5 touch the "a"): the 1000th is 1001
    expect([...hits].filter((hit) => hit.string === 1).map((hit) => hit.offset)).toEqual([5]);
  });

  it('a capped string keeps its first matches by offset whichever of its variants found them', () => {
    // Each variant's starts are cut at the cap on their own: the union's first matches must stay what an uncapped scan's are.
    const rules = compileSource(
      'rule r { strings: $s = "ab" nocase wide ascii $t = { 61 ?? 62 } condition: any of them }',
    );
    const alphabet = [0x61, 0x41, 0x62, 0x42, 0x00];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...alphabet), { minLength: 0, maxLength: 400 }),
        fc.integer({ min: 1, max: 12 }),
        (bytes, cap) => {
          const data = Uint8Array.from(bytes);
          const all = [...RuleScanner.create(rules, { windowBytes: WINDOW }).scanBuffer(data).hits];
          const capped = RuleScanner.create(rules, { windowBytes: WINDOW, limits: { perString: cap } }).scanBuffer(
            data,
          );
          for (const string of [0, 1]) {
            const expected = all.filter((hit) => hit.string === string);
            expect([...capped.hits].filter((hit) => hit.string === string)).toEqual(expected.slice(0, cap));
            expect(capped.truncated.includes(string)).toBe(expected.length > cap);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps the first matches by offset under the per-string, per-rule and per-scan limits, however short the passes a flood forces', () => {
    // Strings that match nearly everywhere in these bytes, spread over rules: passes are cut short when a pass records
    // more than the budget, and every limit applies in (offset, string) order, as to the uncapped scan's hits.
    const rules = compileSource(`
      rule a { strings: $z = { 00 00 } $n = "ab" nocase $w = { ?? 00 } condition: any of them }
      rule b { strings: $j = { 61 ?? 62 } $r = /a.b/ $f = "ab" fullword condition: any of them }
      rule c { strings: $x = { 00 ?? 00 } condition: $x }`);
    const ruleOf = [0, 0, 0, 1, 1, 1, 2];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(0x00, 0x61, 0x62, 0x20), { minLength: 8192, maxLength: 40_000, size: 'max' }),
        fc.record({
          perString: fc.integer({ min: 1, max: 20_000 }),
          perRule: fc.integer({ min: 1, max: 30_000 }),
          perScan: fc.integer({ min: 1, max: 50_000 }),
        }),
        fc.integer({ min: 1, max: 64 }),
        (bytes, limits, recordBudget) => {
          const data = Uint8Array.from(bytes);
          const all = [...RuleScanner.create(rules, { windowBytes: WINDOW }).scanBuffer(data).hits];
          const capped = RuleScanner.create(rules, { windowBytes: WINDOW, limits, recordBudget }).scanBuffer(data);
          const kept: typeof all = [];
          const truncated = new Set<number>();
          const strings = new Map<number, number>();
          const perRule = new Map<number, number>();
          for (const hit of all) {
            const rule = ruleOf[hit.string]!;
            if (
              (strings.get(hit.string) ?? 0) < limits.perString &&
              (perRule.get(rule) ?? 0) < limits.perRule &&
              kept.length < limits.perScan
            ) {
              strings.set(hit.string, (strings.get(hit.string) ?? 0) + 1);
              perRule.set(rule, (perRule.get(rule) ?? 0) + 1);
              kept.push(hit);
            } else truncated.add(hit.string);
          }
          expect([...capped.hits]).toEqual(kept);
          expect(capped.truncated).toEqual([...truncated].sort((x, y) => x - y));
        },
      ),
      // Shrinking inputs of tens of kilobytes takes minutes: a failure is reported as found.
      { numRuns: 40, endOnFailure: true },
    );
  });

  it('stops looking for strings past their cap: patterns of zeros over 256 MiB of zeros take seconds, not minutes and gigabytes', () => {
    // Issue 13's `{ 00 00 00 00 }`, `{ ?? ?? }` and a long run of wildcards: no atom worth searching, matches at every byte.
    const rules = compileSource(
      `rule zeros { strings: $a = { 00 00 00 00 } $b = { ?? ?? } $c = { ${'?? '.repeat(64)}} condition: any of them }`,
    );
    const scanner = RuleScanner.create(rules, { limits: { perString: 100_000 } });
    const data = new Uint8Array(256 << 20);
    const started = performance.now();
    const before = process.memoryUsage().rss;
    const { hits, truncated } = scanner.scanBuffer(data);
    expect(truncated).toEqual([0, 1, 2]);
    expect(hits).toHaveLength(300_000);
    expect(performance.now() - started).toBeLessThan(60_000);
    expect(process.memoryUsage().rss - before).toBeLessThan(512 << 20);
  });
});
