import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PhysicalRange } from '../image/types.js';
import { VmscopeError } from '../util/errors.js';
import { readGuestRamLayout } from './qemuLayout.js';
import type { QmpClient } from './qmp.js';

/**
 * `vmscope snapshot`: an ELF core of a live guest, as `dump-guest-memory` writes it (a PT_LOAD
 * per guest-physical block, an NT_PRSTATUS and a QEMU CPU-state note per vCPU), but copied from
 * the shared RAM file while the guest is paused once, instead of QEMU writing every page
 * through its migration-safe path. Blocks that are not in the file (the BIOS ROM) are fetched
 * with `pmemsave` in the same pause.
 */

const ELF_HEADER_BYTES = 64;
const PHDR_BYTES = 56;
const PRSTATUS_BYTES = 336;
const PRSTATUS_REGS_OFFSET = 112;
/** QEMUCPUState (target/i386/arch_dump.c): version, size, 18 u64 registers, 10 segments, cr[5], kernel_gs_base. */
const QEMU_CPU_STATE_BYTES = 8 + 18 * 8 + 10 * 24 + 5 * 8 + 8;
const COPY_CHUNK_BYTES = 8 << 20;

/** One vCPU's registers from `info registers -a`: plain registers by name, segments as [selector, base, limit, flags]. */
interface CpuRegisters {
  readonly values: ReadonlyMap<string, bigint>;
  readonly segments: ReadonlyMap<string, readonly [bigint, bigint, bigint, bigint]>;
}

