import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { DumpContext, type ContextOptions } from '../analyses/context.js';
import type { DiffOptions } from '../monitor/diff.js';
import { summarizeDump } from '../monitor/summarize.js';
import type { SnapshotSummary } from '../monitor/snapshot.js';
import type { WatchAlert } from '../monitor/watch.js';
import { buildDiffReport, buildDumpReport, buildSnapshotReport } from './build.js';
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

/**
 * A watched snapshot's report, from its summary (the dump itself may be gone) and the alerts it
 * raised, as `DIR/<capture time>-<dump name>.html`; returns the file written.
 */
export function writeSnapshotReport(
  directory: string,
  summary: SnapshotSummary,
  alerts: readonly WatchAlert[],
): string {
  mkdirSync(directory, { recursive: true });
  const name = `${summary.capturedAt.toISOString()}-${basename(summary.path)}`.replace(/[^A-Za-z0-9._-]/g, '_');
  const path = join(directory, `${name}.html`);
  writeReport(path, buildSnapshotReport(summary, alerts));
  return path;
}

/** `watch --report-dir DIR`: a watch's onSnapshotJudged that writes the report of each snapshot that raised an alert. */
export function reportAlertedSnapshots(directory: string) {
  return (summary: SnapshotSummary, alerts: readonly WatchAlert[]): void => {
    if (alerts.length > 0) writeSnapshotReport(directory, summary, alerts);
  };
}
