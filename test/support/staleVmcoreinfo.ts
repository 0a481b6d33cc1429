import type { MemoryImage } from '../../src/image/types.js';
import type { LinuxKernel } from '../../src/os/linux/discovery.js';
import { START_KERNEL_MAP } from '../../src/os/linux/layout.js';

/**
 * After a reboot, the VMCOREINFO note of the earlier boot can still sit in RAM, below the new
 * one, with the page tables it names: a self-consistent layout of a kernel no vCPU runs. These
 * are the bytes that plant such a note in a real dump: below the real note, naming a copy of
 * the kernel's top-level table whose kernel half differs in an unused entry (as an earlier
 * boot's would), so it still maps the kernel's text and banner.
 */
export interface StaleVmcoreinfo {
  /** (physical address, bytes) to write: the table's copy and the note. */
  readonly patches: ReadonlyArray<readonly [number, Uint8Array]>;
  /** Where the copied table lies: the DTB of the kernel the stale note describes. */
  readonly staleTable: number;
}

const PAGE = 4096;
const NOTE_NAME = 'VMCOREINFO';
/** An entry of the kernel half that maps nothing in this dump: changed, it makes the copy another table but translates the same. */
const UNUSED_KERNEL_ENTRY = 300;

/** The patches that plant an earlier boot's note below `kernel`'s own (found in `image`, from a memory note). */
export function staleVmcoreinfo(image: MemoryImage, kernel: LinuxKernel): StaleVmcoreinfo {
  const note = kernel.vmcoreinfo;
  if (note?.source !== 'memory-note' || note.physical === undefined)
    throw new Error('the kernel was not found from a VMCOREINFO note in memory');
  const [notePage, staleTable] = zeroPages(image, note.physical, 2);
  const table = new Uint8Array(PAGE);
  image.read(kernel.dtb, table);
  const entry = new DataView(table.buffer, UNUSED_KERNEL_ENTRY * 8, 8);
  if (entry.getBigUint64(0, true) !== 0n)
    throw new Error(`entry ${UNUSED_KERNEL_ENTRY} of the kernel's table is in use`);
  entry.setBigUint64(0, 0x2n, true); // writable, not present: maps nothing
  const tableVirtual = BigInt.asUintN(64, BigInt(staleTable!) - kernel.physBase + START_KERNEL_MAP);
  const text = note.text.replace(
    /^SYMBOL\(init_top_pgt\)=[0-9a-f]+$/m,
    `SYMBOL(init_top_pgt)=${tableVirtual.toString(16)}`,
  );
  if (text === note.text) throw new Error('the note names no init_top_pgt');
  return {
    patches: [
      [staleTable!, table],
      [notePage!, vmcoreinfoNote(text)],
    ],
    staleTable: staleTable!,
  };
}

/** Zeroed pages below `below` (nothing of the kernel's is there to break), lowest first. */
function zeroPages(image: MemoryImage, below: number, count: number): number[] {
  const found: number[] = [];
  const page = new Uint8Array(PAGE);
  for (let physical = 1 << 20; physical + PAGE <= below && found.length < count; physical += PAGE) {
    if (image.readPresent(physical, page) === PAGE && page.every((byte) => byte === 0)) found.push(physical);
  }
  if (found.length < count) throw new Error(`only ${found.length} zero pages below 0x${below.toString(16)}`);
  return found;
}

/** An Elf64 note as the kernel writes VMCOREINFO: namesz 11, descsz, type 0, "VMCOREINFO\0" padded to 12, then the text. */
function vmcoreinfoNote(text: string): Uint8Array {
  const desc = new TextEncoder().encode(`${text}\0`);
  const bytes = new Uint8Array(24 + desc.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, NOTE_NAME.length + 1, true);
  view.setUint32(4, desc.length, true);
  view.setUint32(8, 0, true);
  bytes.set(new TextEncoder().encode(NOTE_NAME), 12);
  bytes.set(desc, 24);
  return bytes;
}
