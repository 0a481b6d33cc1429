import { VmscopeError } from '../util/errors.js';
import { openElfCore } from './elf.js';
import { AVML_MAGIC, openAvml } from './avml.js';
import { FlattenedSource, isFlattened } from './flattened.js';
import { isKdump, openKdump } from './kdump.js';
import { LIME_MAGIC, openLime } from './lime.js';
import { isMigrationStream, openMigrationStream } from './migration.js';
import { RangeMappedImage } from './rangeImage.js';
import { FileSource, type ByteSource } from './source.js';
import type { MemoryImage } from './types.js';

const COMPRESSED_MAGICS: ReadonlyArray<{ magic: number[]; name: string; hint: string }> = [
  { magic: [0x28, 0xb5, 0x2f, 0xfd], name: 'zstd', hint: 'zstd -d --long=31 FILE' },
  { magic: [0x1f, 0x8b], name: 'gzip', hint: 'gunzip -k FILE' },
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], name: 'xz', hint: 'xz -dk FILE' },
];

/** Open a dump by content, not by name: ELF core and LiME by their magic, anything else is raw. */
export function openImage(path: string): MemoryImage {
  const source = new FileSource(path);
  try {
    return openImageSource(source);
  } catch (error) {
    source.close();
    throw error;
  }
}

export function openImageSource(source: ByteSource): MemoryImage {
  if (source.size === 0) throw new VmscopeError('EMPTY_FILE', 'the file is empty', source.path, 0);
  const head = new Uint8Array(Math.min(32, source.size));
  source.readAt(0, head);
  for (const { magic, name, hint } of COMPRESSED_MAGICS) {
    if (magic.every((byte, i) => head[i] === byte)) {
      throw new VmscopeError('COMPRESSED_INPUT', `this is a ${name}-compressed file; decompress it first (${hint})`, source.path, 0);
    }
  }
  const view = new DataView(head.buffer);
  if (head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) {
    return openElfCore(source);
  }
  if (head.length >= 4 && view.getUint32(0, true) === LIME_MAGIC) return openLime(source);
  if (head.length >= 4 && view.getUint32(0, true) === AVML_MAGIC) return openAvml(source);
  if (isKdump(head)) return openKdump(source);
  if (isFlattened(head)) return openKdump(new FlattenedSource(source), 'flattened');
  if (isMigrationStream(head)) return openMigrationStream(source);
  // Raw (pmemsave, /dev/mem copies, VMware .vmem): file offset = physical address, all present.
  return new RangeMappedImage(source, 'raw', [{ start: 0, end: source.size, fileOffset: 0 }]);
}
