import type { DumpContext } from '../analyses/context.js';
import type { Analysis, AnyAnalysisResult } from '../analyses/types.js';
import { VmscopeError } from '../util/errors.js';
import { pluginAnalysis, type PluginRunOptions } from './analysis.js';
import type { Plugin } from './load.js';

/**
 * A findings analysis (`check`) with plugins' findings added to its rows. The plugins must
 * produce findings too. One that fails costs only its own rows: its error becomes a warning
 * (the result is partial) and the next one runs on the same context.
 */
export async function runWithPlugins(
  context: DumpContext,
  analysis: Analysis,
  options: Readonly<Record<string, unknown>>,
  plugins: readonly Plugin[],
  runOptions: PluginRunOptions = {},
): Promise<AnyAnalysisResult> {
  for (const plugin of plugins) {
    if (plugin.manifest.rows !== analysis.rows)
      throw new VmscopeError(
        'USAGE',
        `plugin ${plugin.manifest.name}: its rows are ${plugin.manifest.rows}, ${analysis.name} takes ${analysis.rows}`,
        plugin.file,
      );
  }
  const base = await analysis.run(context, options);
  const rows = [...base.rows];
  const warnings = [...base.warnings];
  let partial = base.partial;
  for (const plugin of plugins) {
    try {
      const result = await pluginAnalysis(plugin, runOptions).run(context);
      rows.push(...result.rows);
      warnings.push(...result.warnings);
      partial ||= result.partial;
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      warnings.push(error.describe());
      partial = true;
    }
  }
  return { ...base, rows, warnings, partial, exitCode: rows.length > 0 ? 1 : (base.exitCode ?? 0) };
}
