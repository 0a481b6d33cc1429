import type { CpuState, MemoryImage, PhysicalRange } from './types.js';

/**
 * `image` seen through `ranges` only (and `nonZeroRanges`, when given), reading from the same
 * open image: a part of a dump searched on its own (a scan thread's job, the carve's memory
 * without the kernel's read-only image). Closing it is the owner's job, not the view's.
 */
export function viewOverRanges(
  image: MemoryImage,
  ranges: readonly PhysicalRange[],
  nonZeroRanges?: () => readonly PhysicalRange[],
): MemoryImage {
  return {
    path: image.path,
    format: image.format,
    ranges,
    totalBytes: ranges.reduce((sum, range) => sum + (range.end - range.start), 0),
    notes: image.notes,
    cpus: image.cpus,
    read: (physical, into) => image.read(physical, into),
    readPresent: (physical, into) => image.readPresent(physical, into),
    ...(nonZeroRanges ? { nonZeroRanges } : {}),
    close: () => {},
  };
}

/**
 * `image` with the vCPU state `cpus` instead of its own, reading from the same open image: a
 * running guest's RAM file, opened once, is read at each check with the registers QEMU gave
 * for that check (which page tables a vCPU runs decides which kernel in memory is the running
 * one). Closing it is the owner's job, not the view's.
 */
export function imageWithCpus(image: MemoryImage, cpus: readonly CpuState[]): MemoryImage {
  return { ...viewOverRanges(image, image.ranges, image.nonZeroRanges && (() => image.nonZeroRanges!())), cpus };
}

/** `image` without the physical bytes [start, end): ranges (and nonZeroRanges) cut around them. */
export function imageWithout(image: MemoryImage, start: number, end: number): MemoryImage {
  return viewOverRanges(
    image,
    rangesWithout(image.ranges, start, end),
    image.nonZeroRanges && (() => rangesWithout(image.nonZeroRanges!(), start, end)),
  );
}

/** `ranges` with [start, end) taken out of them. */
export function rangesWithout(ranges: readonly PhysicalRange[], start: number, end: number): PhysicalRange[] {
  return ranges.flatMap((range) => {
    if (range.end <= start || range.start >= end) return [range];
    const parts: PhysicalRange[] = [];
    if (range.start < start) parts.push({ ...range, end: start });
    if (range.end > end) parts.push({ start: end, end: range.end, fileOffset: fileOffsetAt(range, end) });
    return parts;
  });
}

/** Where `range`'s byte at `physical` lies in the file; -1 stays -1 (a decoded range has no file offset). */
export function fileOffsetAt(range: PhysicalRange, physical: number): number {
  return range.fileOffset < 0 ? range.fileOffset : range.fileOffset + (physical - range.start);
}
