import { createHash } from 'node:crypto';
// Inputs of the community-set golden test (test/rules/community.test.ts), built the same way by
// scripts/yara-golden.mjs (which runs yara on them) and by the test (which runs vmscope), so no
// megabytes are stored in the repository: 1 MiB of pseudo-random bytes, and files of the
// executable headers rules test with uint16(0) == 0x5a4d and the like.

/** `length` bytes of xorshift32 from `seed`: the same bytes every time. */
export function pseudoRandomBytes(length, seed = 0x2545f491) {
  let state = seed >>> 0 || 1;
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** A PE file's first page: DOS header and stub, PE signature, COFF and optional headers, three section headers. */
export function peHeader({ is64 = false, dll = false } = {}) {
  const page = Buffer.alloc(0x400);
  page.write('MZ', 0, 'latin1');
  page.writeUInt16LE(0x90, 2);
  page.writeUInt16LE(3, 4);
  page.writeUInt16LE(4, 8);
  page.writeUInt16LE(0xffff, 0x0c);
  page.writeUInt16LE(0xb8, 0x10);
  page.writeUInt16LE(0x40, 0x18);
  page.writeUInt32LE(0x80, 0x3c);
  Buffer.from([0x0e, 0x1f, 0xba, 0x0e, 0x00, 0xb4, 0x09, 0xcd, 0x21, 0xb8, 0x01, 0x4c, 0xcd, 0x21]).copy(page, 0x40);
  page.write('This program cannot be run in DOS mode.\r\r\n$', 0x4e, 'latin1');
  page.write('PE\0\0', 0x80, 'latin1');
  const coff = 0x84;
  page.writeUInt16LE(is64 ? 0x8664 : 0x14c, coff);
  page.writeUInt16LE(3, coff + 2);
  page.writeUInt32LE(0x5f5e1000, coff + 4);
  const optionalSize = is64 ? 0xf0 : 0xe0;
  page.writeUInt16LE(optionalSize, coff + 16);
  page.writeUInt16LE((dll ? 0x2000 : 0) | (is64 ? 0x22 : 0x102), coff + 18);
  const optional = coff + 20;
  page.writeUInt16LE(is64 ? 0x20b : 0x10b, optional);
  page.writeUInt32LE(0x1000, optional + 4);
  page.writeUInt32LE(0x1234, optional + 16);
  page.writeUInt32LE(0x1000, optional + 20);
  page.writeUInt32LE(0x1000, optional + (is64 ? 32 : 32));
  page.writeUInt32LE(0x200, optional + 36);
  page.writeUInt16LE(is64 ? 6 : 4, optional + 40);
  page.writeUInt32LE(0x4000, optional + 56);
  page.writeUInt32LE(0x400, optional + 60);
  page.writeUInt16LE(is64 ? 3 : 2, optional + 68);
  page.writeUInt32LE(16, optional + (is64 ? 108 : 92));
  let section = optional + optionalSize;
  for (const [name, rva] of [
    ['.text', 0x1000],
    ['.rdata', 0x2000],
    ['.data', 0x3000],
  ]) {
    page.write(name, section, 'latin1');
    page.writeUInt32LE(0x1000, section + 8);
    page.writeUInt32LE(rva, section + 12);
    page.writeUInt32LE(0x200, section + 16);
    page.writeUInt32LE(0x400 + (rva - 0x1000) / 8, section + 20);
    page.writeUInt32LE(name === '.text' ? 0x60000020 : 0xc0000040, section + 36);
    section += 40;
  }
  return page;
}

/** An ELF file's header and program headers (x86-64 or i386, executable or shared object). */
export function elfHeader({ is64 = true, type = 2 } = {}) {
  const page = Buffer.alloc(0x200);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0]).copy(page, 0);
  page.writeUInt16LE(type, 16);
  page.writeUInt16LE(is64 ? 0x3e : 3, 18);
  page.writeUInt32LE(1, 20);
  if (is64) {
    page.writeBigUInt64LE(0x401000n, 24);
    page.writeBigUInt64LE(64n, 32);
    page.writeUInt16LE(64, 52);
    page.writeUInt16LE(56, 54);
    page.writeUInt16LE(2, 56);
    page.writeUInt16LE(64, 58);
    for (let i = 0; i < 2; i++) {
      const header = 64 + i * 56;
      page.writeUInt32LE(i === 0 ? 6 : 1, header);
      page.writeUInt32LE(5, header + 4);
      page.writeBigUInt64LE(0x400000n, header + 16);
    }
  } else {
    page.writeUInt32LE(0x8049000, 24);
    page.writeUInt32LE(52, 28);
    page.writeUInt16LE(52, 40);
    page.writeUInt16LE(32, 42);
    page.writeUInt16LE(1, 44);
    page.writeUInt16LE(40, 46);
    page.writeUInt32LE(1, 52);
    page.writeUInt32LE(0x8048000, 52 + 8);
  }
  return page;
}

/** Headers at 4 KiB steps, the first at offset 0 (where rules look), and a tail that stops mid-integer. */
function headerFile(first, ...rest) {
  const pages = [first, ...rest].map((header) => {
    const page = Buffer.alloc(0x1000, 0);
    header.copy(page);
    return page;
  });
  return Buffer.concat([...pages, Buffer.from([0x4d, 0x5a, 0x90])]);
}

/** The inputs by file name. */
export function communityInputs() {
  return {
    'random-1m.bin': pseudoRandomBytes(1 << 20),
    'headers-pe.bin': headerFile(
      peHeader(),
      peHeader({ is64: true, dll: true }),
      elfHeader(),
      elfHeader({ is64: false, type: 3 }),
    ),
    'headers-elf.bin': headerFile(elfHeader({ type: 3 }), peHeader({ dll: true }), elfHeader({ is64: false })),
  };
}

/**
 * What a community golden stores instead of yara's output: per matching rule its number of
 * string matches, and the sha256 of every `rule $string offset` line (a rule without string
 * matches as `rule`) sorted, so a golden of a 512 MiB dump stays a few hundred bytes.
 */
export function matchSummary(matches) {
  const lines = [];
  const rules = {};
  for (const { rule, strings } of matches) {
    rules[rule] = strings.length;
    if (strings.length === 0) lines.push(rule);
    for (const { string, offset } of strings) lines.push(`${rule} ${string} ${offset}`);
  }
  lines.sort();
  const sortedRules = Object.fromEntries(Object.entries(rules).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    matches: lines.length,
    rules: sortedRules,
    sha256: createHash('sha256').update(lines.join('\n')).digest('hex'),
  };
}

/** `yara -s` output as rules with their string matches (offsets only; test/rules/yaraOutput.ts also reads the data). */
export function yaraMatches(output) {
  const matches = [];
  for (const line of output.split('\n')) {
    const string = /^0x([0-9a-f]+):(\$[A-Za-z0-9_]*):/.exec(line);
    if (string) matches[matches.length - 1].strings.push({ string: string[2], offset: parseInt(string[1], 16) });
    else if (line !== '') matches.push({ rule: line.split(' ')[0], strings: [] });
  }
  return matches;
}
