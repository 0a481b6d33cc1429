import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileSource } from '../../src/rules/compile.js';
import { matchReference, type RuleMatch } from '../../src/rules/reference.js';
import { RuleScanner } from '../../src/rules/scanner.js';
import { parseYaraOutput, yaraHexData, yaraTextData } from './yaraOutput.js';

/**
 * Equivalence with the yara CLI: for every input in corpus/, the reference matcher finds
 * exactly the rules and (rule, string, offset) triples `yara -s -r corpus.yar input` printed,
 * with the same data. yara is not needed here: its output is stored in golden/.
 *
 * The corpus keeps to alternations whose alternatives cannot both match at one offset: there
 * yara verifies from each alternative's atom and keeps whichever verification lands first, so
 * `/(ab|a)/` on "ab" prints "a" where the reference's priority order gives "ab".
 */
const rulesDir = dirname(fileURLToPath(import.meta.url));
const corpusDir = join(rulesDir, 'corpus');
/** yara keeps at most this many bytes of a match's data (YR_CONFIG_MAX_MATCH_DATA's default). */
const MAX_MATCH_DATA = 512;
const REGENERATE = 'regenerate the golden files with `node scripts/yara-golden.mjs` (needs yara: apt-get install yara)';

const rules = compileSource(readFileSync(join(corpusDir, 'corpus.yar'), 'utf8'), 'corpus.yar');
const inputs = readdirSync(corpusDir)
  .filter((name) => name.endsWith('.bin'))
  .sort();

describe('corpus', () => {
  it('covers at least 40 rules and has a golden file per input', () => {
    expect(rules.rules.length).toBeGreaterThanOrEqual(40);
    const goldens = readdirSync(join(rulesDir, 'golden'))
      .filter((name) => name.endsWith('.txt'))
      .sort();
    expect(goldens, REGENERATE).toEqual(inputs.map((input) => input.replace(/\.bin$/, '.txt')));
  });
});

/** The reference matcher, and the scanner (WASM prefilter + verification) through a 64 KiB window so the inputs cross chunk edges. */
const matchers: ReadonlyArray<readonly [string, (data: Uint8Array) => RuleMatch[]]> = [
  ['reference', (data) => matchReference(rules, data)],
  [
    'scanner',
    (data) => {
      const scanner = RuleScanner.create(rules, { windowBytes: 64 * 1024 });
      return scanner.evaluate(scanner.scanBuffer(data).hits, data.length);
    },
  ],
];

describe.each(matchers.flatMap(([matcher, match]) => inputs.map((input) => [input, matcher, match] as const)))(
  'yara -s equivalence on %s (%s)',
  (input, _matcher, match) => {
    const data = new Uint8Array(readFileSync(join(corpusDir, input)));
    const golden = parseYaraOutput(readFileSync(join(rulesDir, 'golden', input.replace(/\.bin$/, '.txt')), 'latin1'));
    const ours = match(data);

    it('matches the same rules', () => {
      expect(ours.map((match) => match.rule).sort(), REGENERATE).toEqual(golden.map((report) => report.rule).sort());
    });

    it('reports the same string offsets and data', () => {
      const kindOf = new Map(
        rules.rules.flatMap((rule) =>
          rule.strings.map((string) => [`${rule.name} ${string.id}`, string.kind] as const),
        ),
      );
      const render = (rule: string, string: string, offset: number, data: string) => {
        const key = `${rule} ${string}`;
        return `${key} 0x${offset.toString(16)} ${data}`;
      };
      const expected = golden.flatMap((report) =>
        report.strings.map((match) => render(report.rule, match.string, match.offset, match.data)),
      );
      const actual = ours.flatMap((match) =>
        match.strings.map((hit) => {
          const bytes = data.subarray(hit.offset, hit.offset + Math.min(hit.length, MAX_MATCH_DATA));
          const shown = kindOf.get(`${hit.rule} ${hit.string}`) === 'hex' ? yaraHexData(bytes) : yaraTextData(bytes);
          return render(hit.rule, hit.string, hit.offset, shown);
        }),
      );
      expect(actual.sort(), REGENERATE).toEqual(expected.sort());
    });
  },
);
