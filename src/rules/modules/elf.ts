import type { ScannedUnit } from '../unit.js';
import { integer, string, type Module, type ModuleData, type ModuleType } from './types.js';

/**
 * yara's `elf` module over the unit's first bytes: header, sections (named from the section
 * header string table), segments, the dynamic section and the symbol tables, as pure functions
 * of the bytes. Anything out of the unit's bounds is left undefined, as yara leaves it; nothing
 * is trusted (counts are 16-bit, every table is read within the unit).
 */

const CONSTANTS: Record<string, number> = {
  ET_NONE: 0,
  ET_REL: 1,
  ET_EXEC: 2,
  ET_DYN: 3,
  ET_CORE: 4,
  EM_NONE: 0,
  EM_M32: 1,
  EM_SPARC: 2,
  EM_386: 3,
  EM_68K: 4,
  EM_88K: 5,
  EM_860: 7,
  EM_MIPS: 8,
  EM_MIPS_RS3_LE: 10,
  EM_PPC: 20,
  EM_PPC64: 21,
  EM_ARM: 40,
  EM_X86_64: 62,
  EM_AARCH64: 183,
  SHT_NULL: 0,
  SHT_PROGBITS: 1,
  SHT_SYMTAB: 2,
  SHT_STRTAB: 3,
  SHT_RELA: 4,
  SHT_HASH: 5,
  SHT_DYNAMIC: 6,
  SHT_NOTE: 7,
  SHT_NOBITS: 8,
  SHT_REL: 9,
  SHT_SHLIB: 10,
  SHT_DYNSYM: 11,
  SHF_WRITE: 1,
  SHF_ALLOC: 2,
  SHF_EXECINSTR: 4,
  PT_NULL: 0,
  PT_LOAD: 1,
  PT_DYNAMIC: 2,
  PT_INTERP: 3,
  PT_NOTE: 4,
  PT_SHLIB: 5,
  PT_PHDR: 6,
  PT_TLS: 7,
  PT_GNU_EH_FRAME: 0x6474e550,
  PT_GNU_STACK: 0x6474e551,
  PT_GNU_RELRO: 0x6474e552,
  PF_X: 1,
  PF_W: 2,
  PF_R: 4,
  DT_NULL: 0,
  DT_NEEDED: 1,
  DT_PLTRELSZ: 2,
  DT_PLTGOT: 3,
  DT_HASH: 4,
  DT_STRTAB: 5,
  DT_SYMTAB: 6,
  DT_RELA: 7,
  DT_RELASZ: 8,
  DT_RELAENT: 9,
  DT_STRSZ: 10,
  DT_SYMENT: 11,
  DT_INIT: 12,
  DT_FINI: 13,
  DT_SONAME: 14,
  DT_RPATH: 15,
  DT_SYMBOLIC: 16,
  DT_REL: 17,
  DT_RELSZ: 18,
  DT_RELENT: 19,
  DT_PLTREL: 20,
  DT_DEBUG: 21,
  DT_TEXTREL: 22,
  DT_JMPREL: 23,
  DT_BIND_NOW: 24,
  DT_INIT_ARRAY: 25,
  DT_FINI_ARRAY: 26,
  DT_INIT_ARRAYSZ: 27,
  DT_FINI_ARRAYSZ: 28,
  DT_RUNPATH: 29,
  DT_FLAGS: 30,
  DT_ENCODING: 32,
  STT_NOTYPE: 0,
  STT_OBJECT: 1,
  STT_FUNC: 2,
  STT_SECTION: 3,
  STT_FILE: 4,
  STT_COMMON: 5,
  STT_TLS: 6,
  STB_LOCAL: 0,
  STB_GLOBAL: 1,
  STB_WEAK: 2,
};

const struct = (fields: Record<string, ModuleType>): ModuleType => ({ kind: 'struct', fields });
const array = (of: ModuleType): ModuleType => ({ kind: 'array', of });
const symbolType = struct({
  name: string,
  value: integer,
  size: integer,
  type: integer,
  bind: integer,
  shndx: integer,
});

/** Reads little- or big-endian integers of the unit; undefined outside it. */
class Reader {
  constructor(
    private readonly unit: ScannedUnit,
    readonly bigEndian: boolean,
  ) {}

  bytes(offset: bigint, length: number): Uint8Array | undefined {
    if (offset < 0n || offset + BigInt(length) > BigInt(this.unit.size)) return undefined;
    const into = new Uint8Array(length);
    return this.unit.read(Number(offset), into) ? into : undefined;
  }

