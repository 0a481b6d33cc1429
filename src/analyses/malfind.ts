import { z } from 'zod';
import { MALFIND_BYTES, type SuspiciousRegion } from '../os/linux/malfind.js';
import { hex } from '../util/hex.js';
import { pidOption, selectPid } from './pidFilter.js';
import { uniqueWarnings } from './providers/kernel.js';
import { suspiciousRegionsProvider } from './providers/processContext.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'start', kind: 'address', title: 'Start' },
  { key: 'end', kind: 'address', title: 'End' },
  { key: 'perms', kind: 'text', title: 'Perms' },
  { key: 'starts_with', kind: 'text', title: 'Starts with' },
  { key: 'reason', kind: 'text', title: 'Reason' },
  { key: 'bytes', kind: 'text', title: 'Bytes' },
  { key: 'disassembly', kind: 'list', title: 'Disassembly', separator: '; ' },
];

/** What the region's first bytes are: an ELF image, instructions, nothing (zeros), or unreadable. */
function startsWith(region: SuspiciousRegion): string {
  if (region.bytes.length === 0) return 'unreadable';
  if (region.elfHeader) return 'elf';
  if (region.bytes.every((byte) => byte === 0)) return 'zeros';
  return region.disassembly[0]?.endsWith('(bad)') ? 'data' : 'code';
}

function regionRow(region: SuspiciousRegion): Row {
  return {
    pid: region.pid,
    comm: region.comm,
    start: hex(region.start),
    end: hex(region.end),
    perms: region.perms,
    starts_with: startsWith(region),
    reason: region.reason,
    bytes: Buffer.from(region.bytes).toString('hex'),
    disassembly: region.disassembly,
  };
}

/** Executable memory no file accounts for, and writable executable memory, in every user process. */
export const malfindAnalysis = defineAnalysis({
  name: 'malfind',
  description:
    'find injected code: executable memory backed by no file, or writable and executable, in every process, with its first bytes disassembled',
  columns,
  uses: [suspiciousRegionsProvider],
  options: z.object({ pid: pidOption('the suspicious regions') }),
  help: `A region is reported when it is executable and anonymous (no file behind it) or writable and
executable. bytes: the first ${MALFIND_BYTES} bytes (hex), read through the process's own page tables;
disassembly: the instructions they decode to (x86-64, Intel syntax, iced-x86); starts_with: elf
(an ELF header: an executable loaded by hand), code, zeros, data (no valid first instruction)
or unreadable. The vDSO is the kernel's own code and is never reported. JIT compilers (browsers'
JavaScript engines, the JVM, .NET, LuaJIT) allocate such regions too: the reason says so, so
read a hit together with the process's name and maps.`,
  async compute(inputs, options) {
    const found = await inputs.get(suspiciousRegionsProvider);
    const rows = selectPid(found.entries, options.pid).flatMap(({ value }) => value.regions.map(regionRow));
    const warnings = uniqueWarnings(found.warnings);
    return { columns, rows, single: false, partial: warnings.length > 0, warnings };
  },
});
