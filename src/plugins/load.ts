import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { VmscopeError } from '../util/errors.js';
import { DEFAULT_PLUGIN_LIMITS } from './limits.js';
import { MANIFEST_SECTION, manifestSchema, type PluginAccess, type PluginManifest } from './manifest.js';
import { WASI_PATH_FUNCTIONS } from './wasiFunctions.js';
import { capMemory } from './wasmBinary.js';

/** A plugin file larger than this is refused before it is compiled. */
export const MAX_PLUGIN_BYTES = 16 * 2 ** 20;

/** The WASI preview 1 functions a plugin may import (the sandbox decides what each one can reach). */
const WASI_FUNCTIONS = new Set([
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'clock_res_get',
  'clock_time_get',
  'fd_advise',
  'fd_allocate',
  'fd_close',
  'fd_datasync',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_fdstat_set_rights',
  'fd_filestat_get',
  'fd_filestat_set_size',
  'fd_filestat_set_times',
  'fd_pread',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_pwrite',
  'fd_read',
  'fd_readdir',
  'fd_renumber',
  'fd_seek',
  'fd_sync',
  'fd_tell',
  'fd_write',
  ...WASI_PATH_FUNCTIONS,
  'poll_oneoff',
  'proc_exit',
  'proc_raise',
  'sched_yield',
  'random_get',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
]);

/** The host functions of the `vmscope` import namespace, each with the access the manifest must declare. */
const VMSCOPE_FUNCTIONS: Readonly<Record<string, PluginAccess>> = {
  read_virtual: 'memory.virtual',
  read_physical: 'memory.physical',
  symbol: 'symbols',
};

/** A plugin checked and ready to run: its manifest, its module (memory capped) and the bytes it came from. */
export interface Plugin {
  readonly manifest: PluginManifest;
  readonly module: WebAssembly.Module;
  /** The file as given: what a queued job carries. */
  readonly bytes: Uint8Array;
  readonly sha256: string;
  /** Where it was read from (for messages; a plugin never learns it). */
  readonly file: string;
  /** The memory cap it was loaded with, in 64 KiB pages. */
  readonly memoryPages: number;
}

export interface LoadOptions {
  /** Linear memory cap in 64 KiB pages (default DEFAULT_PLUGIN_LIMITS.memoryPages). */
  readonly memoryPages?: number;
}

/** `plugin NAME: …` once the manifest names it, `plugin FILE: …` before. */
function refusal(who: string, file: string) {
  return (message: string, offset?: number) =>
    new VmscopeError('PLUGIN_REFUSED', `plugin ${who}: ${message}`, file, offset);
}

function readManifest(module: WebAssembly.Module, file: string): PluginManifest {
  const refuse = refusal(file, file);
  const sections = WebAssembly.Module.customSections(module, MANIFEST_SECTION);
  if (sections.length !== 1)
    throw refuse(
      `needs exactly one "${MANIFEST_SECTION}" custom section (found ${sections.length}): see docs/plugins.md`,
    );
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(sections[0]));
  } catch (error) {
    throw refuse(`its manifest is not UTF-8 JSON: ${(error as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw refuse(`its manifest is invalid at ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** Every import must be a WASI function or a `vmscope` function the manifest declared; it must export memory and _start. */
function checkInterface(module: WebAssembly.Module, manifest: PluginManifest, file: string): void {
  const refuse = refusal(manifest.name, file);
  for (const entry of WebAssembly.Module.imports(module)) {
    const what = `${entry.module}.${entry.name}`;
    if (entry.kind !== 'function') throw refuse(`imports ${entry.kind} ${what}: only functions may be imported`);
    if (entry.module === 'wasi_snapshot_preview1' && WASI_FUNCTIONS.has(entry.name)) continue;
    const access = entry.module === 'vmscope' ? VMSCOPE_FUNCTIONS[entry.name] : undefined;
    if (!access) throw refuse(`imports unknown function ${what}`);
    if (!manifest.access.includes(access))
      throw refuse(`imports ${what} but its manifest does not declare access "${access}"`);
  }
  const exports = new Map(WebAssembly.Module.exports(module).map((entry) => [entry.name, entry.kind]));
  if (exports.get('memory') !== 'memory') throw refuse('does not export its memory as "memory"');
  if (exports.get('_start') !== 'function') throw refuse('does not export a "_start" function (a WASI command)');
}

/** Check a plugin's bytes: size, module, manifest, imports, exports, and cap its memory. */
export function loadPlugin(bytes: Uint8Array<ArrayBuffer>, file: string, options: LoadOptions = {}): Plugin {
  const memoryPages = options.memoryPages ?? DEFAULT_PLUGIN_LIMITS.memoryPages;
  if (bytes.length > MAX_PLUGIN_BYTES)
    throw refusal(file, file)(`is ${bytes.length} bytes, above the ${MAX_PLUGIN_BYTES}-byte limit for a plugin file`);
  let original: WebAssembly.Module;
  try {
    original = new WebAssembly.Module(bytes);
  } catch (error) {
    throw refusal(file, file)(`is not a valid WebAssembly module: ${(error as Error).message}`);
  }
  const manifest = readManifest(original, file);
  checkInterface(original, manifest, file);
  const capped = capMemory(bytes, memoryPages, refusal(manifest.name, file));
  return {
    manifest,
    module: new WebAssembly.Module(capped.bytes),
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    file,
    memoryPages,
  };
}

export function loadPluginFile(path: string, options: LoadOptions = {}): Plugin {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    if (statSync(path).size > MAX_PLUGIN_BYTES)
      throw refusal(path, path)(`is above the ${MAX_PLUGIN_BYTES}-byte limit for a plugin file`);
    bytes = readFileSync(path);
  } catch (error) {
    if (error instanceof VmscopeError) throw error;
    throw new VmscopeError('UNREADABLE_FILE', `cannot read plugin: ${(error as Error).message}`, path);
  }
  return loadPlugin(bytes, path, options);
}

/** Every `*.wasm` in a directory, in name order; two plugins of one name are refused. */
export function loadPluginDirectory(directory: string, options: LoadOptions = {}): Plugin[] {
  let names: string[];
  try {
    names = readdirSync(directory).filter((name) => name.endsWith('.wasm'));
  } catch (error) {
    throw new VmscopeError('UNREADABLE_FILE', `cannot list plugins: ${(error as Error).message}`, directory);
  }
  const plugins = names.sort().map((name) => loadPluginFile(join(directory, name), options));
  const seen = new Map<string, string>();
  for (const plugin of plugins) {
    const other = seen.get(plugin.manifest.name);
    if (other) throw refusal(plugin.manifest.name, plugin.file)(`is also the name of ${other}`);
    seen.set(plugin.manifest.name, plugin.file);
  }
  return plugins;
}
