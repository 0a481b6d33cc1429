import type { Kprobe } from '../os/linux/kprobes.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { kprobesProvider } from './providers/tampering.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'address', kind: 'address', title: 'Address' },
  { key: 'probe', kind: 'text', title: 'Probe' },
  { key: 'kind', kind: 'text', title: 'Kind' },
  { key: 'handler', kind: 'address', title: 'Handler' },
  { key: 'handler_symbol', kind: 'text', title: 'Handler symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'post_handler', kind: 'address', title: 'Post handler' },
  { key: 'flags', kind: 'list', title: 'Flags', separator: ',' },
  { key: 'ftrace', kind: 'bool', title: 'Ftrace' },
  { key: 'event', kind: 'text', title: 'Trace event' },
  { key: 'programs', kind: 'list', title: 'BPF programs' },
  { key: 'kprobe', kind: 'address', title: 'struct kprobe' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'listing', kind: 'text', title: 'kprobes/list' },
];

function kprobeRow(probe: Kprobe): Row {
  // What the probe's user registered: the pre handler, or a kretprobe's return handler.
  const handler = probe.kind === 'r' ? (probe.returnHandler ?? probe.preHandler) : probe.preHandler;
  return {
    address: hex(probe.probed),
    probe: probe.function ? `${probe.function}+${hex(probe.offset)}` : null,
    kind: probe.kind === 'r' ? 'kretprobe' : 'kprobe',
    handler: handler ? hex(handler.address) : null,
    handler_symbol: handler?.symbol ?? null,
    owner:
      [probe.preHandler, probe.postHandler, probe.returnHandler, probe.entryHandler].find(
        (found) => found && found.owner !== 'kernel',
      )?.owner ?? 'kernel',
    post_handler: probe.postHandler ? hex(probe.postHandler.address) : null,
    flags: probe.flagNames,
    ftrace: probe.ftrace,
    event: probe.traceEvent?.event ?? null,
    programs: probe.traceEvent?.programs.map((program) => `${program.name} (id ${program.id})`) ?? [],
    kprobe: hex(probe.address),
    suspicious: probe.suspicious,
    listing: probe.listing,
  };
}

/** Every registered kprobe and kretprobe, with its handlers' owners and the kernel tracing user behind it. */
export const kprobesAnalysis = defineAnalysis({
  name: 'kprobes',
  description: 'list every kprobe and kretprobe: probed function, handlers and their owner, flags, trace event',
  columns,
  uses: [kernelProvider, allModulesProvider, kprobesProvider],
  help: `Walks kprobe_table (aggregate probes expanded to the probes they stand for). A handler in
module or unowned memory is suspicious; probes the kernel's own tracing registers (perf and
tracefs kprobe events, and the BPF programs they run) name their trace event and programs,
and are not suspicious by themselves. "kprobes/list" is the line debugfs would show.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const report = await inputs.get(kprobesProvider);
    return readerTable(columns, report.kprobes.map(kprobeRow), kernel, modules.warnings, report.problems);
  },
});
