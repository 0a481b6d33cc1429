#!/usr/bin/env node
// Regenerates test/rules/golden/<input>.txt: the output of `yara -s -r corpus.yar <input>` for
// each input (*.bin) of test/rules/corpus, which test/rules/golden.test.ts compares vmscope's
// reference matcher with. Needs the yara CLI (Debian: apt-get install yara).
//
// `--write-inputs` first rewrites the crafted inputs (text.bin, hex.bin, random.bin) and, when
// the shared fixtures are present, memory.bin: 48 KiB of a real guest around its kernel banner.
//
// `--community` instead regenerates test/rules/golden/community/*.json: a summary (matches per
// rule, sha256 of the sorted matches; see scripts/ruleInputs.mjs) of `yara -s` with the shared
// community rule set on 1 MiB of pseudo-random bytes, two files of PE/ELF headers and the raw
// linux61-clean and linux612-clean dumps (minutes each: yara is slow on this set's regexes).
// `--yara-output NAME=FILE` takes a saved `yara -s` output for input NAME instead of running yara.
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { communityInputs, matchSummary, yaraMatches } from './ruleInputs.mjs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const rulesDir = join(repoRoot, 'test/rules');
const corpusDir = join(rulesDir, 'corpus');
const goldenDir = join(rulesDir, 'golden');

if (process.argv.includes('--write-inputs')) writeInputs();

let version;
try {
  version = execFileSync('yara', ['--version'], { encoding: 'utf8' }).trim();
} catch {
  console.error('yara-golden: the yara CLI is not installed (Debian: apt-get install yara)');
  process.exit(2);
}

if (process.argv.includes('--community')) {
  writeCommunityGoldens();
  process.exit(0);
}

mkdirSync(goldenDir, { recursive: true });
const inputs = readdirSync(corpusDir)
  .filter((name) => name.endsWith('.bin'))
  .sort();
for (const input of inputs) {
  // Run inside the corpus folder so each rule line names the input as `name.bin`, not a path.
  const output = execFileSync('yara', ['-s', '-r', 'corpus.yar', input], {
    cwd: corpusDir,
    encoding: 'latin1',
    stdio: ['ignore', 'pipe', 'ignore'],
    maxBuffer: 64 << 20,
  });
  writeFileSync(join(goldenDir, input.replace(/\.bin$/, '.txt')), output, 'latin1');
  console.log(
    `${input}: ${output.split('\n').filter((line) => line.startsWith('0x')).length} string matches (yara ${version})`,
  );
}

function writeCommunityGoldens() {
  const rules = resolve(repoRoot, '../shared/rules/community/community.yar');
  const outputDir = join(goldenDir, 'community');
  mkdirSync(outputDir, { recursive: true });
  const saved = new Map(
    process.argv.flatMap((arg, i) => (process.argv[i - 1] === '--yara-output' ? [arg.split('=')] : [])),
  );
  const temporary = join(repoRoot, '.cache', 'rule-inputs');
  mkdirSync(temporary, { recursive: true });
  const inputs = Object.entries(communityInputs()).map(([name, bytes]) => {
    writeFileSync(join(temporary, name), bytes);
    return [name.replace(/\.bin$/, ''), join(temporary, name)];
  });
  for (const name of ['linux61-clean', 'linux612-clean']) {
    const dump = rawFixture(name);
    if (dump) inputs.push([name, dump]);
    else console.error(`yara-golden: ${name} skipped (run the test suite once to decompress its raw fixture)`);
  }
  for (const [name, path] of inputs) {
    const output = saved.has(name)
      ? readFileSync(saved.get(name), 'latin1')
      : execFileSync('yara', ['-s', '-w', rules, path], {
          encoding: 'latin1',
          stdio: ['ignore', 'pipe', 'ignore'],
          maxBuffer: 1 << 30,
        });
    const summary = { yara: version, input: name, ...matchSummary(yaraMatches(output)) };
    writeFileSync(join(outputDir, `${name}.json`), JSON.stringify(summary, null, 1) + '\n');
    console.log(`${name}: ${Object.keys(summary.rules).length} rules, ${summary.matches} matches (yara ${version})`);
  }
}

/** The decompressed raw dump of a fixture (the test suite decompresses it into .cache once), or undefined. */
function rawFixture(name) {
  const manifestPath = resolve(repoRoot, '../shared/fixtures/MANIFEST.json');
  const entry = existsSync(manifestPath)
    ? JSON.parse(readFileSync(manifestPath, 'utf8')).snapshots[name]?.formats.raw
    : undefined;
  const dump = entry && join(repoRoot, '.cache/fixtures', `${entry.sha256.slice(0, 16)}-${name}.raw`);
  return dump && existsSync(dump) ? dump : undefined;
}

/** Inputs that trigger, and narrowly miss, each rule of corpus.yar. */
/**
 * Parts of chained hex strings (jumps over 200 bytes) at distances that test which chains yara
 * completes: several heads before one tail, tails too close, past a bounded gap, a three-part
 * chain with a middle part in reach of only some heads, a head whose only tail comes much later.
 */
