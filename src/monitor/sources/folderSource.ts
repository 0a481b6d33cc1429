import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { openImage } from '../../image/open.js';
import { isVmscopeError } from '../../util/errors.js';
import { pause, ProducingSource, type Snapshot, type SourceOptions } from './source.js';

export interface FolderSourceOptions extends SourceOptions {
  /** How often the folder is listed. Default 1000 ms. */
  pollMs?: number;
  /** How long a file's size and mtime must stay unchanged before it is looked at. Default 2000 ms. */
  settleMs?: number;
  /**
   * Which file names are dumps (tested against the base name). Default: everything except
   * dotfiles and the usual in-progress names (`*.tmp`, `*.part`, `*.partial`).
   */
  pattern?: RegExp;
  /**
   * Also yield dumps already in the folder at start. Default false: a watcher restarted on a
   * folder that keeps its history should not re-analyse hundreds of old 512 MiB+ dumps. A file
   * present at start that is still growing, or that is rewritten later, is new and is yielded.
   */
  includeExisting?: boolean;
  /**
   * A file whose size has been stable this long but whose structure is still incomplete (or that
   * cannot be opened at all) is reported once as a `broken-file` problem and left alone until it
   * changes. Default 120 000 ms: a writer that stalls longer than that has died.
   */
  brokenAfterMs?: number;
}

const DEFAULT_PATTERN = /^(?!\.)(?!.*\.(?:tmp|part|partial)$)/i;

/** What the folder showed of one file at the last poll. */
interface FileState {
  identity: string;
  /** When the identity last changed: the file has been quiet since then. */
  quietSince: number;
  status: 'baseline' | 'pending' | 'yielded' | 'broken';
}

/** Is the file's structure whole: 'complete', 'incomplete' (retry later) or an error for a bad file. */
type Completeness =
  { kind: 'complete' } | { kind: 'incomplete'; reason: string } | { kind: 'unusable'; reason: string; cause: unknown };

/**
 * Dumps dropped into a folder by something else (virsh dump, a hypervisor's snapshot hook, scp).
 *
 * Polling rather than fs.watch: fs.watch misses or coalesces events on the filesystems dumps
 * usually land on (NFS/SMB/9p/virtiofs shares, container bind mounts), and "complete" needs a
 * quiet period measured by timers anyway; a readdir + stat per second is negligible beside
 * reading a dump.
 *
 * A file is complete when its size, mtime and inode have not changed for `settleMs` AND
 * openImage accepts its structure: for ELF every PT_LOAD lies inside the file, for LiME every
 * range fits, so a dump still being written (or truncated) fails with TRUNCATED_FILE and is
 * retried at the next poll. Raw dumps have no structure to check: only the quiet period
 * guards them. Each version of a file (path + inode + size + mtime) is yielded once.
 */
export class FolderSource extends ProducingSource {
  private readonly pollMs: number;
  private readonly settleMs: number;
  private readonly pattern: RegExp;
  private readonly includeExisting: boolean;
  private readonly brokenAfterMs: number;
  private readonly files = new Map<string, FileState>();
  private folderUnreadable = false;

  constructor(
    readonly dir: string,
    options: FolderSourceOptions = {},
  ) {
    super(options);
    this.pollMs = options.pollMs ?? 1000;
    this.settleMs = options.settleMs ?? 2000;
    this.pattern = options.pattern ?? DEFAULT_PATTERN;
    this.includeExisting = options.includeExisting ?? false;
    this.brokenAfterMs = options.brokenAfterMs ?? 120_000;
  }

  protected async *produce(): AsyncGenerator<Snapshot, void> {
    let firstPoll = true;
    while (!this.stopping.aborted) {
      const ready = await this.poll(firstPoll);
      firstPoll = false;
      for (const path of ready) {
        if (this.stopping.aborted) return;
        yield { path, receivedAt: new Date(), release: () => Promise.resolve() };
      }
      if (!(await pause(this.pollMs, this.stopping))) return;
    }
  }

