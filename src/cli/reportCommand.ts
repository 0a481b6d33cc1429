import type { Command } from 'commander';
import type { ContextOptions } from '../analyses/context.js';
import { writeDiffReport, writeDumpReport } from '../report/reports.js';
import { VmscopeError } from '../util/errors.js';
import { checkOutputPath } from '../util/files.js';
import { escapeControl } from '../util/text.js';
import { createProgress } from './progress.js';

interface ReportCliOptions {
  output: string;
  json?: boolean;
  diff?: boolean;
  rules?: string;
  includeKernelThreads?: boolean;
  progress: boolean;
  isf?: string;
  cache: boolean;
  cacheDir?: string;
}

const REPORT_HELP = `The report is one HTML file that opens in any browser with no server and no network: the
data embedded as JSON, the page's script and style inline, a Content-Security-Policy that lets
nothing else run. Verdict first (kernel, capture time, source, check's findings with evidence
and owner), then the process tree (hidden, fileless and injected processes flagged), the
environment, network connections (table and graph), modules and hooks, YARA hits with their
owners (--rules), a physical memory map (hits, carved tasks, injected code), carved tasks and a
timeline (process starts, kernel log). Tables sort (click a heading) and filter.
--json also prints the report's data (what the page shows) on stdout.

Examples:
  vmscope report guest.elf -o report.html
  vmscope report guest.elf -o report.html --rules iocs.yar
  vmscope report --diff guest-0900.elf guest-0905.elf -o diff.html`;

export interface ReportCommandHelpers {
  readonly withCommonOptions: (command: Command) => Command;
  readonly contextOptions: (options: ReportCliOptions, progress: ReturnType<typeof createProgress>) => ContextOptions;
  readonly setExitCode: (code: number) => void;
}

/** `vmscope report DUMP -o FILE` and `vmscope report --diff A B -o FILE`. */
export function registerReportCommand(program: Command, helpers: ReportCommandHelpers): void {
  helpers
    .withCommonOptions(
      program
        .command('report')
        .description('write a self-contained HTML report of a dump (or, with --diff, of what changed between two)')
        .argument('<dumps...>', 'the dump; with --diff, the earlier and the later dump')
        .requiredOption('-o, --output <file>', 'the HTML file to write')
        .option('--diff', 'report what changed from the first dump to the second (same kernel build)')
        .option('--rules <file>', 'YARA rules: every hit with its owner, and on the memory map')
        .option('--include-kernel-threads', 'with --diff: also report kernel threads that started or ended')
        .addHelpText('after', `\n${REPORT_HELP}\n`),
    )
    .action(async (dumps: string[], options: ReportCliOptions) => {
      const expected = options.diff ? 2 : 1;
      if (dumps.length !== expected)
        throw new VmscopeError(
          'USAGE',
          `report ${options.diff ? '--diff takes two dumps' : 'takes one dump'}, got ${dumps.length}`,
        );
      checkOutputPath(options.output, dumps);
      const progress = createProgress(options.progress);
      try {
        const context = helpers.contextOptions(options, progress);
        const report = options.diff
          ? await writeDiffReport(dumps[0]!, dumps[1]!, options.output, context, {
              includeKernelThreads: options.includeKernelThreads === true,
            })
          : await writeDumpReport(
              dumps[0]!,
              options.output,
              context,
              options.rules ? { rulesFile: options.rules } : {},
            );
        progress.stop();
        if (options.json) process.stdout.write(`${JSON.stringify(report)}\n`);
        for (const warning of report.warnings) process.stderr.write(`vmscope: warning: ${escapeControl(warning)}\n`);
        helpers.setExitCode(0);
      } finally {
        progress.stop();
      }
    });
}