function chainsInput() {
  const data = Buffer.alloc(12000, 0x2e);
  const put = (offset, bytes) => Buffer.from(bytes).copy(data, offset);
  for (const offset of [10, 100, 905, 2000]) put(offset, [0x13, 0x37]);
  for (const offset of [500, 900, 910, 2005, 11000]) put(offset, [0x73, 0x31]);
  put(3000, [0xaa, 0xbb]);
  for (const offset of [3002 + 150, 3002 + 260, 3002 + 299, 3002 + 400]) put(offset, [0xcc, 0xdd]);
  for (const offset of [5000, 6000, 7500]) put(offset, [0x11, 0x22]);
  for (const offset of [5002 + 250, 7502 + 210]) put(offset, [0x33, 0x44]);
  for (const offset of [5254 + 100, 5254 + 350, 7714 + 301]) put(offset, [0x55, 0x66]);
  return data;
}

function writeInputs() {
  const latin = (text) => Buffer.from(text, 'latin1');
  const wide = (text) => Buffer.from(text, 'utf16le');
  const xor = (bytes, key) => Buffer.from(bytes.map((byte) => byte ^ key));
  const text = Buffer.concat([
    latin('VMSCOPE-MARKER\n'),
    latin('col1\tcol2 | say "hi" | C:\\Windows | \x01\x02\x03ABC | line1\nline2 | line1Xline2\n'),
    latin('MixedCase mixedcase MIXEDCASE mIxEdCaSe\n'),
    wide('WideText'),
    latin(' '),
    wide('widecase'),
    wide('WIDECASE'),
    latin(' BothForms '),
    wide('BothForms'),
    latin('\n'),
    latin('word words sword (word) word_ 1word word-\n'),
    wide('wword'),
    latin(' '),
    wide('xwword'),
    latin(' '),
    wide('wwords'),
    latin(' '),
    wide('wword'),
    latin('\n'),
    xor(latin('XorSecret'), 0x20),
    latin(' '),
    xor(latin('XorSecret'), 0x05),
    latin(' '),
    xor(latin('XorSecret'), 0x7f),
    latin(' XorSecret\n'),
    xor(wide('XorWide'), 0x41),
    latin(' '),
    xor(latin('XorWide'), 0x41),
    latin('\n'),
    latin('VMSCOPE-MARKER again, VMSCOPE-lower\n'),
    latin('cat dogs walk, cats run, concat cat. dog run\n'),
    latin(
      'id=12345 id=12 user@example.com key   value [bracketed] [] abbbc ac xxxy color colour zzzzzz qqqr qr <a><b>\n',
    ),
    latin('END'),
  ]);
  // prettier-ignore
  const hex = Buffer.from([
    0x11, 0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x22, 0xde, 0xad, 0x00, 0xef, 0x33,
    0xc1, 0xa5, 0x07, 0xc2, 0xa5, 0x17, 0xd1, 0xa5, 0x07, 0x44,
    0xca, 0xfe, 1, 2, 3, 4, 0xba, 0xbe, 0x55, 0xca, 0xfe, 1, 2, 0xba, 0xbe, 0x66, 0xca, 0xfe, 1, 0xba, 0xbe, 0x77,
    0x13, 0x37, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x73, 0x31, 0x88, 0x13, 0x37, 1, 2, 0x73, 0x31, 0x42, 0x42, 0x99,
    0xf0, 0x0d, 1, 2, 0xff, 0xf0, 0x0d, 3, 4, 5, 0xff, 0xf0, 0x0d, 6, 0xaa, 0xff, 0xf0, 0x0d, 7, 8, 0xff,
    0xab, 0xcd, 0x11, 0x99, 0xab, 0xcd, 0x22, 0x99, 0xab, 0xef, 0x99, 0xab, 0xcd, 0x33, 0x99,
    ...latin('VMSCOPE'), ...Array(16).fill(0), 0x48, ...Array(8).fill(0), 0x48, 0x48,
  ]);
  let state = 0x12345678; // xorshift32: the same "random" bytes every time
  const random = Buffer.alloc(4096).map(() => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state & 0xff;
  });
  writeFileSync(join(corpusDir, 'text.bin'), text);
  writeFileSync(join(corpusDir, 'hex.bin'), hex);
  writeFileSync(join(corpusDir, 'random.bin'), random);
  writeFileSync(join(corpusDir, 'chains.bin'), chainsInput());
  writeMemorySlice();
}

/** 48 KiB at physical 0x2a00000 of the linux61-clean raw dump (decompressed by the test suite into .cache). */
function writeMemorySlice() {
  const dump = rawFixture('linux61-clean');
  if (!dump) {
    console.error(
      'yara-golden: memory.bin kept as is (run the test suite once to decompress the linux61-clean raw fixture)',
    );
    return;
  }
  const slice = Buffer.alloc(48 * 1024);
  const fd = openSync(dump, 'r');
  readSync(fd, slice, 0, slice.length, 0x2a00000);
  closeSync(fd);
  writeFileSync(join(corpusDir, 'memory.bin'), slice);
}