  protected cleanup(): Promise<void> {
    this.files.clear();
    return Promise.resolve();
  }

  /** One look at the folder: update what is known of each file, return the ones now complete, oldest first. */
  private async poll(firstPoll: boolean): Promise<string[]> {
    const now = Date.now();
    const listed = await this.listDumpFiles();
    for (const path of this.files.keys()) if (!listed.has(path)) this.files.delete(path);

    const ready: Array<{ path: string; mtimeMs: number }> = [];
    for (const [path, { identity, mtimeMs }] of listed) {
      let state = this.files.get(path);
      if (!state || state.identity !== identity) {
        // New file or a new version of it (still being written, or rewritten): start the quiet period again.
        const baseline = firstPoll && !this.includeExisting;
        // A file present at start was not watched: its mtime is the best word on how long it has been quiet.
        const quietSince = firstPoll ? Math.min(now, mtimeMs) : now;
        state = { identity, quietSince, status: baseline ? 'baseline' : 'pending' };
        this.files.set(path, state);
      }
      if (state.status !== 'pending') continue;
      const quietFor = now - state.quietSince;
      if (quietFor < this.settleMs) continue;

      const completeness = checkStructure(path);
      if (completeness.kind === 'complete') {
        state.status = 'yielded';
        ready.push({ path, mtimeMs });
      } else if (completeness.kind === 'unusable' || quietFor >= this.brokenAfterMs) {
        state.status = 'broken';
        const reason = completeness.reason;
        this.reportProblem({
          kind: 'broken-file',
          path,
          message:
            completeness.kind === 'unusable'
              ? reason
              : `still incomplete after ${Math.round(quietFor / 1000)} s without changing: ${reason}`,
          cause: completeness.kind === 'unusable' ? completeness.cause : undefined,
        });
      }
    }
    return ready.sort((a, b) => a.mtimeMs - b.mtimeMs || a.path.localeCompare(b.path)).map((file) => file.path);
  }

  private async listDumpFiles(): Promise<Map<string, { identity: string; mtimeMs: number }>> {
    const found = new Map<string, { identity: string; mtimeMs: number }>();
    let names: string[];
    try {
      names = await readdir(this.dir);
      this.folderUnreadable = false;
    } catch (error) {
      // The folder may be an unmounted share for a while: report once, keep polling.
      if (!this.folderUnreadable) {
        this.reportProblem({
          kind: 'broken-file',
          path: this.dir,
          message: `cannot list the folder: ${(error as Error).message}`,
          cause: error,
        });
      }
      this.folderUnreadable = true;
      return found;
    }
    for (const name of names) {
      if (!this.pattern.test(basename(name))) continue;
      const path = join(this.dir, name);
      try {
        const info = await stat(path);
        if (!info.isFile()) continue;
        found.set(path, { identity: `${info.ino}:${info.size}:${info.mtimeMs}`, mtimeMs: info.mtimeMs });
      } catch {
        // Removed between readdir and stat: gone, like a file never seen.
      }
    }
    return found;
  }
}

/**
 * openImage reads the headers and checks every range against the file size: TRUNCATED_FILE and
 * EMPTY_FILE mean "not written yet", UNREADABLE_FILE may be a permission the writer fixes at the
 * end; anything else (corrupt header, compressed file) will not get better by waiting.
 */
function checkStructure(path: string): Completeness {
  try {
    openImage(path).close();
    return { kind: 'complete' };
  } catch (error) {
    if (isVmscopeError(error) && ['TRUNCATED_FILE', 'EMPTY_FILE', 'UNREADABLE_FILE'].includes(error.code)) {
      return { kind: 'incomplete', reason: error.describe() };
    }
    const reason = isVmscopeError(error) ? error.describe() : `cannot open: ${(error as Error).message}`;
    return { kind: 'unusable', reason, cause: error };
  }
}
