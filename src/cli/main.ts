import { Command, CommanderError, Option } from 'commander';
import { DumpContext } from '../analyses/context.js';
import { info } from '../analyses/info.js';
import type { AnalysisResult } from '../analyses/types.js';
import { isVmscopeError } from '../util/errors.js';
import { createProgress } from './progress.js';
import { render, type OutputFormat } from './render.js';

/** Exit codes: 0 ok, 1 findings or partial results, 2 usage error or unreadable input. */
export const EXIT = { ok: 0, findings: 1, usage: 2 } as const;

interface OutputOptions {
  json?: boolean;
  ndjson?: boolean;
  progress: boolean;
}

function outputFormat(options: OutputOptions): OutputFormat {
  return options.json ? 'json' : options.ndjson ? 'ndjson' : 'table';
}

function withOutputOptions(command: Command): Command {
  return command
    .addOption(new Option('--json', 'print one JSON document (an object for info, an array of rows otherwise)').conflicts('ndjson'))
    .addOption(new Option('--ndjson', 'print one JSON object per row, one per line'))
    .option('--no-progress', 'never draw a progress bar (it is drawn only when stderr is a terminal)');
}

/** Run an analysis over one dump and print it; returns the exit code. */
function runAnalysis(path: string, options: OutputOptions, analysis: (context: DumpContext) => AnalysisResult): number {
  const progress = createProgress(options.progress);
  const context = new DumpContext(path, { onProgress: progress.report });
  try {
    const result = analysis(context);
    progress.stop();
    process.stdout.write(render(result, outputFormat(options)));
    for (const warning of result.warnings) process.stderr.write(`vmscope: warning: ${warning}\n`);
    return result.partial ? EXIT.findings : EXIT.ok;
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

Exit codes: 0 ok, 1 findings or partial results, 2 usage error or unreadable input.

Examples:
  vmscope info guest.elf                 where the kernel is, KASLR, DTB
  vmscope info guest.lime --json | jq .dtb
`,
    );

  withOutputOptions(
    program
      .command('info')
      .description('identify the dump format, the kernel release and banner, KASLR slide, phys_base, DTB and direct-map base')
      .argument('<dump>', 'memory dump file (raw, LiME or ELF core)')
      .addHelpText(
        'after',
        `
The kernel is found from the VMCOREINFO note the kernel keeps in RAM; without it, from the
"Linux version" banner and the kernel's own page tables. Every value is checked by
translating the kernel's text through the DTB it reports.`,
      ),
  ).action((dump: string, options: OutputOptions) => setExitCode(runAnalysis(dump, options, info)));

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
