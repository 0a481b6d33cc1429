/**
 * The page walk: mappings() over the kernel's whole space, and over every user process's user
 * half as buildReverseMap walks them, on one dump, three ways in the same run:
 * tables decoded by the WASM kernel (what X86AddressSpace does), by the pure-TS reference
 * decoder (same walk, same records), and the former BigInt walk over every entry
 * (test/support/bigintWalk.ts). Each way has its own spaces, so its own table caches; the
 * first (cold) run reads the tables from the dump, the best of ROUNDS more is what is compared.
 * Usage: node dist/bench/pageWalk.js [dump] (default: the linux61-clean ELF fixture).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DumpContext } from '../src/analyses/context.js';
import { readerProvider } from '../src/analyses/providers/kernel.js';
import { taskListProvider } from '../src/analyses/providers/processes.js';
import { decodeTableReference } from '../src/kernels/pageTables.js';
import { processAddressSpace } from '../src/os/linux/processSpace.js';
import { userHalfEnd } from '../src/os/linux/reverseMap.js';
import { X86AddressSpace, type MappingRun } from '../src/space/x86.js';
import { bigintMappings } from '../test/support/bigintWalk.js';
import { fixturePath } from '../test/support/fixtures.js';
import { coldAndBest, milliseconds, ROUNDS } from './support/timing.js';

interface Walked {
  space: X86AddressSpace;
  to: bigint;
}

function sameRuns(a: readonly MappingRun[], b: readonly MappingRun[]): boolean {
  return (
    a.length === b.length &&
    a.every((run, i) => {
      const other = b[i]!;
      return (
        run.virtual === other.virtual &&
        run.physical === other.physical &&
        run.length === other.length &&
        run.writable === other.writable &&
        run.user === other.user &&
        run.executable === other.executable
      );
    })
  );
}

const path = process.argv[2] ?? fixturePath('linux61-clean', 'elf');
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-bench-pagewalk-'));
const context = new DumpContext(path, { cacheDir });
try {
  const list = { ...(await context.get(taskListProvider)), reader: await context.get(readerProvider) };
  const users = list.tasks.filter((task) => !task.kernelThread && task.mm !== 0n);
  const kernel = context.kernel.space;
  const processes = users.map((task) => processAddressSpace(context.kernel, list.reader, task.mm));
  let mismatches = 0;
  console.log(`${path}: best of ${ROUNDS} after a cold run`);
  for (const [workload, targets] of [
    ['kernel space, whole', [kernel]],
    [`${users.length} user processes, user half`, processes],
  ] as const) {
    /** Fresh spaces over the same tables (so fresh table caches), each walked as the reverse map would. */
    const spaces = (decoder?: typeof decodeTableReference): Walked[] =>
      targets.map((space) => ({
        space: new X86AddressSpace(space.image, space.dtb, space.levels, decoder),
        to: space === kernel ? 1n << 64n : userHalfEnd(space),
      }));
    const walkAll = (
      walked: readonly Walked[],
      mappings: (space: X86AddressSpace, to: bigint) => Iterable<MappingRun>,
    ) => walked.flatMap(({ space, to }) => [...mappings(space, to)]);
    const wasmSpaces = spaces();
    const referenceSpaces = spaces(decodeTableReference);
    const bigintSpaces = spaces();
    const wasm = coldAndBest(() => walkAll(wasmSpaces, (space, to) => space.mappings(0n, to)));
    const reference = coldAndBest(() => walkAll(referenceSpaces, (space, to) => space.mappings(0n, to)));
    const bigint = coldAndBest(() => walkAll(bigintSpaces, (space, to) => bigintMappings(space, 0n, to)));
    const agree = sameRuns(reference.result, wasm.result) && sameRuns(bigint.result, wasm.result);
    if (!agree) mismatches++;
    console.log(`${workload}: ${wasm.result.length} runs, ${agree ? 'the same three ways' : 'DIFFERENT RUNS'}`);
    for (const [label, timing] of [
      ['WASM decode', wasm],
      ['TS reference decode', reference],
      ['BigInt walk (before)', bigint],
    ] as const) {
      console.log(
        `  ${label.padEnd(22)} cold ${milliseconds(timing.cold)}   best ${milliseconds(timing.best)}   ×${(timing.best / wasm.best).toFixed(2)} the WASM decode's time`,
      );
    }
  }
  if (mismatches > 0) process.exitCode = 1;
} finally {
  context.close();
  rmSync(cacheDir, { recursive: true, force: true });
}
