import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VmscopeError } from '../util/errors.js';
import { BridgeServer, createBridgeBuffer, type WorkerMessage } from './bridge.js';
import { ReadBudgetExceeded, type DumpAccess } from './dumpAccess.js';
import type { PluginLimits } from './limits.js';
import type { Plugin } from './load.js';
import type { PluginWorkerData } from './pluginWorker.js';

export interface SandboxOutput {
  readonly code: number;
  readonly stdout: Uint8Array;
  readonly stderr: string;
}

/**
 * dist/pluginWorker.js: beside the running bundle (dist/cli.js, dist/index.js, dist/batchWorker.js),
 * else the repository's dist/ (code run from sources, tests, dist/bench).
 */
export function defaultWorkerScript(): URL {
  const beside = new URL('./pluginWorker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  const built = new URL('../../dist/pluginWorker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new VmscopeError('USAGE', 'dist/pluginWorker.js is missing: run `npm run build`');
}

/**
 * Run a plugin on its own thread: stdin is its input, its reads are served by `access`, and the
 * thread is terminated when any budget is spent. Resolves with what it wrote; rejects with a
 * PLUGIN_FAILED error naming the plugin and the limit or fault.
 */
export function runInSandbox(
  plugin: Plugin,
  stdin: Uint8Array,
  access: DumpAccess,
  limits: PluginLimits,
  workerScript: string | URL = defaultWorkerScript(),
): Promise<SandboxOutput> {
  const name = plugin.manifest.name;
  const fail = (message: string) => new VmscopeError('PLUGIN_FAILED', `plugin ${name}: ${message}`, plugin.file);
  const buffer = createBridgeBuffer();
  const server = new BridgeServer(buffer);
  const data: PluginWorkerData = {
    name,
    module: plugin.module,
    stdin,
    outputBytes: limits.outputBytes,
    bridge: buffer,
  };
  const worker = new Worker(workerScript, {
    workerData: data,
    env: {},
    argv: [],
    stdout: true,
    stderr: true,
    // The JS heap of the thread is the host's code only; the plugin's memory is capped at load.
    resourceLimits: { maxOldGenerationSizeMb: 256 },
  });
  return new Promise<SandboxOutput>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      outcome();
    };
    const timer = setTimeout(
      () => finish(() => reject(fail(`stopped at its time budget of ${limits.timeMs} ms`))),
      limits.timeMs,
    );
    worker.on('message', (message: WorkerMessage) => {
      switch (message.type) {
        case 'exit':
          finish(() => resolve({ code: message.code, stdout: message.stdout, stderr: message.stderr }));
          return;
        case 'failed':
          finish(() => reject(fail(message.message)));
          return;
        default:
          if (!access.allows(message)) {
            finish(() => reject(fail(`asked for ${message.type} without declaring it`)));
            return;
          }
          try {
            const { result, symbol } = access.serve(message, server.data);
            server.answer(result, symbol);
          } catch (error) {
            if (error instanceof ReadBudgetExceeded) finish(() => reject(fail(error.message)));
            else if (error instanceof VmscopeError) server.answer(0);
            else finish(() => reject(error instanceof Error ? error : new Error(String(error))));
          }
      }
    });
    worker.on('error', (error) => finish(() => reject(fail(`its thread failed: ${error.message}`))));
    worker.on('exit', (code) => finish(() => reject(fail(`its thread exited (code ${code}) before it finished`))));
  });
}
