import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { communityInputs, matchSummary } from '../../scripts/ruleInputs.mjs';
import { openImage } from '../../src/image/open.js';
import { compileSource } from '../../src/rules/compile.js';
import { RuleScanner } from '../../src/rules/scanner.js';
import { bufferUnit, imageUnit } from '../../src/rules/unit.js';
import { fixturePath, sharedFixtures } from '../support/fixtures.js';

/**
 * Equivalence with the yara CLI on a public rule set vmscope was not written for (the shared
 * community set: 1,475 rules that use uint16(0) headers, base64, for-in loops, rule sets …):
 * on pseudo-random bytes, on files of PE/ELF headers and on two real guests' raw memory, the
 * (rule, string, offset) set equals `yara -s`'s. The goldens are summaries (matches per rule and
 * a sha256 of the sorted matches; `node scripts/yara-golden.mjs --community` regenerates them).
 */
const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden', 'community');
const REGENERATE = 'regenerate with `node scripts/yara-golden.mjs --community` (needs yara: apt-get install yara)';
const rulesPath = join(sharedFixtures, '../rules/community/community.yar');
const source = readFileSync(rulesPath, 'utf8');

function golden(name: string): unknown {
  const {
    yara: _yara,
    input: _input,
    ...summary
  } = JSON.parse(readFileSync(join(goldenDir, `${name}.json`), 'utf8')) as Record<string, unknown>;
  return summary;
}

describe('the community rule set', () => {
  const rules = compileSource(source, rulesPath);
  // One scanner for every input: the 4 MiB window keeps each input's chunking realistic.
  const scanner = RuleScanner.create(rules);

  it('compiles entirely', () => {
    const declared = source.match(/^\s*(?:(?:private|global)\s+)*rule\s+\w+/gm)!.length;
    // A few declarations sit inside comments: every rule yara compiles is here.
    expect(rules.rules.length).toBeGreaterThan(declared - 20);
    expect(rules.rules.length).toBeGreaterThan(1400);
  });

  it.each(Object.entries(communityInputs()))('matches as yara -s on %s', (name, bytes) => {
    const data = new Uint8Array(bytes);
    const matches = scanner.evaluate(scanner.scanBuffer(data).hits, data.length, bufferUnit(data));
    expect(matchSummary(matches), REGENERATE).toEqual(golden(name.replace(/\.bin$/, '')));
  });

  it.each(['linux61-clean', 'linux612-clean'])(
    'matches as yara -s on the raw memory of %s',
    (name) => {
      const image = openImage(fixturePath(name, 'raw'));
      try {
        const result = scanner.scanImage(image);
        const matches = scanner.evaluate(result.hits, image.totalBytes, imageUnit(image));
        expect(matchSummary(matches), REGENERATE).toEqual(golden(name));
      } finally {
        image.close();
      }
    },
    1_800_000,
  );
});
