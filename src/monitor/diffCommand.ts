import type { ContextOptions } from '../analyses/context.js';
import type { AnalysisResult, Column } from '../analyses/types.js';
import { diffSnapshots, type DiffOptions } from './diff.js';
import { isPartialSummary, summarizeDump, type SummarizeOptions } from './summarize.js';

export const diffColumns: readonly Column[] = [
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'change', kind: 'text', title: 'Change' },
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'detail', kind: 'text', title: 'Detail' },
];

export interface RunDiffOptions extends ContextOptions, DiffOptions, SummarizeOptions {}

/**
 * `diff A B`: what changed in the guest from dump A to dump B, one row per change. The dumps are
 * read one after the other (never both open), and the result is like a findings analysis: exit
 * code 1 when anything changed, as diff(1) does, 0 when nothing did.
 */
export async function runDiff(pathA: string, pathB: string, options: RunDiffOptions = {}): Promise<AnalysisResult> {
  const before = await summarizeDump(pathA, options, options);
  const after = await summarizeDump(pathB, options, options);
  const rows = diffSnapshots(before, after, options);
  const warnings = [
    ...before.warnings.map((warning) => `${pathA}: ${warning}`),
    ...after.warnings.map((warning) => `${pathB}: ${warning}`),
  ];
  return {
    columns: diffColumns,
    rows,
    single: false,
    partial: isPartialSummary(before) || isPartialSummary(after),
    warnings,
    exitCode: rows.length > 0 ? 1 : undefined,
  };
}
