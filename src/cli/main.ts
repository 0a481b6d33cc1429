import { Command, CommanderError, Option } from 'commander';
import { DumpContext, type ContextOptions } from '../analyses/context.js';
import { exportIsf } from '../analyses/isfExport.js';
import { analyses } from '../analyses/registry.js';
import type { AnyAnalysisResult } from '../analyses/types.js';
import { runDiff } from '../monitor/diffCommand.js';
import { writeIsfFile } from '../symbols/isf.js';
import { isVmscopeError } from '../util/errors.js';
import { checkOutputPath } from '../util/files.js';
import { timedAsync } from '../util/phases.js';
import { escapeControl } from '../util/text.js';
import { parallelScanRules, parallelSearchNeedles } from '../workers/scanPool.js';
import { addAnalysisOptions, givenOptions } from './analysisOptions.js';
import { registerBatchCommand } from './batchCommand.js';
import { addPluginOption, analysisWithPlugins, registerPluginCommand } from './pluginCommand.js';
import {
  addLiveSourceOptions,
  liveTarget,
  registerSnapshotCommand,
  runOnLiveGuest,
  type LiveSourceOptions,
} from './liveCommand.js';
import { registerPolicyCommand } from './policyCommand.js';
import { registerReportCommand } from './reportCommand.js';
import { createProgress } from './progress.js';
import { renderChunks, type OutputFormat } from './render.js';
import { OutputClosedError, writeChunks } from './output.js';
import { registerWatchCommand } from './watchCommand.js';
import { queueBatchExtension, registerWorkerCommand } from './workerCommand.js';

/** Exit codes: 0 ok, 1 findings or partial results, 2 usage error or unreadable input. */
export const EXIT = { ok: 0, findings: 1, usage: 2 } as const;

interface CommonOptions {
  json?: boolean;
  ndjson?: boolean;
  progress: boolean;
  isf?: string;
  cache: boolean;
  cacheDir?: string;
}

function outputFormat(options: CommonOptions): OutputFormat {
  return options.json ? 'json' : options.ndjson ? 'ndjson' : 'table';
}

function withCommonOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--json', 'print one JSON document (an object for info, an array of rows otherwise)').conflicts(
        'ndjson',
      ),
    )
    .addOption(new Option('--ndjson', 'print one JSON object per row, one per line'))
    .option(
      '--isf <file>',
      'use this Volatility ISF (.json or .json.xz) instead of deriving symbols and types from the dump',
    )
    .option('--no-cache', 'derive the profile again instead of using the on-disk cache')
    .option(
      '--cache-dir <dir>',
      'where derived profiles are cached (default $VMSCOPE_CACHE_DIR or ~/.cache/vmscope/profiles)',
    )
    .option('--no-progress', 'never draw a progress bar (it is drawn only when stderr is a terminal)');
}

/** How every command opens a dump: the ISF and profile cache it was given, the progress bar. */
function contextOptions(options: CommonOptions, progress: ReturnType<typeof createProgress>): ContextOptions {
  return {
    onProgress: progress.report,
    ...(options.isf ? { isf: options.isf } : {}),
    cacheDir: options.cache ? options.cacheDir : false,
    parallelRuleScan: (request) => parallelScanRules(request),
    parallelNeedleSearch: (request) => parallelSearchNeedles(request),
  };
}

/** Print a result in the chosen format (streamed), its warnings on stderr; returns the exit code. */
async function printResult(result: AnyAnalysisResult, options: CommonOptions): Promise<number> {
  await writeChunks(process.stdout, renderChunks(result, outputFormat(options)));
  for (const warning of result.warnings) process.stderr.write(`vmscope: warning: ${escapeControl(warning)}\n`);
  return result.partial ? EXIT.findings : (result.exitCode ?? EXIT.ok);
}

/** Open the dump, run one analysis, print it; returns the exit code. */
async function runOnDump(
  path: string,
  options: CommonOptions,
  analysis: (context: DumpContext) => AnyAnalysisResult | Promise<AnyAnalysisResult>,
): Promise<number> {
  const progress = createProgress(options.progress);
  const context = new DumpContext(path, contextOptions(options, progress));
  try {
    const result = await timedAsync('analysis', async () => analysis(context));
    progress.stop();
    return await timedAsync('output', () => printResult(result, options));
  } finally {
    progress.stop();
    context.close();
  }
}

