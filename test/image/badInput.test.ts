import {
  mkdtempSync,
  mkdirSync,
  writeFileSync,
  copyFileSync,
  truncateSync,
  openSync,
  readSync,
  closeSync,
  writeSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it, beforeAll } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { infoAnalysis } from '../../src/analyses/info.js';
import { VmscopeError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vmscope-bad-'));
// Copies of whole fixtures (about 1 GiB): gone with the run.
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Run the whole `info` path on a file and return the typed error it must raise, in under a second. */
async function expectTypedError(path: string, code: string): Promise<VmscopeError> {
  const started = performance.now();
  let caught: unknown;
  try {
    const context = new DumpContext(path);
    try {
      await infoAnalysis.run(context);
    } finally {
      context.close();
    }
  } catch (error) {
    caught = error;
  }
  const elapsed = performance.now() - started;
  expect(caught, `no error for ${path}`).toBeInstanceOf(VmscopeError);
  const error = caught as VmscopeError;
  expect(error.code).toBe(code);
  expect(error.file).toBe(path);
  expect(error.offset, `error ${error.describe()} names no offset`).not.toBeUndefined();
  expect(error.describe()).toContain(path);
  expect(elapsed).toBeLessThan(1000);
  return error;
}

/** File offset of program header `index` of an ELF file (e_phoff is at byte 32). */
function programHeader(path: string, index: number): number {
  const header = Buffer.alloc(64);
  const fd = openSync(path, 'r');
  readSync(fd, header, 0, 64, 0);
  closeSync(fd);
  return Number(header.readBigUInt64LE(32)) + index * 56;
}

/** The first `bytes` of a real fixture, optionally patched. */
function headOf(source: string, bytes: number, name: string, patch?: (head: Buffer) => void): string {
  const head = Buffer.alloc(bytes);
  const fd = openSync(source, 'r');
  readSync(fd, head, 0, bytes, 0);
  closeSync(fd);
  patch?.(head);
  const path = join(work, name);
  writeFileSync(path, head);
  return path;
}

describe('corrupt and hostile dump files give a typed error naming file and offset', () => {
  let elf: string;
  let lime: string;
  beforeAll(() => {
    elf = fixturePath('linux61-clean', 'elf');
    lime = fixturePath('linux61-clean', 'lime');
  });

  it('a zero-length file', async () => {
    const path = join(work, 'empty.raw');
    writeFileSync(path, '');
    await expectTypedError(path, 'EMPTY_FILE');
  });

  it('a directory', async () => {
    const path = join(work, 'a-directory');
    mkdirSync(path);
    expect((await expectTypedError(path, 'UNREADABLE_FILE')).message).toContain('directory');
  });

  it('a file that does not exist', async () => {
    await expectTypedError(join(work, 'missing.elf'), 'UNREADABLE_FILE');
  });

  it('a random 1 MiB file is raw memory with no kernel in it', async () => {
    const path = join(work, 'random.bin');
    writeFileSync(path, randomBytes(1 << 20));
    await expectTypedError(path, 'NO_KERNEL_FOUND');
  });

  it('a compressed dump is recognised by content and a corrupt one is a typed error', async () => {
    const path = join(work, 'dump.elf.zst');
    writeFileSync(path, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
    expect((await expectTypedError(path, 'CORRUPT_HEADER')).message).toContain('zstd');
  });

  it('an ELF core truncated inside its first PT_LOAD', async () => {
    const path = join(work, 'truncated.elf');
    copyFileSync(elf, path);
    truncateSync(path, 100 << 20);
    const error = await expectTypedError(path, 'TRUNCATED_FILE');
    expect(error.offset).toBe(programHeader(elf, 1)); // the first PT_LOAD follows the PT_NOTE
  });

  it('an ELF core cut inside its program header table', async () => {
    await expectTypedError(headOf(elf, 200, 'cut-phdrs.elf'), 'TRUNCATED_FILE');
  });

  it('an ELF core whose PT_LOADs overlap', async () => {
    const path = join(work, 'overlap.elf');
    copyFileSync(elf, path);
    // Move the second PT_LOAD's physical address into the first one's range.
    const fd = openSync(path, 'r+');
    const address = Buffer.alloc(8);
    address.writeBigUInt64LE(0x1000n);
    writeSync(fd, address, 0, 8, programHeader(elf, 2) + 24);
    closeSync(fd);
    expect((await expectTypedError(path, 'CORRUPT_HEADER')).message).toContain('overlap');
  });

  it('a LiME range whose end is below its start', async () => {
    const path = headOf(lime, 4096, 'backwards.lime', (head) => {
      head.writeBigUInt64LE(0x2000n, 8);
      head.writeBigUInt64LE(0x1000n, 16);
    });
    expect((await expectTypedError(path, 'CORRUPT_HEADER')).offset).toBe(16);
  });

  it('a LiME range past the end of the file', async () => {
    const error = await expectTypedError(headOf(lime, 4096, 'short.lime'), 'TRUNCATED_FILE');
    expect(error.offset).toBe(0);
  });

  it('a LiME file whose second header is garbage', async () => {
    const path = join(work, 'bad-second.lime');
    copyFileSync(lime, path);
    const fd = openSync(path, 'r+');
    const secondHeader = 32 + 0x20000000;
    writeSync(fd, Buffer.from('garbage!'), 0, 8, secondHeader);
    closeSync(fd);
    expect((await expectTypedError(path, 'CORRUPT_HEADER')).offset).toBe(secondHeader);
  });
});
