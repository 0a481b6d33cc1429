import { VmscopeError } from '../util/errors.js';
import { sortedDisjoint } from './lime.js';
import { RangeMappedImage } from './rangeImage.js';
import { readHeader, safeU64, type ByteSource } from './source.js';
import type { CpuState, ElfNote, PhysicalRange } from './types.js';

const ELF_HEADER_BYTES = 64;
const PHDR_BYTES = 56;
const SHDR_BYTES = 64;
const PT_LOAD = 1;
const PT_NOTE = 4;
const ET_CORE = 4;
const EM_X86_64 = 62;
/** e_phnum value meaning "the real count is in section header 0's sh_info" (QEMU uses it past 65534 blocks). */
const PN_XNUM = 0xffff;
/** No real core has more; a larger count is a corrupt header, not a reason to allocate. */
const MAX_PROGRAM_HEADERS = 1 << 20;
const MAX_NOTE_SEGMENT_BYTES = 64 << 20;
/** QEMU writes two notes per vCPU (and VMCOREINFO); more than this is a corrupt segment, not a machine. */
const MAX_NOTES = 1 << 16;

const NT_PRSTATUS = 1;
/** elf_prstatus on x86-64: pr_reg starts at 112; rip is register 16 of user_regs_struct. */
const PRSTATUS_RIP_OFFSET = 112 + 16 * 8;
/** QEMUCPUState (target/i386/arch_dump.c): version, size, 16 GPRs, rip, rflags, 10 segments of 24 bytes, cr[5]. */
const QEMU_CPU_STATE_CR3_OFFSET = 8 + 18 * 8 + 10 * 24 + 3 * 8;

/** ELF core as QEMU `dump-guest-memory` (and `virsh dump`) writes it: a PT_LOAD per RAM block plus notes. */
export function openElfCore(source: ByteSource): RangeMappedImage {
  const header = readHeader(source, 0, ELF_HEADER_BYTES, 'ELF header');
  if (header.getUint8(4) !== 2) throw new VmscopeError('CORRUPT_HEADER', 'ELF class is not ELF64', source.path, 4);
  if (header.getUint8(5) !== 1)
    throw new VmscopeError('CORRUPT_HEADER', 'ELF data encoding is not little-endian', source.path, 5);
  const type = header.getUint16(16, true);
  if (type !== ET_CORE)
    throw new VmscopeError('CORRUPT_HEADER', `ELF type ${type} is not a core file (ET_CORE)`, source.path, 16);
  const machine = header.getUint16(18, true);
  if (machine !== EM_X86_64)
    throw new VmscopeError('CORRUPT_HEADER', `ELF machine ${machine} is not x86-64`, source.path, 18);
  const phoff = safeU64(header, 32, source, 0, 'program header offset');
  const shoff = safeU64(header, 40, source, 0, 'section header offset');
  const phentsize = header.getUint16(54, true);
  if (phentsize !== PHDR_BYTES)
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `program header size ${phentsize}, expected ${PHDR_BYTES}`,
      source.path,
      54,
    );
  let phnum = header.getUint16(56, true);
  if (phnum === PN_XNUM) {
    const section0 = readHeader(source, shoff, SHDR_BYTES, 'section header 0 (extended program header count)');
    phnum = section0.getUint32(44, true);
  }
  if (phnum === 0 || phnum > MAX_PROGRAM_HEADERS) {
    throw new VmscopeError(
      'CORRUPT_HEADER',
      `program header count ${phnum} is not plausible for a memory dump`,
      source.path,
      56,
    );
  }
  if (phoff + phnum * PHDR_BYTES > source.size) {
    throw new VmscopeError(
      'TRUNCATED_FILE',
      `the ${phnum} program headers extend past the end of the file`,
      source.path,
      phoff,
    );
  }

  const table = readHeader(source, phoff, phnum * PHDR_BYTES, 'program header table');
  const ranges: PhysicalRange[] = [];
  const notes: ElfNote[] = [];
  for (let index = 0; index < phnum; index++) {
    const at = index * PHDR_BYTES;
    const fileAt = phoff + at;
    const segmentType = table.getUint32(at, true);
    if (segmentType !== PT_LOAD && segmentType !== PT_NOTE) continue;
    const offset = safeU64(table, at + 8, source, phoff, 'segment file offset');
    const physical = safeU64(table, at + 24, source, phoff, 'segment physical address');
    const fileSize = safeU64(table, at + 32, source, phoff, 'segment file size');
    if (offset + fileSize > source.size) {
      throw new VmscopeError(
        'TRUNCATED_FILE',
        `program header ${index} needs file bytes up to 0x${(offset + fileSize).toString(16)} but the file has 0x${source.size.toString(16)}`,
        source.path,
        fileAt,
      );
    }
    if (segmentType === PT_NOTE) {
      for (const note of parseNotes(source, offset, fileSize)) notes.push(note);
    } else if (fileSize > 0) {
      // Bytes past p_filesz (up to p_memsz) are not in the file: they stay absent, never zeros.
      if (physical + fileSize > Number.MAX_SAFE_INTEGER)
        throw new VmscopeError('CORRUPT_HEADER', 'segment end overflows', source.path, fileAt);
      ranges.push({ start: physical, end: physical + fileSize, fileOffset: offset });
    }
  }
  if (ranges.length === 0)
    throw new VmscopeError('CORRUPT_HEADER', 'ELF core has no PT_LOAD segment with memory', source.path, phoff);
  return new RangeMappedImage(source, 'elf', sortedDisjoint(ranges, source), notes, cpuStates(notes));
}