const DIFF_HELP = `Each dump is summarized (the task list with each process's argv, psxview's hidden processes,
the module list, hidden modules, the syscall table), then the summaries are compared:
  process         started / ended / changed (a new comm or argv: exec). A process is its pid and
                  its start time, so a reused pid shows as one process ended and another started.
                  Kernel threads are left out unless --include-kernel-threads: they come and go.
  module          loaded / unloaded (matched by name: module addresses are randomized per load)
  syscall         a table entry that points elsewhere (compared by symbol, so two boots of one
                  kernel compare despite KASLR), or a dispatcher hook that appeared or disappeared
  hidden_process  a process hidden from the task list appeared / disappeared
  hidden_module   a module hidden from the module list appeared / disappeared
  ftrace_hook, kprobe, bpf_program, netfilter_hook, inline_hook, idt_hook, proc_hook,
  cred_escalation  one of check's kernel findings appeared / disappeared (matched by subject)
  signature       with --rules: a rule's string matching in a process (or kernel/unowned memory)
                  appeared / disappeared
  socket          an inet socket opened / closed, or its state changed (ESTABLISHED → CLOSE_WAIT)
  executable_region  executable memory that appeared in a process present in both dumps
The dumps must be of the same kernel build (equal linux_banner): otherwise diff refuses, exit 2.
Exit code 1 when anything changed (or a dump was read only in part), 0 when nothing did.

Examples:
  vmscope diff guest-0900.elf guest-0905.elf
  vmscope diff guest-0900.elf guest-0905.elf --json | jq '.[] | select(.kind == "process")'`;

