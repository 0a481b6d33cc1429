import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { FolderSource, type Snapshot, type SourceProblem } from '../../src/monitor/sources/index.js';
import { fixturePath } from '../support/fixtures.js';

const PIECE_BYTES = 64 << 20;
/** The end of a yielded file is compared with its fixture's: the last write landed. */
const LAST_PIECE_CHECK_BYTES = 64 << 10;

function tailOf(path: string, bytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const tail = Buffer.alloc(bytes);
    readSync(fd, tail, 0, bytes, fstatSync(fd).size - bytes);
    return tail;
  } finally {
    closeSync(fd);
  }
}

/**
 * Copy `from` to `to` the way a slow writer does: a piece, a pause longer than the settle time,
 * the next piece.
 */
async function copySlowly(from: string, to: string, pauseMs: number): Promise<void> {
  const input = await open(from, 'r');
  const output = await open(to, 'w');
  try {
    const piece = Buffer.alloc(PIECE_BYTES);
    for (let offset = 0; ; offset += PIECE_BYTES) {
      const { bytesRead } = await input.read(piece, 0, PIECE_BYTES, offset);
      if (bytesRead === 0) break;
      await output.write(piece, 0, bytesRead, offset);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  } finally {
    await input.close();
    await output.close();
  }
}

/** Collect what the source yields until `until` says stop, checking each file as it arrives. */
async function collect(
  source: FolderSource,
  onSnapshot: (snapshot: Snapshot) => void,
  until: () => boolean,
): Promise<void> {
  for await (const snapshot of source) {
    onSnapshot(snapshot);
    await snapshot.release();
    if (until()) break;
  }
}

describe('FolderSource', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmscope-folder-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it(
    'yields each dump once, only after it is completely written, even when the writer pauses longer than settleMs',
    { timeout: 240_000 },
    async () => {
      const fixtures = [fixturePath('linux61-t0', 'elf'), fixturePath('linux61-t1', 'elf')];
      const problems: SourceProblem[] = [];
      // settleMs well under the writer's pauses: a quiet file is not enough, the ELF structure must be whole too.
      const source = new FolderSource(dir, {
        pollMs: 50,
        settleMs: 150,
        onProblem: (problem) => problems.push(problem),
      });
      const yielded: string[] = [];

      const writer = (async () => {
        for (const [index, fixture] of fixtures.entries()) {
          const target = join(dir, `dump-${index}.elf`);
          await copySlowly(fixture, target, 400);
        }
      })();
      let stopTimer: NodeJS.Timeout | undefined;
      const collecting = collect(
        source,
        (snapshot) => {
          yielded.push(snapshot.path);
          const index = Number(/dump-(\d)\.elf$/.exec(snapshot.path)![1]);
          const fixtureBytes = statSync(fixtures[index]!).size;
          // The file as the source saw it (the writer's own notice of its last write may come later on a loaded machine).
          expect(statSync(snapshot.path).size).toBe(fixtureBytes);
          expect(tailOf(snapshot.path, LAST_PIECE_CHECK_BYTES)).toEqual(
            tailOf(fixtures[index]!, LAST_PIECE_CHECK_BYTES),
          );
          const image = openImage(snapshot.path);
          expect(image.format).toBe('elf');
          image.close();
          expect(snapshot.receivedAt).toBeInstanceOf(Date);
          // After the last dump, keep polling a while longer: a second yield of either file would show up here.
          if (yielded.length === fixtures.length) stopTimer = setTimeout(() => void source.close(), 1500);
        },
        () => false,
      );
      await writer;
      await collecting;
      clearTimeout(stopTimer);

      expect(yielded.map((path) => basename(path))).toEqual(['dump-0.elf', 'dump-1.elf']);
      expect(problems).toEqual([]);
    },
  );

  it(
    'skips files present at start unless includeExisting, and picks them up when they change',
    { timeout: 60_000 },
    async () => {
      const fixture = fixturePath('linux61-t0', 'elf');
      symlinkSync(fixture, join(dir, 'old.elf'));
      const quiet = new FolderSource(dir, { pollMs: 50, settleMs: 100 });
      const seenByQuiet: string[] = [];
      setTimeout(() => void quiet.close(), 600);
      await collect(
        quiet,
        (snapshot) => seenByQuiet.push(basename(snapshot.path)),
        () => false,
      );
      expect(seenByQuiet).toEqual([]);

      // The same name, another dump (a tool that always writes `latest.elf`): a new version, yielded.
      const rewritten = new FolderSource(dir, { pollMs: 50, settleMs: 100 });
      const seenByRewritten: string[] = [];
      setTimeout(() => {
        rmSync(join(dir, 'old.elf'));
        symlinkSync(fixturePath('linux61-t1', 'elf'), join(dir, 'old.elf'));
      }, 300);
      await collect(
        rewritten,
        (snapshot) => seenByRewritten.push(basename(snapshot.path)),
        () => true,
      );
      expect(seenByRewritten).toEqual(['old.elf']);

      const backlog = new FolderSource(dir, { pollMs: 50, settleMs: 100, includeExisting: true });
      const seenByBacklog: string[] = [];
      await collect(
        backlog,
        (snapshot) => seenByBacklog.push(basename(snapshot.path)),
        () => true,
      );
      expect(seenByBacklog).toEqual(['old.elf']);
    },
  );

  it(
    'reports a dump that stays truncated as a problem, never yields it, and keeps running',
    { timeout: 60_000 },
    async () => {
      const fixture = fixturePath('linux61-t0', 'elf');
      const head = Buffer.alloc(1 << 20);
      const handle = await open(fixture, 'r');
      await handle.read(head, 0, head.length, 0);
      await handle.close();

      const problems: SourceProblem[] = [];
      const source = new FolderSource(dir, {
        pollMs: 50,
        settleMs: 100,
        brokenAfterMs: 500,
        onProblem: (problem) => problems.push(problem),
      });
      const yielded: string[] = [];
      setTimeout(() => {
        writeFileSync(join(dir, 'dead-writer.elf'), head);
        writeFileSync(join(dir, 'notes.txt.zst'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
        writeFileSync(join(dir, 'in-progress.elf.part'), head);
      }, 100);
      setTimeout(() => void source.close(), 1500);
      await collect(
        source,
        (snapshot) => yielded.push(snapshot.path),
        () => false,
      );

      expect(yielded).toEqual([]);
      expect(problems.map((problem) => [basename(problem.path!), problem.kind])).toEqual(
        expect.arrayContaining([
          ['dead-writer.elf', 'broken-file'],
          ['notes.txt.zst', 'broken-file'],
        ]),
      );
      expect(problems).toHaveLength(2); // each reported once; the .part file is not a dump name
      expect(problems.find((problem) => problem.path!.endsWith('dead-writer.elf'))!.message).toMatch(/TRUNCATED_FILE/);
      expect(problems.find((problem) => problem.path!.endsWith('.zst'))!.message).toMatch(/CORRUPT_HEADER: zstd/);
    },
  );

  it('stops on its AbortSignal between snapshots', { timeout: 30_000 }, async () => {
    const controller = new AbortController();
    const source = new FolderSource(dir, { pollMs: 50, signal: controller.signal });
    const startedAt = Date.now();
    setTimeout(() => controller.abort(), 200);
    for await (const snapshot of source) throw new Error(`unexpected ${snapshot.path}`);
    expect(Date.now() - startedAt).toBeLessThan(2000);
  });
});
