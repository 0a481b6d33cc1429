import type { Command } from 'commander';
import type { ContextOptions, DumpContext } from '../analyses/context.js';
import type { AnyAnalysisResult } from '../analyses/types.js';
import { analyseLiveGuest } from '../monitor/liveGuest.js';
import { writeLiveSnapshot } from '../monitor/liveSnapshot.js';
import { QmpClient } from '../monitor/qmp.js';
import { VmscopeError } from '../util/errors.js';
import { checkOutputPath } from '../util/files.js';

/** The live source of one-shot commands: a QEMU guest's shared RAM file and its QMP socket. */
export interface LiveSourceOptions {
  qemuShm?: string;
  qmp?: string;
  consistent?: boolean;
}

/** `--qemu-shm FILE --qmp SOCKET [--consistent]`: analyse a running guest instead of a dump. */
export function addLiveSourceOptions(command: Command): Command {
  return command
    .option(
      '--qemu-shm <file>',
      "a running QEMU guest's shared RAM file (memory-backend-file,share=on), instead of a dump",
    )
    .option('--qmp <socket>', "with --qemu-shm: the guest's QMP socket (its RAM layout, registers, pause)")
    .option('--consistent', 'with --qemu-shm: pause the guest while it is read (the pause is reported on stderr)');
}

/** The live target the options name, or undefined for a dump; a half-given live source is a usage error. */
export function liveTarget(dump: string | undefined, options: LiveSourceOptions) {
  if (options.qemuShm === undefined) {
    if (options.qmp !== undefined || options.consistent)
      throw new VmscopeError('USAGE', '--qmp and --consistent read a live guest: give --qemu-shm too');
    if (dump === undefined) throw new VmscopeError('USAGE', 'give a dump file, or --qemu-shm FILE --qmp SOCKET');
    return undefined;
  }
  if (dump !== undefined) throw new VmscopeError('USAGE', 'give a dump file or --qemu-shm, not both');
  if (options.qmp === undefined)
    throw new VmscopeError('USAGE', '--qemu-shm needs --qmp SOCKET: the RAM layout is asked of QEMU, never assumed');
  return { ramPath: options.qemuShm, qmpSocket: options.qmp, consistent: options.consistent === true };
}

/** One analysis of the live guest; the pause (with --consistent) is said on stderr. */
export async function runOnLiveGuest(
  target: NonNullable<ReturnType<typeof liveTarget>>,
  contextOptions: ContextOptions,
  analysis: (context: DumpContext) => AnyAnalysisResult | Promise<AnyAnalysisResult>,
): Promise<AnyAnalysisResult> {
  const { value, pausedMs } = await analyseLiveGuest(target, contextOptions, async (context) => analysis(context));
  if (pausedMs !== undefined) process.stderr.write(`vmscope: the guest was paused for ${pausedMs.toFixed(1)} ms\n`);
  return value;
}

/** `vmscope snapshot --qemu-shm FILE --qmp SOCKET -o dump.elf`. */
export function registerSnapshotCommand(program: Command): void {
  program
    .command('snapshot')
    .description('write an ELF core of a running QEMU guest from its shared RAM file, in one short pause')
    .requiredOption('--qemu-shm <file>', "the guest's shared RAM file (memory-backend-file,share=on)")
    .requiredOption('--qmp <socket>', "the guest's QMP socket")
    .requiredOption('-o, --output <file>', 'the ELF core to write')
    .action(async (options: { qemuShm: string; qmp: string; output: string }) => {
      checkOutputPath(options.output, [options.qemuShm]);
      const client = await QmpClient.connect(options.qmp);
      try {
        const result = await writeLiveSnapshot(client, options.qemuShm, options.output);
        process.stderr.write(
          `vmscope: wrote ${result.output} (${result.bytes} bytes, ${result.blocks} memory blocks); the guest was paused for ${result.pausedMs.toFixed(1)} ms\n`,
        );
      } finally {
        await client.close();
      }
    });
}
