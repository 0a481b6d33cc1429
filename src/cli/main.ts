import { writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { DumpContext } from '../analyses/context.js';
import { exportIsf } from '../analyses/isfExport.js';
import { analyses } from '../analyses/registry.js';
import type { AnalysisResult } from '../analyses/types.js';
import { isVmscopeError } from '../util/errors.js';
import { createProgress } from './progress.js';
import { render, type OutputFormat } from './render.js';

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
    .addOption(new Option('--json', 'print one JSON document (an object for info, an array of rows otherwise)').conflicts('ndjson'))
    .addOption(new Option('--ndjson', 'print one JSON object per row, one per line'))
    .option('--isf <file>', 'use this Volatility ISF (.json or .json.xz) instead of deriving symbols and types from the dump')
    .option('--no-cache', 'derive the profile again instead of using the on-disk cache')
    .option('--cache-dir <dir>', 'where derived profiles are cached (default $VMSCOPE_CACHE_DIR or ~/.cache/vmscope/profiles)')
    .option('--no-progress', 'never draw a progress bar (it is drawn only when stderr is a terminal)');
}

/** Open the dump, run one analysis, print it; returns the exit code. */
async function runOnDump(path: string, options: CommonOptions, analysis: (context: DumpContext) => AnalysisResult | Promise<AnalysisResult>): Promise<number> {
  const progress = createProgress(options.progress);
  const context = new DumpContext(path, {
    onProgress: progress.report,
    ...(options.isf ? { isf: options.isf } : {}),
    cacheDir: options.cache ? options.cacheDir : false,
  });
  try {
    const result = await analysis(context);
    progress.stop();
    process.stdout.write(render(result, outputFormat(options)));
    for (const warning of result.warnings) process.stderr.write(`vmscope: warning: ${warning}\n`);
    return result.partial ? EXIT.findings : (result.exitCode ?? EXIT.ok);
  } finally {
    progress.stop();
    context.close();
  }
}

export function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command('vmscope')
    .description('Memory introspection for raw guest memory snapshots: find the kernel, its processes and what was tampered with, from nothing but the dump.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    // Set before the subcommands are added so they inherit it: usage errors become exit code 2.
    .exitOverride()
    .addHelpText(
      'after',
      `
Dump formats are detected by content: ELF cores (QEMU dump-guest-memory, virsh dump),
LiME, and raw physical memory (QEMU pmemsave, .vmem). Compressed dumps must be
decompressed first (zstd -d --long=31 dump.elf.zst).

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
`,
    );

  for (const analysis of analyses) {
    const command = program.command(analysis.name).description(analysis.description).argument('<dump>', 'memory dump file (raw, LiME or ELF core)');
    for (const argument of analysis.arguments ?? []) command.argument(`<${argument.name}>`, argument.description);
    for (const option of analysis.options ?? []) {
      if (option.parse) command.option(option.flags, option.description, option.parse);
      else command.option(option.flags, option.description);
    }
    if (analysis.help) command.addHelpText('after', `\n${analysis.help}\n`);
    withCommonOptions(command).action(async (dump: string, ...rest: unknown[]) => {
      const positional = rest.slice(0, analysis.arguments?.length ?? 0);
      const options = rest[positional.length] as CommonOptions & Record<string, unknown>;
      const args: Record<string, unknown> = {};
      analysis.arguments?.forEach((argument, i) => (args[argument.name] = positional[i]));
      for (const option of analysis.options ?? []) args[option.key] = options[option.key];
      setExitCode(await runOnDump(dump, options, (context) => analysis.run(context, args)));
    });
  }

  program
    .command('isf')
    .description('write a Volatility 3 ISF (symbols + types) for the dump\'s kernel, derived from the dump itself')
    .argument('<dump>', 'memory dump file')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .option('--no-cache', 'derive the profile again instead of using the on-disk cache')
    .option('--cache-dir <dir>', 'where derived profiles are cached')
    .addHelpText('after', '\nVolatility 3 picks it up from its symbols/linux/ directory (as .json or compressed .json.xz).\n')
    .action(async (dump: string, options: { output?: string; cache: boolean; cacheDir?: string }) => {
      const context = new DumpContext(dump, { cacheDir: options.cache ? options.cacheDir : false });
      try {
        const text = await exportIsf(context);
        if (options.output) writeFileSync(options.output, text);
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
    if (isVmscopeError(error)) {
      process.stderr.write(`vmscope: ${error.describe()}\n`);
      return EXIT.usage;
    }
    throw error;
  }
}
