import { z } from 'zod';
import type { BpfHolder, BpfMap, BpfProgram } from '../os/linux/bpf.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { bpfProvider } from './providers/tampering.js';
import { defineAnalysis, option, type Column, type Row } from './types.js';

const programColumns: readonly Column[] = [
  { key: 'id', kind: 'int', title: 'Id' },
  { key: 'type', kind: 'text', title: 'Type' },
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'tag', kind: 'text', title: 'Tag' },
  { key: 'load_time_ns', kind: 'int', title: 'Loaded (ns)' },
  { key: 'uid', kind: 'int', title: 'Uid' },
  { key: 'jited_length', kind: 'int', title: 'JIT bytes' },
  { key: 'xlated_length', kind: 'int', title: 'Xlated bytes' },
  { key: 'helpers', kind: 'list', title: 'Helpers' },
  { key: 'attach', kind: 'list', title: 'Attached to' },
  { key: 'holders', kind: 'list', title: 'Held by' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'map_ids', kind: 'list', title: 'Maps' },
  { key: 'address', kind: 'address', title: 'bpf_prog' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

const mapColumns: readonly Column[] = [
  { key: 'id', kind: 'int', title: 'Id' },
  { key: 'type', kind: 'text', title: 'Type' },
  { key: 'name', kind: 'text', title: 'Name' },
  { key: 'key_size', kind: 'int', title: 'Key' },
  { key: 'value_size', kind: 'int', title: 'Value' },
  { key: 'max_entries', kind: 'int', title: 'Max entries' },
  { key: 'flags', kind: 'int', title: 'Flags' },
  { key: 'holders', kind: 'list', title: 'Held by' },
  { key: 'address', kind: 'address', title: 'bpf_map' },
];

const holderText = (holder: BpfHolder) => `${holder.pid} ${holder.comm} fd ${holder.fd}`;

function programRow(program: BpfProgram): Row {
  return {
    id: program.id,
    type: program.typeName ?? String(program.type),
    name: program.name,
    tag: program.tag,
    load_time_ns: program.loadTime,
    uid: program.uid ?? null,
    jited_length: program.jitedLength,
    xlated_length: program.xlatedLength,
    helpers: [...new Set(program.calls.map((call) => call.name))],
    attach: program.attachPoints,
    holders: program.holders.map(holderText),
    owner: [...new Set(program.holders.map((holder) => holder.comm))].join(',') || 'unknown',
    map_ids: program.mapIds,
    address: hex(program.address),
    suspicious: program.suspicious,
    evidence: program.evidence,
  };
}

function mapRow(map: BpfMap): Row {
  return {
    id: map.id,
    type: map.typeName ?? String(map.type),
    name: map.name,
    key_size: map.keySize,
    value_size: map.valueSize,
    max_entries: map.maxEntries,
    flags: map.flags,
    holders: map.holders.map(holderText),
    address: hex(map.address),
  };
}

/** Every loaded eBPF program (or map) with what it calls, where it is attached and who holds it. */
export const bpfAnalysis = defineAnalysis({
  name: 'bpf',
  description:
    'list every loaded eBPF program: id, type, name, tag, helpers it calls, attach points, holders (--maps: maps)',
  columns: programColumns,
  uses: [kernelProvider, allModulesProvider, bpfProvider],
  options: z.object({
    maps: option(z.boolean().default(false), { description: 'list the eBPF maps instead of the programs' }),
  }),
  help: `Walks prog_idr and map_idr. Helpers are decoded from each program's verified instructions
(a helper call's immediate is its offset from __bpf_call_base). Attach points are those the
kernel records: kprobe events running the program, bpf links, and socket filters on sockets a
process holds open (socket:[inode]). Owner is the command of the processes holding the program
open, "unknown" when none does. A program calling probe_write_user, override_return,
send_signal(_thread) or sys_bpf is suspicious; a plain socket filter is not.`,
  async compute(inputs, options) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const report = await inputs.get(bpfProvider);
    return options.maps
      ? readerTable(mapColumns, report.maps.map(mapRow), kernel, modules.warnings, report.problems)
      : readerTable(programColumns, report.programs.map(programRow), kernel, modules.warnings, report.problems);
  },
});
