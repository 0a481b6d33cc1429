import type { AnalysisResult, AnyAnalysisResult } from '../../src/analyses/types.js';

/** The result with its rows read into an array (rows an analysis makes on the fly are read once here), for assertions. */
export async function materialized(result: AnyAnalysisResult | Promise<AnyAnalysisResult>): Promise<AnalysisResult> {
  const resolved = await result;
  return { ...resolved, rows: [...resolved.rows] };
}
