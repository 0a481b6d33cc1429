import { closeSync, existsSync, mkdirSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../src/image/open.js';
import type { FormatCapture } from './formatCapture.js';
import { compressWhole, writeFlattened, writeKdump, writeLibvirtSave, type KdumpOptions } from './formatWriters.js';

/**
 * Every format of the one capture (formatCapture.ts): QEMU's own files plus those our writers make
 * from its ELF core (kdump with each compression and header version, DISKDUMP, a flattened copy
 * with an overwritten record, a libvirt save image, whole-file zstd/gzip/xz copies). Made once
 * into the capture's `derived/` folder.
 */
export interface FormatFile {
  readonly name: string;
  readonly path: string;
  /** The image format openImage must report. */
  readonly format: string;
  /** True when every page of the ELF core is present (no page excluded). */
  readonly complete: boolean;
}

/** The kernel's VMCOREINFO text as it sits in RAM (its ELF note's payload), for the kdump sub-header. */
export function vmcoreinfoText(raw: string): string {
  const fd = openSync(raw, 'r');
  try {
    const chunk = Buffer.alloc(64 << 20);
    const needle = Buffer.from('VMCOREINFO\0\0OSRELEASE=');
    for (let position = 0; ; position += chunk.length - needle.length) {
      const got = readSync(fd, chunk, 0, chunk.length, position);
      const at = chunk.subarray(0, got).indexOf(needle);
      if (at >= 0) {
        const text = chunk.subarray(at + 12, chunk.indexOf(0, at + 12));
        return text.toString('latin1');
      }
      if (got < chunk.length) throw new Error(`${raw}: no VMCOREINFO note in memory`);
    }
  } finally {
    closeSync(fd);
  }
}

function derive(dir: string, name: string, make: (path: string) => void): string {
  const path = join(dir, name);
  if (existsSync(path)) return path;
  const partial = `${path}.partial`;
  rmSync(partial, { force: true });
  make(partial);
  renameSync(partial, path);
  return path;
}

export function kdumpFrom(elf: string, path: string, options: KdumpOptions): void {
  const image = openImage(elf);
  try {
    writeKdump(image, path, options);
  } finally {
    image.close();
  }
}

export function formatSet(capture: FormatCapture): FormatFile[] {
  const dir = join(capture.dir, 'derived');
  mkdirSync(dir, { recursive: true });
  const vmcoreinfo = vmcoreinfoText(capture.raw);
  const elfImage = openImage(capture.elf);
  const notes = elfImage.notes;
  elfImage.close();
  const files: FormatFile[] = [
    { name: 'elf (QEMU dump-guest-memory)', path: capture.elf, format: 'elf', complete: true },
    { name: 'raw (QEMU pmemsave)', path: capture.raw, format: 'raw', complete: false },
    { name: 'migration (QEMU migrate exec:cat)', path: capture.migration, format: 'migration', complete: true },
  ];
  for (const [format, path] of Object.entries(capture.kdumpFlat))
    files.push({ name: `${format} flattened (QEMU)`, path, format: 'kdump', complete: true });
  if (!capture.kdumpZlib)
    console.warn(
      "makedumpfile is not installed (apt-get install makedumpfile): the random-access kdump-zlib (makedumpfile -R of QEMU's flattened dump) is left out of the format set",
    );
  if (capture.kdumpZlib) {
    const rearranged = capture.kdumpZlib;
    files.push({ name: 'kdump-zlib (makedumpfile -R of QEMU)', path: rearranged, format: 'kdump', complete: true });
    files.push({
      name: 'kdump-zlib flattened again, first record overwritten',
      path: derive(dir, 'kdump-zlib.reflat', (path) => writeFlattened(rearranged, path)),
      format: 'kdump',
      complete: true,
    });
  }
  const ours: Array<[string, KdumpOptions]> = [
    ['kdump-snappy.v6', { codec: 'snappy', version: 6, vmcoreinfo, notes }],
    ['kdump-zstd.v5', { codec: 'zstd', version: 5, vmcoreinfo, notes }],
    ['kdump-lzo.v4', { codec: 'lzo', version: 4, vmcoreinfo, notes }],
    ['kdump-zlib.v3', { codec: 'zlib', version: 3, vmcoreinfo }],
    ['kdump-none.v1', { codec: 'none', version: 1 }],
    ['diskdump', { codec: 'none', signature: 'DISKDUMP', version: 1 }],
  ];
  for (const [name, options] of ours) {
    files.push({
      name: `${name} (test writer)`,
      path: derive(dir, name, (path) => kdumpFrom(capture.elf, path, options)),
      format: 'kdump',
      complete: true,
    });
  }
  files.push({
    name: 'libvirt save image',
    path: derive(dir, 'libvirt.save', (path) => writeLibvirtSave(capture.migration, path)),
    format: 'migration',
    complete: true,
  });
  files.push({
    name: 'raw.zst',
    path: derive(dir, 'raw.zst', (path) => compressWhole(capture.raw, path, 'zstd')),
    format: 'raw',
    complete: false,
  });
  files.push({
    name: 'migration.gz',
    path: derive(dir, 'migration.gz', (path) => compressWhole(capture.migration, path, 'gzip')),
    format: 'migration',
    complete: true,
  });
  files.push({
    name: 'kdump-snappy.xz',
    path: derive(dir, 'kdump-snappy.xz', (path) => compressWhole(join(dir, 'kdump-snappy.v6'), path, 'xz')),
    format: 'kdump',
    complete: true,
  });
  return files;
}
