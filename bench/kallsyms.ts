/**
 * The kernel's kallsyms tables from a dump: the structural scan that finds them without
 * VMCOREINFO, then the decode of every symbol. The first (cold) call includes JIT warm-up and
 * reading the dump into the page cache; then the best of 3. Kernel discovery is not timed.
 * Usage: node dist/bench/kallsyms.js [dump …] (default: the linux61-clean and linux612-clean ELF fixtures).
 */
import { DumpContext } from '../src/analyses/context.js';
import { decodeKallsyms, findKallsyms } from '../src/symbols/kallsyms.js';
import { fixturePath } from '../test/support/fixtures.js';
import { coldAndBest, milliseconds, ROUNDS } from './support/timing.js';

/** __START_KERNEL_map up to the module area. */
const KERNEL_IMAGE = { from: 0xffffffff80000000n, to: 0xffffffffc0000000n };

const paths =
  process.argv.length > 2
    ? process.argv.slice(2)
    : [fixturePath('linux61-clean', 'elf'), fixturePath('linux612-clean', 'elf')];
for (const path of paths) {
  const context = new DumpContext(path);
  const { space, release } = context.kernel;
  const scan = coldAndBest(() => findKallsyms(space, KERNEL_IMAGE.from, KERNEL_IMAGE.to));
  const decode = coldAndBest(() => decodeKallsyms(space, scan.result));
  const count = decode.result.length;
  console.log(`${path}: Linux ${release}, ${count} symbols, best of ${ROUNDS}`);
  console.log(`  find tables (scan)  cold ${milliseconds(scan.cold)}   best ${milliseconds(scan.best)}`);
  console.log(
    `  decode all symbols  cold ${milliseconds(decode.cold)}   best ${milliseconds(decode.best)}   ` +
      `${(count / decode.best / 1e6).toFixed(2)} M symbols/s (cold ${(count / decode.cold / 1e6).toFixed(2)})`,
  );
  context.close();
}
