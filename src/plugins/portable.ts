import { registerPortableAnalysisLoader, type PortableAnalysis } from '../batch/portableAnalyses.js';
import { pluginAnalysis } from './analysis.js';
import { loadPlugin, type Plugin } from './load.js';

/** A loaded plugin as a batch job carries it: its bytes and their hash. */
export function portablePlugin(plugin: Plugin): PortableAnalysis {
  return {
    kind: 'wasi-plugin',
    name: plugin.manifest.name,
    sha256: plugin.sha256,
    base64: Buffer.from(plugin.bytes).toString('base64'),
  };
}

/** Lets this thread run the plugins that batch jobs carry (checked again here: the bytes came from elsewhere). */
export function registerPluginLoader(): void {
  registerPortableAnalysisLoader((bytes, portable) =>
    pluginAnalysis(loadPlugin(bytes, `${portable.name}.wasm (sha256 ${portable.sha256})`)),
  );
}
