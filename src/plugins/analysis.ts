import { defineAnalysis, type Analysis } from '../analyses/types.js';
import { DumpAccess } from './dumpAccess.js';
import { gatherInputs, pluginProviders } from './inputs.js';
import { pluginLimits, type PluginLimits } from './limits.js';
import type { Plugin } from './load.js';
import { manifestColumns } from './manifest.js';
import { parseRows } from './rows.js';
import { runInSandbox } from './sandbox.js';

export interface PluginRunOptions {
  /** Limits other than the defaults (the memory cap is the one the plugin was loaded with). */
  readonly limits?: Partial<Omit<PluginLimits, 'memoryPages'>>;
  /** dist/pluginWorker.js unless given. */
  readonly workerScript?: string | URL;
}

/** What one run cost: read calls and bytes through the imports (the bench reports them). */
export interface PluginRunStats {
  reads: number;
  readBytes: number;
}

/**
 * A plugin as an analysis like any other: its manifest's name, description and columns; its
 * declared inputs as the providers it uses; rows that the CLI, `check`, policies and batches
 * take as they take a built-in's. A plugin that fails is this analysis failing (a typed error),
 * so the analyses after it run as usual.
 */
export function pluginAnalysis(plugin: Plugin, options: PluginRunOptions = {}, stats?: PluginRunStats): Analysis {
  const { manifest } = plugin;
  const limits = pluginLimits({ ...options.limits, memoryPages: plugin.memoryPages });
  const columns = manifestColumns(manifest);
  return defineAnalysis({
    name: manifest.name,
    description: `${manifest.description} (plugin ${manifest.name} ${manifest.version})`,
    columns,
    uses: pluginProviders(manifest),
    rows: manifest.rows,
    help: `A WASI plugin (${plugin.file}, sha256 ${plugin.sha256}) run in the sandbox: it reads ${
      manifest.inputs.length > 0 ? manifest.inputs.join(', ') : 'no inputs'
    }${manifest.access.length > 0 ? ` and may ask for ${manifest.access.join(', ')}` : ''}. See docs/plugins.md.`,
    async compute(inputs) {
      const input = await gatherInputs(inputs, manifest);
      const access = new DumpAccess(input.sources, manifest.access, limits);
      try {
        const output = await runInSandbox(plugin, input.stdin, access, limits, options.workerScript);
        const rows = parseRows(manifest, output.stdout, plugin.file);
        const warnings = [...input.warnings];
        if (output.code !== 0)
          warnings.push(`plugin ${manifest.name} exited with code ${output.code}: ${output.stderr.trim()}`);
        return {
          columns,
          rows,
          single: false,
          partial: warnings.length > 0,
          warnings,
          ...(manifest.rows === 'findings' ? { exitCode: rows.length > 0 ? 1 : 0 } : {}),
        };
      } finally {
        if (stats) {
          stats.reads += access.calls;
          stats.readBytes += access.bytes;
        }
      }
    },
  });
}