export function parseNotes(source: ByteSource, offset: number, size: number): ElfNote[] {
  if (size > MAX_NOTE_SEGMENT_BYTES) {
    throw new VmscopeError('CORRUPT_HEADER', `note segment of ${size} bytes is implausibly large`, source.path, offset);
  }
  const view = readHeader(source, offset, size, 'note segment');
  const bytes = new Uint8Array(view.buffer);
  const notes: ElfNote[] = [];
  let at = 0;
  while (at + 12 <= size) {
    const nameSize = view.getUint32(at, true);
    const descSize = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + align4(nameSize);
    const next = descAt + align4(descSize);
    if (next > size) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `note (name ${nameSize} bytes, desc ${descSize} bytes) runs past its segment`,
        source.path,
        offset + at,
      );
    }
    const name = new TextDecoder().decode(bytes.subarray(nameAt, nameAt + nameSize)).replace(/\0+$/, '');
    if (notes.length === MAX_NOTES) {
      throw new VmscopeError(
        'CORRUPT_HEADER',
        `note segment holds more than ${MAX_NOTES} notes`,
        source.path,
        offset + at,
      );
    }
    notes.push({ name, type, descFileOffset: offset + descAt, desc: bytes.slice(descAt, descAt + descSize) });
    at = next;
  }
  return notes;
}

/** Note fields are 4-byte aligned; plain arithmetic, since sizes up to 2^32 overflow 32-bit bit operations. */
function align4(value: number): number {
  return Math.ceil(value / 4) * 4;
}

/** Pair the i-th NT_PRSTATUS (rip) with the i-th QEMU CPU-state note (cr3): QEMU writes one of each per vCPU. */
export function cpuStates(notes: readonly ElfNote[]): CpuState[] {
  const prstatus = notes.filter((note) => note.name === 'CORE' && note.type === NT_PRSTATUS);
  const qemu = notes.filter((note) => note.name === 'QEMU' && note.desc.length >= QEMU_CPU_STATE_CR3_OFFSET + 8);
  const states: CpuState[] = [];
  for (let cpu = 0; cpu < qemu.length; cpu++) {
    const state = new DataView(qemu[cpu]!.desc.buffer, qemu[cpu]!.desc.byteOffset);
    const status = prstatus[cpu];
    const rip =
      status && status.desc.length >= PRSTATUS_RIP_OFFSET + 8
        ? new DataView(status.desc.buffer, status.desc.byteOffset).getBigUint64(PRSTATUS_RIP_OFFSET, true)
        : 0n;
    states.push({ cpu, cr3: state.getBigUint64(QEMU_CPU_STATE_CR3_OFFSET, true), rip });
  }
  return states;
}
