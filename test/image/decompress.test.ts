import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DecompressedTooLargeError,
  decompressToFile,
  ensureDecompressed,
  sha256File,
} from '../../src/image/decompress.js';
import { VmscopeError } from '../../src/util/errors.js';
import { manifest, repoRoot, sharedFixtures } from '../support/fixtures.js';

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

describe('decompression bombs as dumps (issue 13, item 10)', () => {
  const MIB = 1024 * 1024;
  /** 1 GiB of zeros in about 1 MB: 1024 gzip members of 1 MiB each (gzip -dc concatenates members). */
  function gzipBomb(path: string): string {
    const member = gzipSync(Buffer.alloc(MIB), { level: 9 });
    writeFileSync(path, Buffer.concat(Array.from({ length: 1024 }, () => member)));
    return path;
  }

  it('stops at the bound, not after inflating everything: typed error, nothing left behind', () => {
    const bomb = gzipBomb(join(work, 'bomb.raw.gz'));
    expect(statSync(bomb).size).toBeLessThan(2 * MIB);
    const target = join(work, 'bomb.raw');
    expect(() => decompressToFile(bomb, target, { maxBytes: 16 * MIB })).toThrow(DecompressedTooLargeError);
    expect(() => statSync(target)).toThrow();
    expect(readdirSync(work).filter((name) => name.startsWith('bomb.raw.partial'))).toEqual([]);
  });

  it('the pure-JS zstd decoder stops at the bound too', () => {
    const zstd = spawnSync('zstd', ['--version']);
    if (zstd.status !== 0) return expect.soft(zstd.status, 'zstd CLI needed to make the zstd bomb').toBe(0);
    const bomb = join(work, 'bomb.raw.zst');
    spawnSync('sh', ['-c', `head -c ${256 * MIB} /dev/zero | zstd -q -19 -o ${bomb}`]);
    expect(statSync(bomb).size).toBeLessThan(MIB);
    for (const useZstdCli of [false, true]) {
      const target = join(work, `zbomb-${useZstdCli}.raw`);
      expect(() => decompressToFile(bomb, target, { useZstdCli, maxBytes: 8 * MIB })).toThrow(
        DecompressedTooLargeError,
      );
      expect(() => statSync(target)).toThrow();
    }
  });

  it('info on a gzip bomb: one line naming the file and the budget, exit 2, the temporary folder left empty', () => {
    const bomb = gzipBomb(join(work, 'cli-bomb.raw.gz'));
    const temp = join(work, 'temp');
    mkdirSync(temp);
    const run = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), 'info', bomb], {
      encoding: 'utf8',
      env: { ...process.env, VMSCOPE_TEMP_DIR: temp, VMSCOPE_TEMP_BUDGET_MIB: '64' },
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(bomb);
    expect(run.stderr).toMatch(/needs more than \d+ bytes of temporary space/);
    expect(run.stderr).not.toContain('internal error');
    const leftovers = readdirSync(temp, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile());
    expect(leftovers).toEqual([]);
  });
});

function writeAndReturn(path: string, text: string): string {
  writeFileSync(path, text);
  return path;
}