export function parseRegisterDump(text: string): CpuRegisters[] {
  const cpus: CpuRegisters[] = [];
  for (const block of text.split(/^(?=CPU#\d+)/m)) {
    if (!/^CPU#\d+/.test(block)) continue;
    const values = new Map<string, bigint>();
    for (const match of block.matchAll(/\b([A-Z][A-Z0-9]*) ?=([0-9a-f]{1,16})\b/g)) {
      values.set(match[1]!, BigInt('0x' + match[2]));
    }
    const segments = new Map<string, readonly [bigint, bigint, bigint, bigint]>();
    for (const match of block.matchAll(
      /^(ES|CS|SS|DS|FS|GS|LDT|TR) *=([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)/gm,
    )) {
      const [, name, selector, base, limit, flags] = match;
      segments.set(name!, [BigInt('0x' + selector), BigInt('0x' + base), BigInt('0x' + limit), BigInt('0x' + flags)]);
    }
    for (const match of block.matchAll(/^(GDT|IDT) *= *([0-9a-f]+) ([0-9a-f]+)/gm)) {
      segments.set(match[1]!, [0n, BigInt('0x' + match[2]), BigInt('0x' + match[3]), 0n]);
    }
    cpus.push({ values, segments });
  }
  return cpus;
}

const GPRS = [
  'RAX',
  'RBX',
  'RCX',
  'RDX',
  'RSI',
  'RDI',
  'RSP',
  'RBP',
  'R8',
  'R9',
  'R10',
  'R11',
  'R12',
  'R13',
  'R14',
  'R15',
];
const SEGMENTS = ['CS', 'DS', 'ES', 'FS', 'GS', 'SS', 'LDT', 'TR', 'GDT', 'IDT'];
/** user_regs_struct order in NT_PRSTATUS. */
const PRSTATUS_REGS = [
  'R15',
  'R14',
  'R13',
  'R12',
  'RBP',
  'RBX',
  'R11',
  'R10',
  'R9',
  'R8',
  'RAX',
  'RCX',
  'RDX',
  'RSI',
  'RDI',
  'ORIG_RAX',
  'RIP',
  'CS',
  'RFL',
  'RSP',
  'SS',
  'FS_BASE',
  'GS_BASE',
  'DS',
  'ES',
  'FS',
  'GS',
];

function note(name: string, type: number, desc: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name + '\0');
  const nameSize = Math.ceil(nameBytes.length / 4) * 4;
  const descSize = Math.ceil(desc.length / 4) * 4;
  const bytes = new Uint8Array(12 + nameSize + descSize);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, nameBytes.length, true);
  view.setUint32(4, desc.length, true);
  view.setUint32(8, type, true);
  bytes.set(nameBytes, 12);
  bytes.set(desc, 12 + nameSize);
  return bytes;
}

function prstatus(cpu: CpuRegisters, index: number): Uint8Array {
  const desc = new Uint8Array(PRSTATUS_BYTES);
  const view = new DataView(desc.buffer);
  view.setUint32(32, index + 1, true); // pr_pid: QEMU numbers vCPUs from 1
  PRSTATUS_REGS.forEach((name, at) => {
    const segment = cpu.segments.get(name);
    const value =
      name === 'FS_BASE'
        ? cpu.segments.get('FS')?.[1]
        : name === 'GS_BASE'
          ? cpu.segments.get('GS')?.[1]
          : segment
            ? segment[0]
            : cpu.values.get(name);
    view.setBigUint64(PRSTATUS_REGS_OFFSET + at * 8, value ?? 0n, true);
  });
  return note('CORE', 1, desc);
}

function qemuCpuState(cpu: CpuRegisters): Uint8Array {
  const desc = new Uint8Array(QEMU_CPU_STATE_BYTES);
  const view = new DataView(desc.buffer);
  view.setUint32(0, 1, true);
  view.setUint32(4, QEMU_CPU_STATE_BYTES, true);
  let at = 8;
  for (const name of [...GPRS, 'RIP', 'RFL']) {
    view.setBigUint64(at, cpu.values.get(name) ?? 0n, true);
    at += 8;
  }
  for (const name of SEGMENTS) {
    const [selector, base, limit, flags] = cpu.segments.get(name) ?? [0n, 0n, 0n, 0n];
    view.setUint32(at, Number(selector), true);
    view.setUint32(at + 4, Number(limit), true);
    view.setUint32(at + 8, Number(flags), true);
    view.setBigUint64(at + 16, base, true);
    at += 24;
  }
  for (const name of ['CR0', 'CR1', 'CR2', 'CR3', 'CR4']) {
    view.setBigUint64(at, cpu.values.get(name) ?? 0n, true);
    at += 8;
  }
  return note('QEMU', 0, desc);
}

/** A block of the core: guest-physical range, and the file (and offset) its bytes are copied from. */
interface CoreBlock extends PhysicalRange {
  readonly file: string;
}

export interface LiveSnapshotResult {
  readonly output: string;
  readonly bytes: number;
  /** How long the guest was paused, in ms (0 when it was already paused). */
  readonly pausedMs: number;
  readonly blocks: number;
}

/** Pause the guest (unless already paused), write the core, resume it. */
export async function writeLiveSnapshot(
  client: QmpClient,
  ramPath: string,
  output: string,
): Promise<LiveSnapshotResult> {
  const wasRunning = (await client.queryStatus()).running;
  if (wasRunning) await client.stop();
  const stoppedAt = performance.now();
  const scratch = mkdtempSync(join(tmpdir(), 'vmscope-snap-'));
  try {
    const layout = await readGuestRamLayout(client, ramPath);
    const blocks: CoreBlock[] = layout.ranges.map((range) => ({ ...range, file: ramPath }));
    // What the guest sees as RAM or ROM outside the shared file: dump-guest-memory dumps it, so does this.
    for (const entry of layout.flatView) {
      if (entry.region === layout.memdev || (entry.kind !== 'ram' && entry.kind !== 'rom')) continue;
      const file = join(scratch, `block-${entry.start.toString(16)}`);
      await client.execute('pmemsave', { val: entry.start, size: entry.end - entry.start, filename: file });
      blocks.push({ start: entry.start, end: entry.end, fileOffset: 0, file });
    }
    blocks.sort((a, b) => a.start - b.start);
    const cpus = parseRegisterDump(await client.humanMonitorCommand('info registers -a'));
    const bytes = writeCore(output, blocks, cpus);
    return { output, bytes, blocks: blocks.length, pausedMs: wasRunning ? performance.now() - stoppedAt : 0 };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    if (wasRunning) await client.cont();
  }
}

function writeCore(output: string, blocks: readonly CoreBlock[], cpus: readonly CpuRegisters[]): number {
  const notes = [...cpus.map(prstatus), ...cpus.map(qemuCpuState)];
  const notesBytes = notes.reduce((sum, bytes) => sum + bytes.length, 0);
  const headers = 1 + blocks.length;
  const notesOffset = ELF_HEADER_BYTES + headers * PHDR_BYTES;
  const header = new Uint8Array(notesOffset);
  const view = new DataView(header.buffer);
  header.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  view.setUint16(16, 4, true); // ET_CORE
  view.setUint16(18, 62, true); // EM_X86_64
  view.setUint32(20, 1, true);
  view.setBigUint64(32, BigInt(ELF_HEADER_BYTES), true);
  view.setUint16(52, ELF_HEADER_BYTES, true);
  view.setUint16(54, PHDR_BYTES, true);
  view.setUint16(56, headers, true);
  view.setUint16(58, 64, true);
  const segment = (index: number, type: number, offset: number, physical: number, size: number) => {
    const at = ELF_HEADER_BYTES + index * PHDR_BYTES;
    view.setUint32(at, type, true);
    view.setBigUint64(at + 8, BigInt(offset), true);
    view.setBigUint64(at + 16, BigInt(physical), true);
    view.setBigUint64(at + 24, BigInt(physical), true);
    view.setBigUint64(at + 32, BigInt(size), true);
    view.setBigUint64(at + 40, BigInt(size), true);
  };
  segment(0, 4, notesOffset, 0, notesBytes);
  let offset = notesOffset + notesBytes;
  blocks.forEach((block, index) => {
    segment(index + 1, 1, offset, block.start, block.end - block.start);
    offset += block.end - block.start;
  });

  const fd = openSync(output, 'w');
  try {
    writeSync(fd, header);
    for (const bytes of notes) writeSync(fd, bytes);
    const chunk = new Uint8Array(COPY_CHUNK_BYTES);
    for (const block of blocks) copyBlock(fd, block, chunk);
  } finally {
    closeSync(fd);
  }
  return offset;
}

function copyBlock(fd: number, block: CoreBlock, chunk: Uint8Array): void {
  const source = openSync(block.file, 'r');
  try {
    for (let done = 0; done < block.end - block.start;) {
      const want = Math.min(chunk.length, block.end - block.start - done);
      const got = readSync(source, chunk, 0, want, block.fileOffset + done);
      if (got === 0)
        throw new VmscopeError(
          'TRUNCATED_FILE',
          'the file ends inside a guest RAM block',
          block.file,
          block.fileOffset + done,
        );
      writeSync(fd, chunk, 0, got);
      done += got;
    }
  } finally {
    closeSync(source);
  }
}
