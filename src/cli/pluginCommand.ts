import type { Command } from 'commander';
import type { DumpContext } from '../analyses/context.js';
import type { Analysis, AnyAnalysisResult, Column } from '../analyses/types.js';
import { pluginAnalysis } from '../plugins/analysis.js';
import { loadPluginDirectory, loadPluginFile } from '../plugins/load.js';
import { registerPluginLoader } from '../plugins/portable.js';
import { runWithPlugins } from '../plugins/withPlugins.js';
import { writeChunks } from './output.js';
import { renderChunks } from './render.js';

const listColumns: readonly Column[] = [
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'version', kind: 'text', title: 'Version' },
  { key: 'rows', kind: 'text', title: 'Rows' },
  { key: 'inputs', kind: 'list', title: 'Inputs' },
  { key: 'access', kind: 'list', title: 'Access' },
  { key: 'sha256', kind: 'text', title: 'SHA-256' },
  { key: 'file', kind: 'text', title: 'File' },
  { key: 'description', kind: 'text', title: 'Description' },
];

interface PluginCommandHelpers<Options> {
  readonly withCommonOptions: (command: Command) => Command;
  readonly runOnDump: (
    path: string,
    options: Options,
    analysis: (context: DumpContext) => Promise<AnyAnalysisResult>,
  ) => Promise<number>;
  readonly setExitCode: (code: number) => void;
}

/** `plugin run PLUGIN.wasm DUMP` and `plugin list DIR`. */
export function registerPluginCommand<Options extends { json?: boolean; ndjson?: boolean }>(
  program: Command,
  helpers: PluginCommandHelpers<Options>,
): void {
  registerPluginLoader(); // batch jobs run on this thread (--jobs 1) and queue workers carry plugins too
  const plugin = program
    .command('plugin')
    .description('run sandboxed third-party analyses (WASI modules, see docs/plugins.md)');
  helpers
    .withCommonOptions(
      plugin
        .command('run')
        .description('run one WASI plugin on a dump; its rows print like any analysis')
        .argument('<plugin>', 'the plugin (.wasm with a vmscope.manifest section)')
        .argument('<dump>', 'memory dump file'),
    )
    .action(async (file: string, dump: string, options: Options) => {
      const analysis = pluginAnalysis(loadPluginFile(file)); // refused before the dump is opened
      helpers.setExitCode(await helpers.runOnDump(dump, options, (context) => analysis.run(context)));
    });
  plugin
    .command('list')
    .description('list the plugins of a directory with their manifests (nothing is run)')
    .argument('<dir>', 'directory of .wasm plugins')
    .option('--json', 'print one JSON document')
    .option('--ndjson', 'print one JSON object per plugin')
    .action(async (directory: string, options: { json?: boolean; ndjson?: boolean }) => {
      const rows = loadPluginDirectory(directory).map(({ manifest, sha256, file }) => ({
        name: manifest.name,
        version: manifest.version,
        rows: manifest.rows,
        inputs: manifest.inputs,
        access: manifest.access,
        sha256,
        file,
        description: manifest.description,
      }));
      const result: AnyAnalysisResult = { columns: listColumns, rows, single: false, partial: false, warnings: [] };
      await writeChunks(
        process.stdout,
        renderChunks(result, options.json ? 'json' : options.ndjson ? 'ndjson' : 'table'),
      );
      helpers.setExitCode(0);
    });
}

/** `--plugin <dir>` on an analysis whose rows are findings (`check`): the directory's plugins add theirs. */
export function addPluginOption(command: Command, analysis: Analysis): void {
  if (analysis.rows === 'findings')
    command.option(
      '--plugin <dir>',
      "also run the directory's WASI plugins (docs/plugins.md); their findings are added",
    );
}

/** The analysis alone, or with the plugins of `--plugin` (loaded, and refused, before the dump is opened). */
export function analysisWithPlugins(
  analysis: Analysis,
  given: Readonly<Record<string, unknown>>,
  pluginDirectory: unknown,
): (context: DumpContext) => Promise<AnyAnalysisResult> {
  if (typeof pluginDirectory !== 'string') return (context) => analysis.run(context, given);
  const plugins = loadPluginDirectory(pluginDirectory);
  return (context) => runWithPlugins(context, analysis, given, plugins);
}
