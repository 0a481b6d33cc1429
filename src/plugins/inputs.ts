import type { Provider } from '../analyses/context.js';
import { kernelProvider, readerProvider } from '../analyses/providers/kernel.js';
import { moduleListProvider, syscallReportProvider } from '../analyses/providers/modules.js';
import { executablesProvider, socketsProvider } from '../analyses/providers/processContext.js';
import { taskListProvider } from '../analyses/providers/processes.js';
import { executableByGroup } from '../analyses/pslist.js';
import { syscallRow } from '../analyses/syscalls.js';
import type { AnalysisInputs } from '../analyses/types.js';
import { readArguments } from '../os/linux/processSpace.js';
import { readMemoryRegions } from '../os/linux/vmas.js';
import { hex } from '../util/hex.js';
import { PLUGIN_INTERFACE_VERSION, type PluginManifest } from './manifest.js';
import type { DumpAccessSources } from './dumpAccess.js';

/** The providers a plugin's inputs and accesses need: what its analysis declares in `uses`. */
export function pluginProviders(manifest: PluginManifest): Array<Provider<unknown>> {
  const providers = new Set<Provider<unknown>>([kernelProvider]);
  const needs = (provider: Provider<unknown>) => providers.add(provider);
  if (
    ['processes', 'regions'].some((input) => manifest.inputs.includes(input as never)) ||
    manifest.access.includes('memory.virtual')
  ) {
    [readerProvider, taskListProvider].forEach(needs);
  }
  if (manifest.inputs.includes('processes')) needs(executablesProvider);
  if (manifest.inputs.includes('modules')) needs(moduleListProvider);
  if (manifest.inputs.includes('sockets')) needs(socketsProvider);
  if (manifest.inputs.includes('syscalls')) needs(syscallReportProvider);
  if (manifest.access.includes('symbols')) needs(readerProvider);
  return [...providers];
}

export interface PluginInput {
  /** The JSON document the plugin reads on stdin. */
  readonly stdin: Uint8Array;
  /** What its memory reads may reach. */
  readonly sources: DumpAccessSources;
  /** Problems met while gathering the inputs (a broken task list): the plugin's result is partial. */
  readonly warnings: string[];
}

/**
 * The declared inputs, as plain JSON (addresses as `0x…` strings, snake_case keys, as the
 * built-in analyses print them), and the sources of the declared reads. Nothing else: no path,
 * no profile cache, no other plugin's rows.
 */
export async function gatherInputs(inputs: AnalysisInputs, manifest: PluginManifest): Promise<PluginInput> {
  const kernel = await inputs.get(kernelProvider);
  const warnings: string[] = [];
  const document: Record<string, unknown> = {
    interface: PLUGIN_INTERFACE_VERSION,
    plugin: manifest.name,
    kernel: { release: kernel.release },
  };
  const wants = (input: PluginManifest['inputs'][number]) => manifest.inputs.includes(input);
  const needsTasks = wants('processes') || wants('regions') || manifest.access.includes('memory.virtual');
  const reader = needsTasks || manifest.access.includes('symbols') ? await inputs.get(readerProvider) : undefined;
  const tasks = needsTasks ? await inputs.get(taskListProvider) : undefined;
  if (tasks) warnings.push(...tasks.warnings);
  if (wants('processes') && reader && tasks) {
    const exe = await executableByGroup(inputs.get(executablesProvider), warnings);
    document['processes'] = tasks.tasks.map((task) => {
      const { argv, problems } = readArguments(kernel, reader, task);
      warnings.push(...problems.map((problem) => `pid ${task.pid} (${task.comm}): ${problem}`));
      return {
        pid: task.pid,
        ppid: task.ppid,
        tgid: task.tgid,
        comm: task.comm,
        uid: task.uid,
        threads: task.threads,
        kernel_thread: task.kernelThread,
        has_mm: task.mm !== 0n,
        start_time: Number(task.startTime),
        exe: exe.get(task.tgid) ?? null,
        argv,
      };
    });
  }
  if (wants('regions') && reader && tasks) {
    // The listed processes' regions (read_virtual reaches those), not every carved process's.
    document['regions'] = tasks.tasks
      .filter((task) => !task.kernelThread && task.mm !== 0n)
      .flatMap((task) => {
        const { regions, problems } = readMemoryRegions(reader, task.mm);
        warnings.push(...problems.map((problem) => `pid ${task.pid} (${task.comm}): maps: ${problem}`));
        return regions.map((region) => ({
          pid: task.pid,
          start: hex(region.start),
          end: hex(region.end),
          perms: region.perms,
          path: region.path,
        }));
      });
  }
  if (wants('modules')) {
    const list = await inputs.get(moduleListProvider);
    warnings.push(...list.warnings);
    document['modules'] = list.modules.map((module) => ({
      name: module.name,
      base: hex(module.base),
      size: module.size,
      state: module.stateName ?? null,
    }));
  }
  if (wants('sockets')) {
    const tables = await inputs.get(socketsProvider);
    warnings.push(...tables.problems);
    document['sockets'] = tables.sockets.map((socket) => ({
      pid: socket.pid,
      comm: socket.comm,
      fd: socket.fd,
      proto: socket.proto,
      local_address: socket.localAddress,
      local_port: socket.localPort,
      remote_address: socket.remoteAddress,
      remote_port: socket.remotePort,
      state: socket.state,
    }));
  }
  if (wants('syscalls')) {
    const report = await inputs.get(syscallReportProvider);
    warnings.push(...report.problems);
    document['syscalls'] = report.checks.map(syscallRow);
  }
  const sources: DumpAccessSources = {
    ...(manifest.access.includes('memory.physical') ? { image: kernel.image } : {}),
    ...(manifest.access.includes('memory.virtual') ? { kernel, tasks: tasks?.tasks ?? [] } : {}),
    ...(reader ? { reader } : {}),
  };
  return { stdin: new TextEncoder().encode(JSON.stringify(document)), sources, warnings };
}
