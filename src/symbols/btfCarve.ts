import type { MemoryImage } from '../image/types.js';
import { MultiNeedleSearcher } from '../kernels/multiNeedle.js';
import { VmscopeError } from '../util/errors.js';
import { BTF_HEADER_BYTES, btfBlobSize, parseBtf, type BtfTypes } from './btfParse.js';

/** btf_header's first four bytes: magic 0xeb9f (little-endian), version 1, flags 0. */
const BTF_HEADER_NEEDLE = Uint8Array.from([0x9f, 0xeb, 0x01, 0x00]);
/** A vmlinux BTF is a few MiB (4.2 MiB for Debian's 6.1, 4.7 for 6.12); a header announcing more is not one. */
const MAX_BTF_BYTES = 64 << 20;

export interface CarvedBtf {
  /** Physical address of the btf_header. */
  readonly physical: number;
  /** The whole blob: header, type and string sections (what /sys/kernel/btf/vmlinux reads). */
  readonly bytes: Uint8Array;
  /** The blob parsed: validation parses it anyway, so callers need not parse it again. */
  readonly types: BtfTypes;
}

/**
 * The running kernel's own BTF, found in physical memory. It is the kernel image's .BTF
 * section, which is physically contiguous, so it is read as one run from its header. Every
 * header hit is a candidate; the largest that reads completely and parses is the vmlinux BTF
 * (module BTFs are far smaller and cannot parse alone: their names and type ids point into the
 * vmlinux BTF). Equal-sized copies (stale pages holding the same section) are equivalent; the
 * lowest address wins so the answer is stable.
 */
export function carveVmlinuxBtf(image: MemoryImage): CarvedBtf {
  const header = new Uint8Array(BTF_HEADER_BYTES);
  const candidates: Array<{ physical: number; size: number }> = [];
  for (const hit of MultiNeedleSearcher.create([BTF_HEADER_NEEDLE]).searchImage(image)) {
    if (image.readPresent(hit.offset, header) < header.length) continue;
    const size = btfBlobSize(header);
    if (size !== undefined && size > BTF_HEADER_BYTES && size <= MAX_BTF_BYTES)
      candidates.push({ physical: hit.offset, size });
  }
  candidates.sort((a, b) => b.size - a.size || a.physical - b.physical);

  const rejected: string[] = [];
  for (const { physical, size } of candidates) {
    const bytes = new Uint8Array(size);
    if (image.readPresent(physical, bytes) < size) {
      rejected.push(`0x${physical.toString(16)}: ${size} bytes run into absent memory`);
      continue;
    }
    try {
      return { physical, bytes, types: parseBtf(bytes, { path: image.path, physical }) };
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      rejected.push(`0x${physical.toString(16)}: ${error.message}`);
    }
  }
  const why =
    rejected.length === 0
      ? 'no BTF header in physical memory'
      : `${rejected.length} candidate(s) rejected: ${rejected.slice(0, 3).join('; ')}`;
  throw new VmscopeError(
    'NO_PROFILE',
    `no vmlinux BTF found (${why}); was the kernel built with CONFIG_DEBUG_INFO_BTF?`,
    image.path,
  );
}