  uint(offset: bigint, size: 1 | 2 | 4 | 8): bigint | undefined {
    const bytes = this.bytes(offset, size);
    if (!bytes) return undefined;
    let value = 0n;
    for (let i = 0; i < size; i++) value = (value << 8n) | BigInt(bytes[this.bigEndian ? i : size - 1 - i]!);
    return value;
  }

  /** A NUL-terminated string at `offset` (at most 1 KiB, as names are). */
  text(offset: bigint): string | undefined {
    const available = Math.min(1024, this.unit.size - Number(offset));
    const bytes = available > 0 ? this.bytes(offset, available) : undefined;
    if (!bytes) return undefined;
    const end = bytes.indexOf(0);
    return end < 0 ? undefined : Buffer.from(bytes.subarray(0, end)).toString('latin1');
  }
}

function loadElf(unit: ScannedUnit): ModuleData {
  const constants: Record<string, ModuleData> = Object.fromEntries(
    Object.entries(CONSTANTS).map(([name, value]) => [name, BigInt(value)]),
  );
  const ident = new Reader(unit, false).bytes(0n, 16);
  if (
    !ident ||
    ident[0] !== 0x7f ||
    ident[1] !== 0x45 ||
    ident[2] !== 0x4c ||
    ident[3] !== 0x46 ||
    (ident[4] !== 1 && ident[4] !== 2)
  )
    return constants;
  const is64 = ident[4] === 2;
  const r = new Reader(unit, ident[5] === 2);
  const word = is64 ? 8 : 4;
  const at = (offset32: number, offset64: number) => BigInt(is64 ? offset64 : offset32);
  const type = r.uint(16n, 2);
  const machine = r.uint(18n, 2);
  const entry = r.uint(24n, word);
  const phOffset = r.uint(at(28, 32), word);
  const shOffset = r.uint(at(32, 40), word);
  const phEntrySize = r.uint(at(42, 54), 2);
  const phCount = r.uint(at(44, 56), 2);
  const shEntrySize = r.uint(at(46, 58), 2);
  const shCount = r.uint(at(48, 60), 2);
  const shStringIndex = r.uint(at(50, 62), 2);
  if (type === undefined || shCount === undefined || phCount === undefined) return constants;

  const sections = Array.from(
    { length: shOffset !== undefined && shEntrySize !== undefined ? Number(shCount) : 0 },
    (_, i) => {
      const base = shOffset! + BigInt(i) * shEntrySize!;
      return {
        nameOffset: r.uint(base, 4),
        type: r.uint(base + 4n, 4),
        flags: r.uint(base + 8n, word),
        address: r.uint(base + at(12, 16), word),
        offset: r.uint(base + at(16, 24), word),
        size: r.uint(base + at(20, 32), word),
        link: r.uint(base + at(24, 40), 4),
        entrySize: r.uint(base + at(36, 56), word),
      };
    },
  );
  const complete = sections.every((section) => section.entrySize !== undefined);
  const names = sections[Number(shStringIndex ?? 0n)];
  const segments = Array.from(
    { length: phOffset !== undefined && phEntrySize !== undefined ? Number(phCount) : 0 },
    (_, i) => {
      const base = phOffset! + BigInt(i) * phEntrySize!;
      return is64
        ? {
            type: r.uint(base, 4),
            flags: r.uint(base + 4n, 4),
            offset: r.uint(base + 8n, 8),
            virtual_address: r.uint(base + 16n, 8),
            physical_address: r.uint(base + 24n, 8),
            file_size: r.uint(base + 32n, 8),
            memory_size: r.uint(base + 40n, 8),
            alignment: r.uint(base + 48n, 8),
          }
        : {
            type: r.uint(base, 4),
            offset: r.uint(base + 4n, 4),
            virtual_address: r.uint(base + 8n, 4),
            physical_address: r.uint(base + 12n, 4),
            file_size: r.uint(base + 16n, 4),
            memory_size: r.uint(base + 20n, 4),
            flags: r.uint(base + 24n, 4),
            alignment: r.uint(base + 28n, 4),
          };
    },
  );

  /** A virtual address as a file offset, as yara's elf_rva_to_offset: through segments for executables, sections otherwise. */
  const fileOffset = (address: bigint): bigint | undefined => {
    if (type === 2n) {
      const segment = segments.find(
        (s) =>
          s.type === 1n &&
          s.virtual_address !== undefined &&
          s.memory_size !== undefined &&
          address >= s.virtual_address &&
          address < s.virtual_address + s.memory_size,
      );
      return segment ? segment.offset! + (address - segment.virtual_address!) : undefined;
    }
    const section = sections.find(
      (s) =>
        s.type !== 0n &&
        s.type !== 8n &&
        s.address !== undefined &&
        s.size !== undefined &&
        address >= s.address &&
        address < s.address + s.size,
    );
    return section?.offset === undefined ? undefined : section.offset + (address - section.address!);
  };

  const symbolsOf = (tableType: bigint): ModuleData[] | undefined => {
    const table = sections.find((section) => section.type === tableType);
    const strings = table?.link === undefined ? undefined : sections[Number(table.link)];
    if (!table || !strings || table.offset === undefined || table.size === undefined) return undefined;
    const entrySize = BigInt(is64 ? 24 : 16);
    const count = Math.min(Number(table.size / entrySize), 1 << 20);
    return Array.from({ length: count }, (_, i) => {
      const base = table.offset! + BigInt(i) * entrySize;
      const nameOffset = r.uint(base, 4);
      const info = r.uint(base + (is64 ? 4n : 12n), 1);
      return {
        name:
          nameOffset === undefined || strings.offset === undefined ? undefined : r.text(strings.offset + nameOffset),
        value: r.uint(base + (is64 ? 8n : 4n), word),
        size: r.uint(base + (is64 ? 16n : 8n), word),
        type: info === undefined ? undefined : info & 0xfn,
        bind: info === undefined ? undefined : info >> 4n,
        shndx: r.uint(base + (is64 ? 6n : 14n), 2),
      };
    });
  };
  const dynamicSegment = segments.find((segment) => segment.type === 2n);
  const dynamic: ModuleData[] = [];
  if (dynamicSegment?.offset !== undefined && dynamicSegment.file_size !== undefined) {
    for (let i = 0n; i < dynamicSegment.file_size / BigInt(2 * word) && i < 4096n; i++) {
      const base = dynamicSegment.offset + i * BigInt(2 * word);
      const tag = r.uint(base, word);
      if (tag === undefined) break;
      dynamic.push({ type: tag, val: r.uint(base + BigInt(word), word) });
      if (tag === 0n) break;
    }
  }
  const symtab = symbolsOf(2n);
  const dynsym = symbolsOf(11n);
  return {
    ...constants,
    type,
    machine,
    entry_point: entry === undefined ? undefined : fileOffset(entry),
    number_of_sections: shCount,
    sh_offset: shOffset,
    sh_entry_size: shEntrySize,
    number_of_segments: phCount,
    ph_offset: phOffset,
    ph_entry_size: phEntrySize,
    sections: complete
      ? sections.map((section) => ({
          type: section.type,
          flags: section.flags,
          address: section.address,
          size: section.size,
          offset: section.offset,
          name:
            names?.offset === undefined || section.nameOffset === undefined
              ? undefined
              : r.text(names.offset + section.nameOffset),
        }))
      : [],
    segments,
    dynamic_section_entries: dynamicSegment ? BigInt(dynamic.length) : undefined,
    dynamic,
    symtab_entries: symtab ? BigInt(symtab.length) : undefined,
    symtab: symtab ?? [],
    dynsym_entries: dynsym ? BigInt(dynsym.length) : undefined,
    dynsym: dynsym ?? [],
  };
}

export const elfModule: Module = {
  name: 'elf',
  load: loadElf,
  type: {
    kind: 'struct',
    fields: {
      ...Object.fromEntries(Object.keys(CONSTANTS).map((name) => [name, integer])),
      type: integer,
      machine: integer,
      entry_point: integer,
      number_of_sections: integer,
      sh_offset: integer,
      sh_entry_size: integer,
      number_of_segments: integer,
      ph_offset: integer,
      ph_entry_size: integer,
      sections: array(
        struct({ type: integer, flags: integer, address: integer, name: string, size: integer, offset: integer }),
      ),
      segments: array(
        struct({
          type: integer,
          flags: integer,
          offset: integer,
          virtual_address: integer,
          physical_address: integer,
          file_size: integer,
          memory_size: integer,
          alignment: integer,
        }),
      ),
      dynamic_section_entries: integer,
      dynamic: array(struct({ type: integer, val: integer })),
      symtab_entries: integer,
      symtab: array(symbolType),
      dynsym_entries: integer,
      dynsym: array(symbolType),
    },
  },
};
