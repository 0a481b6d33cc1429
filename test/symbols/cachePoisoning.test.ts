import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { checkAnalysis } from '../../src/analyses/check.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import { fixturePath, truth } from '../support/fixtures.js';

/**
 * The profile cache must not be poisoned: a dump whose BTF an intruder altered derives a wrong
 * profile, and that profile must never be used for another dump of the same kernel build.
 */
const work = mkdtempSync(join(tmpdir(), 'vmscope-poison-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const BTF_STRUCT = 4;
/** Bytes after the 12-byte common header of a BTF type, by kind (struct/union members: 12 each). */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1:
    case 14:
    case 17:
      return 4; // INT, VAR, DECL_TAG
    case 3:
      return 12; // ARRAY
    case 4:
    case 5:
    case 15:
    case 19:
      return vlen * 12; // STRUCT, UNION, DATASEC, ENUM64
    case 6:
    case 13:
      return vlen * 8; // ENUM, FUNC_PROTO
    default:
      return 0;
  }
}

/** File offset of `struct task_struct`'s member `tasks` record's bit offset, in the BTF blob at `btf`. */
function taskListMemberOffset(blob: Buffer, btfFileOffset: number): { at: number; bits: number; childrenBits: number } {
  const headerLength = blob.readUInt32LE(4);
  const typeStart = headerLength + blob.readUInt32LE(8);
  const typeEnd = typeStart + blob.readUInt32LE(12);
  const stringStart = headerLength + blob.readUInt32LE(16);
  const name = (offset: number) => blob.toString('latin1', stringStart + offset, blob.indexOf(0, stringStart + offset));
  for (let at = typeStart; at < typeEnd;) {
    const info = blob.readUInt32LE(at + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    if (kind === BTF_STRUCT && name(blob.readUInt32LE(at)) === 'task_struct') {
      const members = Array.from({ length: vlen }, (_, i) => at + 12 + i * 12);
      const tasks = members.find((member) => name(blob.readUInt32LE(member)) === 'tasks')!;
      const children = members.find((member) => name(blob.readUInt32LE(member)) === 'children')!;
      return {
        at: btfFileOffset + tasks + 8,
        bits: blob.readUInt32LE(tasks + 8),
        childrenBits: blob.readUInt32LE(children + 8),
      };
    }
    at += 12 + extraBytes(kind, vlen);
  }
  throw new Error('no task_struct in the BTF');
}

describe('profile cache poisoning', () => {
  it('a profile derived from a dump with altered BTF is never used for the clean dump of the same kernel', async () => {
    const cacheDir = join(work, 'profiles');
    const clean = fixturePath('linux61-clean', 'raw');
    const tampered = join(work, 'tampered.raw');
    copyFileSync(clean, tampered);

    // Move task_struct.tasks onto task_struct.children in the copy's BTF (raw: file offset = physical).
    const context = new DumpContext(clean, { cacheDir: false });
    let patch: { at: number; bits: number; childrenBits: number };
    try {
      const profile = await context.profile();
      const start = context.kernel.space.translate(profile.requireSymbol('__start_BTF')).physical;
      const length = Number(profile.requireSymbol('__stop_BTF') - profile.requireSymbol('__start_BTF'));
      const blob = Buffer.alloc(length);
      const fd = openSync(clean, 'r');
      readSync(fd, blob, 0, length, start);
      closeSync(fd);
      patch = taskListMemberOffset(blob, start);
    } finally {
      context.close();
    }
    const word = Buffer.alloc(4);
    word.writeUInt32LE(patch.childrenBits);
    const fd = openSync(tampered, 'r+');
    writeSync(fd, word, 0, 4, patch.at);
    closeSync(fd);

    // The tampered dump derives (and caches) its wrong profile: its task list walk is now wrong.
    const poisoned = new DumpContext(tampered, { cacheDir });
    try {
      expect(poisoned.computations.get('profile') ?? 0).toBe(0);
      expect((await poisoned.profile()).offsetOf('task_struct', 'tasks')).toBe(patch.childrenBits / 8);
    } finally {
      poisoned.close();
    }
    expect(readdirSync(cacheDir).length).toBe(1);

    // The clean dump with the same cache: its own profile, the guest's true process list, nothing hidden.
    const victim = new DumpContext(clean, { cacheDir });
    try {
      const profile = await victim.profile();
      expect(profile.offsetOf('task_struct', 'tasks')).toBe(patch.bits / 8);
      const listed = (await pslistAnalysis.run(victim)).rows.map((row) => row.pid);
      const expected = (truth('linux61-clean').processes as Array<{ pid: number; kernel_thread: boolean }>)
        .filter((process) => !process.kernel_thread)
        .map((process) => process.pid);
      for (const pid of expected) expect(listed).toContain(pid);
      expect((await checkAnalysis.run(victim)).rows).toEqual([]);
    } finally {
      victim.close();
    }
    expect(readdirSync(cacheDir).length).toBe(2); // each derivation under its own fingerprint

    // A second clean run uses the clean profile from the cache.
    const again = new DumpContext(clean, { cacheDir });
    try {
      expect((await again.profile()).origin).toBe('cache');
      expect((await again.profile()).offsetOf('task_struct', 'tasks')).toBe(patch.bits / 8);
    } finally {
      again.close();
    }
  });

  it('a cache file edited or cut short is ignored, not trusted', async () => {
    const cacheDir = join(work, 'edited');
    const dump = fixturePath('linux61-clean', 'elf');
    const first = new DumpContext(dump, { cacheDir });
    await first.profile();
    first.close();
    const [file] = readdirSync(cacheDir);
    const path = join(cacheDir, file!);
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(path, 'utf8');
    for (const edited of [text.slice(0, text.length - 100), text.replace('"task_struct"', '"task_strucz"'), '{}', '']) {
      writeFileSync(path, edited);
      const context = new DumpContext(dump, { cacheDir });
      try {
        expect((await context.profile()).origin).toBe('derived');
      } finally {
        context.close();
      }
    }
  });

  it('a cache folder that cannot be written is a warning, and the answer comes anyway', async () => {
    const notAFolder = join(work, 'a-file');
    writeFileSync(notAFolder, '');
    for (const cacheDir of [notAFolder, '/proc/self', '/dev/null']) {
      const context = new DumpContext(fixturePath('linux61-clean', 'elf'), { cacheDir });
      try {
        const result = await pslistAnalysis.run(context);
        expect(result.rows.length).toBeGreaterThan(0);
        expect(context.kernel.warnings.some((warning) => warning.startsWith('profile cache: cannot write'))).toBe(true);
      } finally {
        context.close();
      }
    }
  });
});