export function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command('vmscope')
    .description(
      'Memory introspection for raw guest memory snapshots: find the kernel, its processes and what was tampered with, from nothing but the dump.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    // Set before the subcommands are added so they inherit it: usage errors become exit code 2.
    .exitOverride()
    .addHelpText(
      'after',
      `
Dump formats are detected by content: ELF cores (QEMU dump-guest-memory, virsh dump),
LiME, raw physical memory (QEMU pmemsave, .vmem), kdump-compressed (makedumpfile, QEMU
kdump-*; the flattened form is indexed in one pass, error offsets are those of the
makedumpfile -R layout), QEMU migration streams (virsh save, migrate exec:cat), AVML, and
.zst/.gz/.xz copies of any of them (decompressed to a temporary file).

No symbol file is needed: symbols come from the kernel's own kallsyms tables and types
from its BTF, both read from the dump (and cached by kernel banner). --isf uses a
Volatility ISF instead.

Exit codes: 0 ok, 1 findings or partial results, 2 usage error or unreadable input.

Examples:
  vmscope info guest.elf                       where the kernel is, KASLR, DTB
  vmscope info guest.lime --json | jq .dtb
  vmscope kallsyms guest.elf | grep ' sys_call_table$'
  vmscope types guest.elf task_struct          a struct's layout from the dump's BTF
  vmscope isf guest.elf -o linux-6.1.json      a Volatility 3 symbol file for this kernel
  vmscope yarascan --rules iocs.yar guest.elf  YARA rules over the dump, each hit with its process
  vmscope diff before.elf after.elf            what changed in the guest between two dumps
  vmscope policy check --policy p.yaml guest.elf        what the guest does that the policy forbids
  vmscope watch --qmp guest.qmp --policy p.yaml         snapshot a running QEMU guest, alert on change
  vmscope batch /srv/dumps --run check --out results    many dumps at once (--queue: on Redis workers)
`,
    );

  for (const analysis of analyses) {
    // A command with no other argument may read a live guest (--qemu-shm) instead of a dump.
    const live = analysis.arguments.length === 0;
    const command = program
      .command(analysis.name)
      .description(analysis.description)
      .argument(live ? '[dump]' : '<dump>', 'memory dump file (raw, LiME or ELF core)');
    addAnalysisOptions(command, analysis);
    addPluginOption(command, analysis);
    if (live) addLiveSourceOptions(command);
    if (analysis.help) command.addHelpText('after', `\n${analysis.help}\n`);
    withCommonOptions(command).action(async (dump: string | undefined, ...rest: unknown[]) => {
      const positional = rest.slice(0, analysis.arguments.length);
      const options = rest[positional.length] as CommonOptions & LiveSourceOptions & Record<string, unknown>;
      const target = live ? liveTarget(dump, options) : undefined;
      // Validated before the dump is opened: a bad flag is a usage error, whatever the dump.
      const given = analysis.parseOptions(givenOptions(analysis, positional, options));
      const run = analysisWithPlugins(analysis, given, options['plugin']);
      if (target) {
        const progress = createProgress(options.progress);
        const result = await runOnLiveGuest(target, contextOptions(options, progress), run).finally(() =>
          progress.stop(),
        );
        setExitCode(await printResult(result, options));
      } else setExitCode(await runOnDump(dump!, options, run));
    });
  }
  registerSnapshotCommand(program);

  withCommonOptions(
    program
      .command('diff')
      .description(
        'what changed in the guest between two dumps of one kernel: processes, modules, syscall table, hidden processes and modules',
      )
      .argument('<before>', 'the earlier memory dump')
      .argument('<after>', 'the later memory dump of the same kernel')
      .option(
        '--include-kernel-threads',
        'also report kernel threads that started or ended (kworkers come and go on their own)',
      )
      .option(
        '--rules <file>',
        'also compare signature hits: which rule matches in which process (a physical yarascan of each dump)',
      )
      .addHelpText('after', `\n${DIFF_HELP}\n`),
  ).action(
    async (
      before: string,
      after: string,
      options: CommonOptions & { includeKernelThreads?: boolean; rules?: string },
    ) => {
      const progress = createProgress(options.progress);
      try {
        const result = await runDiff(before, after, {
          ...contextOptions(options, progress),
          includeKernelThreads: options.includeKernelThreads === true,
          ...(options.rules ? { rulesFiles: [options.rules] } : {}),
        });
        progress.stop();
        setExitCode(await printResult(result, options));
      } finally {
        progress.stop();
      }
    },
  );

  registerPolicyCommand(program, { withCommonOptions, contextOptions, printResult, setExitCode });
  registerReportCommand(program, { withCommonOptions, contextOptions, setExitCode });
  registerWatchCommand(program, { withCommonOptions, contextOptions, setExitCode });
  registerBatchCommand(program, { setExitCode }, [queueBatchExtension]); // --queue/--wait: workerCommand.ts
  registerWorkerCommand(program, setExitCode);
  registerPluginCommand(program, { withCommonOptions, runOnDump, setExitCode });

  program
    .command('isf')
    .description("write a Volatility 3 ISF (symbols + types) for the dump's kernel, derived from the dump itself")
    .argument('<dump>', 'memory dump file')
    .option('-o, --output <file>', 'write to this file instead of stdout (xz-compressed when it ends in .xz)')
    .option('--no-cache', 'derive the profile again instead of using the on-disk cache')
    .option('--cache-dir <dir>', 'where derived profiles are cached')
    .addHelpText(
      'after',
      '\nVolatility 3 picks it up from its symbols/linux/ directory (as .json or compressed .json.xz).\n',
    )
    .action(async (dump: string, options: { output?: string; cache: boolean; cacheDir?: string }) => {
      if (options.output) checkOutputPath(options.output, [dump]);
      const context = new DumpContext(dump, { cacheDir: options.cache ? options.cacheDir : false });
      try {
        const text = await exportIsf(context);
        if (options.output) writeIsfFile(options.output, text);
        else process.stdout.write(text);
        setExitCode(EXIT.ok);
      } finally {
        context.close();
      }
    });

  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version "fail" with exit code 0.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof OutputClosedError) return EXIT.ok;
    if (isVmscopeError(error)) {
      process.stderr.write(`vmscope: ${escapeControl(error.describe())}\n`);
      return EXIT.usage;
    }
    throw error;
  }
}
