import type { MemoryImage } from '../../image/types.js';
import { parseHex } from '../../util/hex.js';
import { cString } from '../../util/text.js';

/** Where VMCOREINFO was found: in the guest's RAM (the kernel's own ELF note) or in the dump file's notes. */
export type VmcoreinfoSource = 'memory-note' | 'file-note';

/**
 * The kernel's VMCOREINFO: `KEY=value` lines it writes for crash tools, e.g. `OSRELEASE=`,
 * `SYMBOL(init_top_pgt)=ffff…` (hex, no prefix), `NUMBER(phys_base)=-266338304` (decimal,
 * signed), `KERNELOFFSET=20200000` (hex), `OFFSET(list_head.next)=0`.
 */
export class Vmcoreinfo {
  readonly entries: ReadonlyMap<string, string>;

  constructor(
    readonly text: string,
    readonly source: VmcoreinfoSource,
    readonly physical: number | undefined,
  ) {
    const entries = new Map<string, string>();
    for (const line of text.split('\n')) {
      const equals = line.indexOf('=');
      if (equals > 0) entries.set(line.slice(0, equals), line.slice(equals + 1));
    }
    this.entries = entries;
  }

  get osRelease(): string | undefined {
    return this.entries.get('OSRELEASE');
  }

  /** SYMBOL(name): a kernel virtual address in hex. */
  symbol(name: string): bigint | undefined {
    const value = this.entries.get(`SYMBOL(${name})`);
    return value === undefined || !/^[0-9a-fA-F]{1,16}$/.test(value) ? undefined : parseHex(value);
  }

  /** NUMBER(name): decimal (possibly negative, e.g. phys_base) or 0x-hex, as an unsigned 64-bit value. */
  number(name: string): bigint | undefined {
    const value = this.entries.get(`NUMBER(${name})`);
    if (value === undefined) return undefined;
    if (/^0x[0-9a-fA-F]{1,16}$/.test(value)) return parseHex(value);
    return /^-?\d{1,20}$/.test(value) ? BigInt.asUintN(64, BigInt(value)) : undefined;
  }

  /** OFFSET(struct.field): a decimal byte offset. */
  offset(name: string): number | undefined {
    const value = this.entries.get(`OFFSET(${name})`);
    return value !== undefined && /^\d{1,9}$/.test(value) ? Number(value) : undefined;
  }

  /** KERNELOFFSET: the virtual KASLR slide in hex. */
  get kernelOffset(): bigint | undefined {
    const value = this.entries.get('KERNELOFFSET');
    return value !== undefined && /^[0-9a-fA-F]{1,16}$/.test(value) ? parseHex(value) : undefined;
  }
}

const NOTE_NAME = 'VMCOREINFO';
const NOTE_HEADER_BYTES = 12 + 12; // namesz, descsz, type, then "VMCOREINFO\0" padded to 12
/** The kernel reserves one page for it (VMCOREINFO_BYTES); anything larger is not the real note. */
const MAX_NOTE_BYTES = 64 * 1024;

/**
 * Validate a hit of "OSRELEASE=" as the payload of the kernel's Elf64 note: the 24 bytes before
 * it must be namesz=11, a plausible descsz, type 0 and the name. Copies of the text without the
 * header (vmcoreinfo_data, stale pages) are rejected: only the note carries a trusted length.
 */
export function readVmcoreinfoNote(image: MemoryImage, osReleasePhysical: number): Vmcoreinfo | undefined {
  if (osReleasePhysical < NOTE_HEADER_BYTES) return undefined;
  const header = new Uint8Array(NOTE_HEADER_BYTES);
  if (image.readPresent(osReleasePhysical - NOTE_HEADER_BYTES, header) < header.length) return undefined;
  const view = new DataView(header.buffer);
  const nameSize = view.getUint32(0, true);
  const descSize = view.getUint32(4, true);
  const type = view.getUint32(8, true);
  const name = new TextDecoder().decode(header.subarray(12, 12 + NOTE_NAME.length));
  if (nameSize !== NOTE_NAME.length + 1 || type !== 0 || name !== NOTE_NAME || header[12 + NOTE_NAME.length] !== 0)
    return undefined;
  if (descSize === 0 || descSize > MAX_NOTE_BYTES) return undefined;
  const desc = new Uint8Array(descSize);
  if (image.readPresent(osReleasePhysical, desc) < descSize) return undefined;
  return new Vmcoreinfo(cString(desc), 'memory-note', osReleasePhysical);
}

/** A VMCOREINFO note the dump writer put in the file (virsh dump, makedumpfile) needs no scan. */
export function vmcoreinfoFromFileNotes(image: MemoryImage): Vmcoreinfo | undefined {
  const note = image.notes.find((candidate) => candidate.name === NOTE_NAME);
  if (!note) return undefined;
  const text = cString(note.desc);
  return text.startsWith('OSRELEASE=') ? new Vmcoreinfo(text, 'file-note', undefined) : undefined;
}
