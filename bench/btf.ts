/**
 * Types from the dump alone: carve the vmlinux BTF out of physical memory, parse it, convert it
 * to Volatility ISF types. Usage: node dist/bench/btf.js [dump] (default: the linux61-clean ELF
 * fixture). "cold" is each step's first run in this process (JIT not warm; the dump itself may
 * already be in the page cache), "best" the best of the next three.
 */
import { openImage } from '../src/image/open.js';
import { MultiNeedleSearcher } from '../src/kernels/multiNeedle.js';
import { btfToIsf, carveVmlinuxBtf, parseBtf } from '../src/symbols/btf.js';
import { fixturePath } from '../test/support/fixtures.js';
import { coldAndBest as measure } from './support/timing.js';

const path = process.argv[2] ?? fixturePath('linux61-clean', 'elf');
const image = openImage(path);
console.log(
  `${path}: ${image.format}, ${(image.totalBytes / 2 ** 20).toFixed(0)} MiB in ${image.ranges.length} ranges`,
);

const search = measure(() =>
  MultiNeedleSearcher.create([Uint8Array.from([0x9f, 0xeb, 0x01, 0x00])]).searchImage(image),
);
const carve = measure(() => carveVmlinuxBtf(image));
const { bytes, physical } = carve.result;
const parse = measure(() => parseBtf(bytes, { path, physical }));
const convert = measure(() => btfToIsf(parse.result));
image.close();

const isf = convert.result;
const row = (step: string, timing: { cold: number; best: number }, what: string) =>
  console.log(`${step.padEnd(44)} cold ${timing.cold.toFixed(3)} s   best ${timing.best.toFixed(3)} s   ${what}`);
row('  of which: header search (WASM)', search, `${search.result.length} candidate headers`);
row('carve (search, read, validating parse)', carve, `${bytes.length} bytes at 0x${physical.toString(16)}`);
row('parse', parse, `${parse.result.count} types`);
row(
  'convert to ISF',
  convert,
  `${Object.keys(isf.user_types).length} user types, ${Object.keys(isf.enums).length} enums, ${Object.keys(isf.base_types).length} base types`,
);
// The carve hands back its parse, so deriving types is carve + convert.
row('derive (carve + convert)', { cold: carve.cold + convert.cold, best: carve.best + convert.best }, '');
