import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDecompressed } from '../../src/image/decompress.js';

/**
 * The shared fixtures: real QEMU snapshots (zstd) beside the repo in ../shared/fixtures, with
 * the guest's own ground truth. Tests decompress what they need into the gitignored .cache once,
 * keyed by the manifest's sha256.
 */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const sharedFixtures = process.env.VMSCOPE_FIXTURES ?? resolve(repoRoot, '../shared/fixtures');
export const cacheDir = join(repoRoot, '.cache', 'fixtures');

export type FixtureFormat = 'elf' | 'lime' | 'raw';

interface ManifestEntry {
  file: string;
  bytes: number;
  sha256: string;
}
interface Manifest {
  snapshots: Record<string, { formats: Record<string, ManifestEntry>; kernel: string; mode: string; tag: string }>;
}

export function manifest(): Manifest {
  return JSON.parse(readFileSync(join(sharedFixtures, 'MANIFEST.json'), 'utf8')) as Manifest;
}

export function snapshotNames(): string[] {
  return Object.keys(manifest().snapshots);
}

/** Every (snapshot, dump format) pair the fixtures hold. */
export function dumpFixtures(): Array<{ name: string; format: FixtureFormat }> {
  return Object.entries(manifest().snapshots).flatMap(([name, snapshot]) =>
    (['elf', 'lime', 'raw'] as const)
      .filter((format) => format in snapshot.formats)
      .map((format) => ({ name, format })),
  );
}

/** Snapshots held in more than one dump format, with those formats. */
export function multiFormatSnapshots(): Array<{ name: string; formats: FixtureFormat[] }> {
  return snapshotNames()
    .map((name) => ({
      name,
      formats: dumpFixtures()
        .filter((fixture) => fixture.name === name)
        .map((fixture) => fixture.format),
    }))
    .filter((snapshot) => snapshot.formats.length > 1);
}

/** Path of the decompressed file (`elf`, `lime`, `raw` or `kallsyms.txt`), decompressing it on first use. */
export function fixturePath(name: string, format: FixtureFormat | 'avml' | 'kallsyms.txt'): string {
  const entry = manifest().snapshots[name]?.formats[format];
  if (!entry) throw new Error(`fixture ${name} has no ${format}`);
  const source = join(sharedFixtures, entry.file);
  if (!existsSync(source)) throw new Error(`missing fixture ${source}: ../shared/fixtures must sit beside the repo`);
  return ensureDecompressed(source, cacheDir, entry.sha256);
}

// The truth files are the guest's own words: a loose type, read where used.
export interface Truth {
  kernel: { release: string; linux_banner: string; btf: { size: number; sha256: string } };
  layout: {
    text_virt: string;
    text_phys: string;
    virtual_kaslr_slide: string;
    phys_base_value: string;
    page_offset_base_value: string;
    init_top_pgt_phys: string;
    paging_levels: number;
    kaslr_enabled: boolean;
    kcore_loads: Array<{ vaddr: string; paddr: string; size: string }>;
  };
  [key: string]: unknown;
}

export function truth(name: string): Truth {
  return JSON.parse(readFileSync(join(sharedFixtures, `${name}.truth.json`), 'utf8')) as Truth;
}
