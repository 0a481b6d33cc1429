import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { decompressToFile, ensureDecompressed, sha256File } from '../../src/image/decompress.js';
import { VmscopeError } from '../../src/util/errors.js';
import { manifest, sharedFixtures } from '../support/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vmscope-decompress-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('decompression of compressed dumps', () => {
  // The fixtures are single zstd frames with a 128 MiB window (--long=27): the pure-JS path must handle them.
  it('the pure-JS zstd decoder (no CLI) reproduces the manifest sha256', () => {
    const entry = manifest().snapshots['linux61-clean']!.formats['kallsyms.txt']!;
    const target = join(work, 'kallsyms.txt');
    decompressToFile(join(sharedFixtures, entry.file), target, { useZstdCli: false });
    expect(sha256File(target)).toBe(entry.sha256);
  });

  it('gzip inputs decompress too', () => {
    const source = join(work, 'small.raw.gz');
    writeFileSync(source, gzipSync(Buffer.from('physical memory')));
    const target = join(work, 'small.raw');
    decompressToFile(source, target);
    expect(sha256File(target)).toBe(sha256File(writeAndReturn(join(work, 'expected'), 'physical memory')));
  });

  it('a corrupt zstd stream is a typed error and leaves no partial file behind', () => {
    const source = join(work, 'broken.elf.zst');
    writeFileSync(source, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    for (const useZstdCli of [false, true]) {
      const target = join(work, `broken-${useZstdCli}.elf`);
      expect(() => decompressToFile(source, target, { useZstdCli })).toThrow(VmscopeError);
      expect(() => sha256File(target)).toThrow();
    }
  });

  it('a cached copy whose content no longer matches the expected sha256 is refused', () => {
    const source = join(work, 'data.raw.gz');
    writeFileSync(source, gzipSync(Buffer.from('abc')));
    expect(() => ensureDecompressed(source, join(work, 'cache'), '0'.repeat(64))).toThrow(/differs from the expected/);
  });
});

function writeAndReturn(path: string, text: string): string {
  writeFileSync(path, text);
  return path;
}
