import type { FormatDetails } from '../image/types.js';
import type { KernelTaint } from '../os/linux/taint.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';
import { imageProvider, kernelProvider, uniqueWarnings } from './providers/kernel.js';
import { taintProvider } from './providers/tampering.js';
import { defineAnalysis, type Column } from './types.js';

const columns: readonly Column[] = [
  { key: 'format', kind: 'text', title: 'Format' },
  { key: 'format_details', kind: 'text', title: 'Format details' },
  { key: 'ranges', kind: 'list', title: 'Physical ranges' },
  { key: 'total_bytes', kind: 'int', title: 'Total bytes' },
  { key: 'kernel_release', kind: 'text', title: 'Kernel release' },
  { key: 'linux_banner', kind: 'text', title: 'Banner' },
  { key: 'kaslr', kind: 'bool', title: 'KASLR' },
  { key: 'kaslr_slide', kind: 'address', title: 'KASLR slide' },
  { key: 'phys_base', kind: 'address', title: 'phys_base' },
  { key: 'dtb', kind: 'address', title: 'Kernel DTB' },
  { key: 'page_offset_base', kind: 'address', title: 'page_offset_base' },
  { key: 'paging_levels', kind: 'int', title: 'Paging levels' },
  { key: 'discovery', kind: 'text', title: 'Found by' },
  { key: 'cpu_cr3', kind: 'list', title: 'CPU CR3 (ELF notes)' },
  { key: 'taint', kind: 'list', title: 'Tainted' },
];

/**
 * What a capture format says about itself, in one line: compression, kdump's dump level and
 * completeness, excluded memory, a migration stream's machine and RAM blocks; null for plain formats.
 */
function formatDetails(details: FormatDetails | undefined): string | null {
  if (!details) return null;
  const parts = [
    details.container && `decompressed from ${details.container}`,
    details.layout && `${details.layout} layout`,
    details.version !== undefined && `version ${details.version}`,
    details.compression?.length && `compression ${details.compression.join('+')}`,
    details.dumpLevel !== undefined && `dump level ${details.dumpLevel}`,
    details.complete === false && 'INCOMPLETE (the writer ran out of space)',
    details.excludedBytes && `${details.excludedBytes} bytes left out`,
    details.machine && `machine ${details.machine}`,
    details.wrapper && `inside ${details.wrapper}`,
    details.ramBlocks?.length &&
      `RAM blocks ${details.ramBlocks.map((block) => `${block.name} (${block.bytes} bytes)`).join(', ')}`,
  ].filter((part): part is string => typeof part === 'string' && part !== '');
  return parts.length > 0 ? parts.join('; ') : null;
}

/** What the dump is and where the kernel sits in it. */
export const infoAnalysis = defineAnalysis({
  name: 'info',
  description:
    'identify the dump format, the kernel release and banner, KASLR slide, phys_base, DTB and direct-map base',
  columns,
  uses: [imageProvider, kernelProvider, taintProvider],
  help: `The kernel is found from the VMCOREINFO note the kernel keeps in RAM; without it, from the
"Linux version" banner and the kernel's own page tables. Every value is checked by
translating the kernel's text through the DTB it reports. Tainted lists the flags of the
kernel's tainted_mask (letter and name from its own taint_flags table: O out-of-tree module,
E unsigned module, ...); empty when the kernel is not tainted, none when unreadable.`,
  async compute(inputs) {
    const image = await inputs.get(imageProvider);
    const kernel = await inputs.get(kernelProvider);
    // The taint flags need the profile; info itself does not, so it still answers without one.
    let taint: KernelTaint | undefined;
    let taintProblems: readonly string[];
    try {
      taint = await inputs.get(taintProvider);
      taintProblems = taint.problems;
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      taintProblems = [`taint flags unavailable: ${error.message}`];
    }
    const row = {
      format: image.format,
      format_details: formatDetails(image.details),
      ranges: image.ranges.map((range) => ({ start: hex(range.start), end: hex(range.end) })),
      total_bytes: image.totalBytes,
      kernel_release: kernel.release,
      linux_banner: kernel.banner,
      kaslr: kernel.kaslr,
      kaslr_slide: hex(kernel.kaslrSlide),
      phys_base: hex(kernel.physBase),
      dtb: hex(kernel.dtb),
      page_offset_base: hex(kernel.pageOffsetBase),
      paging_levels: kernel.pagingLevels,
      discovery: kernel.method,
      cpu_cr3: image.cpus.map((cpu) => hex(cpu.cr3)),
      taint: taint?.flags.map((flag) => `${flag.letter} ${flag.name ?? `bit ${flag.bit}`}`) ?? null,
    };
    return {
      columns,
      rows: [row],
      single: true,
      partial: false,
      warnings: uniqueWarnings(kernel.warnings, taintProblems),
    };
  },
});
