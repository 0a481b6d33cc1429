import type { LinuxKernel } from '../os/linux/discovery.js';
import { uniqueWarnings } from './providers/kernel.js';
import type { AnalysisResult, Column, Row } from './types.js';

/**
 * The result of a table of kernel objects one reader walked: partial when the reader (or the
 * module search its owners come from) stopped short, each reason a warning.
 */
export function readerTable(
  columns: readonly Column[],
  rows: readonly Row[],
  kernel: LinuxKernel,
  ...problems: ReadonlyArray<readonly string[]>
): AnalysisResult {
  const stopped = uniqueWarnings(...problems);
  return {
    columns,
    rows,
    single: false,
    partial: stopped.length > 0,
    warnings: uniqueWarnings(kernel.warnings, stopped),
  };
}
