import { formatDmesg } from '../os/linux/printk.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { kernelLogProvider } from './providers/tampering.js';
import { defineAnalysis, type Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'sequence', kind: 'int', title: 'Seq' },
  { key: 'level', kind: 'int', title: 'Level' },
  { key: 'line', kind: 'text', title: 'Line' },
];

/** The kernel log as dmesg prints it, from the printk ring buffer in the dump. */
export const dmesgAnalysis = defineAnalysis({
  name: 'dmesg',
  description: 'print the kernel log from the printk ring buffer, with timestamps and levels, as dmesg does',
  columns,
  uses: [kernelProvider, kernelLogProvider],
  help: `Reads the lockless printk ring (prb, kernels 5.10+) from its tail to its head: each committed
record's text, checked to lie in the data ring's window. One row per line, "[seconds.micros] text"
as dmesg prints it (a multi-line record gives several rows with one sequence number); level is
the syslog level (0 emergency ... 7 debug).`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const log = await inputs.get(kernelLogProvider);
    const rows = log.records.flatMap((record) =>
      formatDmesg([record]).map((line) => ({ sequence: record.sequence, level: record.level, line })),
    );
    return readerTable(columns, rows, kernel, log.problems);
  },
});
