import { basename } from 'node:path';
import { DumpContext, type ContextOptions } from '../analyses/context.js';
import type { DiffOptions } from '../monitor/diff.js';
import { summarizeDump } from '../monitor/summarize.js';
import { buildDiffReport, buildDumpReport } from './build.js';
import { writeReport } from './html.js';
import type { DiffReport, DumpReport, IndexEntry } from './model.js';

/** `vmscope report DUMP -o FILE`: the dump analysed once, its report written; returns what the page shows. */
export async function writeDumpReport(
  dump: string,
  output: string,
  contextOptions: ContextOptions = {},
  options: { readonly rulesFile?: string } = {},
): Promise<DumpReport> {
  const context = new DumpContext(dump, contextOptions);
  try {
    const report = await buildDumpReport(context, options);
    writeReport(output, report);
    return report;
  } finally {
    context.close();
  }
}

/** `vmscope report --diff A B -o FILE`: the monitor's diff of two dumps of one kernel, as a page. */
export async function writeDiffReport(
  before: string,
  after: string,
  output: string,
  contextOptions: ContextOptions = {},
  options: DiffOptions = {},
): Promise<DiffReport> {
  const report = buildDiffReport(
    await summarizeDump(before, contextOptions),
    await summarizeDump(after, contextOptions),
    options,
  );
  writeReport(output, report);
  return report;
}

/** A batch's `index.html`: one line per dump, linking its report (which sits beside the index). */
export function writeReportIndex(
  path: string,
  dumps: ReadonlyArray<Omit<IndexEntry, 'report'> & { report: string | null }>,
): void {
  writeReport(path, {
    type: 'index',
    generatedAt: new Date().toISOString(),
    dumps: dumps.map((dump) => ({ ...dump, report: dump.report === null ? null : basename(dump.report) })),
  });
}
