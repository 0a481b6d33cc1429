import { VmscopeError } from '../util/errors.js';
import { sortedDisjoint } from './lime.js';
import { RangeMappedImage } from './rangeImage.js';
import { FileSource } from './source.js';
import type { CpuState, PhysicalRange } from './types.js';

/**
 * A running QEMU guest's RAM, read in place from the file QEMU backs it with
 * (`-object memory-backend-file,mem-path=/dev/shm/NAME,share=on`): no dump is written, every
 * read is a positional read of the live file. Where each byte of the file sits in guest-physical
 * memory is QEMU's word (its flat view, `info mtree -f`), never assumed: a >3.5 GiB guest has
 * the PCI hole between two mappings of the same file.
 */

/** One line of a flat view: guest-physical `[start, end)` shows `region` from `offset` on (ram, rom, i/o, ...). */
export interface FlatViewEntry {
  readonly start: number;
  readonly end: number;
  readonly kind: string;
  readonly region: string;
  readonly offset: number;
}

const FLAT_RANGE = /^\s+([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ([a-z/-]+)\): (\S+)(?: @([0-9a-f]+))?/;
/** No machine has more; a longer view is not QEMU's output. */
const MAX_FLAT_ENTRIES = 1 << 16;

/**
 * The entries of the flat view of the system address space (`AS "memory"`) in `info mtree -f`
 * output. Throws when there is none: then this is not QEMU's output, or QEMU changed it.
 */
export function parseSystemFlatView(text: string, source: string): FlatViewEntry[] {
  const views = text.split(/^FlatView #\d+$/m);
  const system = views.find((view) => /^ AS "memory", root:/m.test(view));
  if (system === undefined)
    throw new VmscopeError('CORRUPT_HEADER', 'no flat view of the "memory" address space in info mtree -f', source);
  const entries: FlatViewEntry[] = [];
  for (const line of system.split('\n')) {
    const match = FLAT_RANGE.exec(line);
    if (!match) continue;
    const [, start, last, kind, region, offset] = match;
    const entry = {
      start: hexNumber(start!, source),
      end: hexNumber(last!, source) + 1,
      kind: kind!,
      region: region!,
      offset: offset === undefined ? 0 : hexNumber(offset, source),
    };
    if (entry.end <= entry.start) throw new VmscopeError('CORRUPT_HEADER', `empty flat range: ${line.trim()}`, source);
    entries.push(entry);
    if (entries.length > MAX_FLAT_ENTRIES)
      throw new VmscopeError('CORRUPT_HEADER', `more than ${MAX_FLAT_ENTRIES} flat ranges`, source);
  }
  return entries;
}

function hexNumber(text: string, source: string): number {
  const value = BigInt('0x' + text);
  if (value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new VmscopeError('CORRUPT_HEADER', `address 0x${text} is beyond any real machine`, source);
  return Number(value);
}

/**
 * Guest-physical ranges backed by the memory backend `memdev` (its id is the region's name in
 * the flat view), each with its offset in the backend's file; neighbours contiguous in both
 * are merged (the PAM-controlled BIOS areas show as ram and rom pieces of one mapping).
 */
export function backendRanges(entries: readonly FlatViewEntry[], memdev: string): PhysicalRange[] {
  const ranges: PhysicalRange[] = [];
  for (const entry of entries) {
    if (entry.region !== memdev || (entry.kind !== 'ram' && entry.kind !== 'rom')) continue;
    const last = ranges.at(-1);
    if (last && last.end === entry.start && last.fileOffset + (last.end - last.start) === entry.offset)
      ranges[ranges.length - 1] = { ...last, end: entry.end };
    else ranges.push({ start: entry.start, end: entry.end, fileOffset: entry.offset });
  }
  return ranges;
}

/**
 * Each vCPU's CR3 and RIP from `info registers -a` (a `CPU#n` header, then register lines); a
 * vCPU whose registers are not all there is left out rather than guessed.
 */
export function parseCpuRegisters(text: string): CpuState[] {
  const states: CpuState[] = [];
  for (const block of text.split(/^(?=CPU#\d+)/m)) {
    const cpu = /^CPU#(\d+)/.exec(block);
    const cr3 = /\bCR3=([0-9a-f]{1,16})\b/.exec(block);
    const rip = /\bRIP=([0-9a-f]{1,16})\b/.exec(block);
    if (cpu && cr3 && rip) states.push({ cpu: Number(cpu[1]), cr3: BigInt('0x' + cr3[1]), rip: BigInt('0x' + rip[1]) });
  }
  return states;
}

export interface SharedMemoryLayout {
  /** Guest-physical ranges and where each lies in the file. */
  readonly ranges: readonly PhysicalRange[];
  readonly cpus: readonly CpuState[];
}

/**
 * The guest's RAM file opened read-only with QEMU's layout. Every range must lie inside the
 * file: a file shorter than the layout is not this guest's RAM (or was truncated).
 */
export function openQemuSharedMemory(ramPath: string, layout: SharedMemoryLayout): RangeMappedImage {
  const source = new FileSource(ramPath);
  try {
    if (layout.ranges.length === 0)
      throw new VmscopeError('CORRUPT_HEADER', 'QEMU maps no part of this file as guest RAM', ramPath, 0);
    for (const range of layout.ranges) {
      const fileEnd = range.fileOffset + (range.end - range.start);
      if (fileEnd > source.size)
        throw new VmscopeError(
          'TRUNCATED_FILE',
          `guest-physical 0x${range.start.toString(16)}-0x${range.end.toString(16)} needs file bytes up to 0x${fileEnd.toString(16)} but the file has 0x${source.size.toString(16)}`,
          ramPath,
          source.size,
        );
    }
    return new RangeMappedImage(source, 'qemu-shm', sortedDisjoint([...layout.ranges], source), [], layout.cpus);
  } catch (error) {
    source.close();
    throw error;
  }
}
