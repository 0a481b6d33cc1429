import type * as FileSystem from 'node:fs';
import { isMainThread, Worker } from 'node:worker_threads';
import { INFLATE_INPUT_ADDRESS } from '../../assembly/inflateMemoryMap.js';
import { inflateModule, instantiateInflate, ZlibInflater } from './zlibInflate.js';

/**
 * Every zlib page of a kdump inflated ahead of need by a thread of its own, into one shared
 * buffer, while the thread that runs the analyses does the rest of its work. The pairs of
 * pairedInflate.ts share out only the pages of one read, and a `check` spends most of its time
 * between reads (walking lists, judging what it found): measured on the kdump capture, a `check`
 * whose pages were all inflated before it began took 0.49-0.57 s, against 0.73-0.82 s cold.
 *
 * The helper goes through the pages from the last one down (kdump stores them in pfn order),
 * reading a run of them at a time from the file itself: the analyses read memory upwards (the
 * first search from page 0, the carve), so the two meet once instead of the reader following the
 * helper page by page (which made it wait for the helper a thousand times a `check`). A long
 * read announces the pages it lacks: the helper leaves its own work for them, taking them from
 * the last down while the reader claims them from the first up, until the two meet (the pairing
 * of pairedInflate.ts, on the pages the helper has not reached). Pages the reader says it reads
 * last (deferLast: the kernel's text, which the carve skips) wait for a pass of their own, after
 * every other page: measured on the kdump capture, the reader then inflated about 740-1,140
 * pages of a `check` instead of about 2,650. The reader takes a page the helper has done as a
 * view of the buffer (peek), claims one the helper has not reached and inflates it itself (claim,
 * inflateHere), and takes one the helper is on after its own (take). A word per page says which:
 * a claim is a compare-and-exchange from TODO, so each page is inflated once. Pages whose stored
 * bytes are not in one place of a file (the helper reads files, not this thread's sources) are
 * the reader's. A page that does not inflate to exactly one page is marked FAILED: the caller
 * inflates it again to report why, with the file and offset.
 *
 * Only the main thread inflates ahead (scan threads already keep every core busy), and the buffer
 * holds every page of the plan at once: the caller plans only what its budget allows.
 */
const TODO = 0;
const HELPER = 1;
const MAIN = 2;
const DONE = 3;
const FAILED = 4;
/** A run of stored pages the helper reads at once, and the gap between two it reads through. */
const RUN_BYTES = 1 << 20;
const RUN_GAP_BYTES = 64 << 10;
/** A helper that leaves a claimed page undone this long is given up (its thread died): the page is inflated here. */
const HELPER_TIMEOUT_MS = 10_000;
/** What claim() says of a page the helper is inflating. */
export const HELPER_BUSY = 'helper-busy';
/**
 * The control words: pages the helper inflated; a count of the reader's announcements, and the
 * last one's slots; the slots the helper leaves until last (deferLast), from and to.
 */
const HELPER_PAGES = 0;
const ANNOUNCED = 1;
const READ_FROM = 2;
const READ_TO = 3;
const LAST_FROM = 4;
const LAST_TO = 5;
const CONTROL_WORDS = 6;

/** The zlib pages to inflate ahead, in the order the helper takes them (by stored offset). */
export interface AheadPlan {
  /** The file the helper reads the stored bytes from. */
  readonly path: string;
  /** Per page: where its stored bytes are in that file, or -1 for a page only this thread inflates. */
  readonly fileOffsets: Float64Array;
  readonly storedLengths: Int32Array;
  readonly pageLength: number;
}

const HELPER_CONSTANTS = {
  inputAddress: INFLATE_INPUT_ADDRESS,
  todo: TODO,
  helper: HELPER,
  reader: MAIN,
  done: DONE,
  failed: FAILED,
  runBytes: RUN_BYTES,
  runGapBytes: RUN_GAP_BYTES,
  helperPagesWord: HELPER_PAGES,
  announcedWord: ANNOUNCED,
  readFromWord: READ_FROM,
  readToWord: READ_TO,
  lastFromWord: LAST_FROM,
  lastToWord: LAST_TO,
};

/** What the helper thread is sent once the pages are planned (InflateAhead.begin). */
interface HelperPlan extends AheadPlan {
  readonly states: Int32Array;
  readonly output: Uint8Array;
  readonly control: Int32Array;
}

/** The helper thread's loop over `plan`, run from its source text: it may use only its arguments and globals. */
function aheadLoop(
  module: WebAssembly.Module,
  plan: HelperPlan,
  fs: typeof FileSystem,
  instantiate: typeof instantiateInflate,
  constants: typeof HELPER_CONSTANTS,
): void {
  const {
    inputAddress,
    todo,
    helper,
    reader,
    done,
    failed,
    runBytes,
    runGapBytes,
    helperPagesWord,
    announcedWord,
    readFromWord,
    readToWord,
    lastFromWord,
    lastToWord,
  } = constants;
  const { path, fileOffsets, storedLengths, pageLength, states, output, control } = plan;
  const maxStoredBytes = 2 * pageLength;
  // The run read from the file lies in the kernel's memory past its output, and the page is
  // copied out through one view: no object per page (they cost this thread a garbage collection
  // every 3,000 pages).
  const runRoom = runBytes + maxStoredBytes;
  const {
    inflateZlib: inflate,
    heap,
    outputAddress,
  } = instantiate(module, inputAddress, maxStoredBytes, pageLength + runRoom);
  const runAddress = outputAddress + pageLength;
  const run = heap.subarray(runAddress, runAddress + runRoom);
  const inflated = heap.subarray(outputAddress, outputAddress + pageLength);
  const fd = fs.openSync(path, 'r');
  let announced = 0;
  const announcement = () => Atomics.load(control, announcedWord);

  /** The pages `first`..`last` from the last down (those still TODO), until an announcement or one the reader holds. */
  const inflateRun = (first: number, last: number, stopAtReader: boolean): boolean => {
    const start = fileOffsets[first]!;
    const got = fs.readSync(fd, run, 0, fileOffsets[last]! + storedLengths[last]! - start, start);
    for (let page = last; page >= first; page--) {
      if (announcement() !== announced) return false;
      const claimed = Atomics.compareExchange(states, page, todo, helper);
      if (claimed === reader && stopAtReader) return false;
      if (claimed !== todo) continue;
      const at = fileOffsets[page]! - start;
      const length = storedLengths[page]!;
      let result = -1;
      try {
        if (at + length <= got && length <= maxStoredBytes) {
          heap.copyWithin(inputAddress, runAddress + at, runAddress + at + length);
          result = inflate(length, outputAddress, pageLength);
          if (result === pageLength) output.set(inflated, page * pageLength);
        }
      } catch {
        result = -1; // inflated again by the caller, where its error is reported
      }
      if (result === pageLength) Atomics.add(control, helperPagesWord, 1);
      Atomics.store(states, page, result === pageLength ? done : failed);
      Atomics.notify(states, page);
    }
    return true;
  };

  /** The first page of the run that ends with `last`: pages stored one after another (within a gap), at most runBytes. */
  const runStart = (last: number, lowest: number): number => {
    const end = fileOffsets[last]! + storedLengths[last]!;
    let first = last;
    for (; first > lowest && fileOffsets[first - 1]! >= 0; first--) {
      const previousEnd = fileOffsets[first - 1]! + storedLengths[first - 1]!;
      const at = fileOffsets[first]!;
      if (at < previousEnd || at - previousEnd > runGapBytes || end - fileOffsets[first - 1]! > runBytes) break;
    }
    return first;
  };

  const helps = (page: number) => fileOffsets[page]! >= 0 && Atomics.load(states, page) === todo;
  try {
    let ahead = states.length - 1;
    let lastPass = false;
    for (;;) {
      if (announcement() !== announced) {
        // The reader's batch, from its last page down to where the reader (claiming upwards) has got to.
        announced = announcement();
        const from = Atomics.load(control, readFromWord);
        let last = Math.min(Atomics.load(control, readToWord), states.length) - 1;
        while (last >= from) {
          if (!helps(last)) {
            if (Atomics.load(states, last) === reader) break;
            last--;
            continue;
          }
          const first = runStart(last, from);
          if (!inflateRun(first, last, true)) break;
          last = first - 1;
        }
        continue;
      }
      // Ahead of need, from the last page down: the reader reads upwards, and pairs on what it reaches
      // first. The pages the reader said it reads last wait for a pass of their own.
      const lastFrom = lastPass ? 0 : Atomics.load(control, lastFromWord);
      const lastTo = lastPass ? 0 : Atomics.load(control, lastToWord);
      while (ahead >= 0 && (!helps(ahead) || (ahead >= lastFrom && ahead < lastTo))) ahead--;
      if (ahead < 0) {
        // Everything above was done or taken; what a pairing left behind below is found on the next
        // pass, and the pages left until last are found then too.
        lastPass = true;
        ahead = states.length - 1;
        while (ahead >= 0 && !helps(ahead)) ahead--;
        if (ahead < 0) return;
      }
      const first = runStart(ahead, ahead >= lastTo ? lastTo : 0);
      inflateRun(first, ahead, false);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export class InflateAhead {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
  private states: Int32Array = new Int32Array(0);
  private output: Uint8Array = new Uint8Array(0);
  private pageLength = 0;

  private constructor(private readonly worker: Worker) {
    this.worker.unref();
    // A helper that fails (cannot read the file, say) leaves its pages TODO: this thread inflates them.
    this.worker.on('error', () => {});
  }

  /**
   * A helper thread waiting for its pages (begin), when this thread may have one; else undefined.
   * A thread takes 30-50 ms to start, longer than opening a dump and planning its pages: started
   * first, it is ready sooner.
   */
  static spawn(): InflateAhead | undefined {
    if (!isMainThread) return undefined;
    const loop = `(${aheadLoop.toString()})(workerData.module, plan, require('node:fs'), ${instantiateInflate.toString()}, ${JSON.stringify(HELPER_CONSTANTS)})`;
    const source = `const { parentPort, workerData } = require('node:worker_threads'); parentPort.once('message', (plan) => ${loop})`;
    return new InflateAhead(new Worker(source, { eval: true, workerData: { module: inflateModule() } }));
  }

  /** Sets the helper on `plan`'s pages: the one call after spawn(). */
  begin(plan: AheadPlan): void {
    const count = plan.fileOffsets.length;
    this.states = new Int32Array(new SharedArrayBuffer(count * 4));
    this.output = new Uint8Array(new SharedArrayBuffer(count * plan.pageLength));
    this.pageLength = plan.pageLength;
    const helperPlan: HelperPlan = { ...plan, states: this.states, output: this.output, control: this.control };
    this.worker.postMessage(helperPlan);
  }

  /** The bytes the buffer holds for its pages (the plan's pages times the page length). */
  get bytes(): number {
    return this.output.length;
  }

  /** Page `slot` when it has been inflated, else undefined (nothing claimed). */
  peek(slot: number): Uint8Array | undefined {
    return Atomics.load(this.states, slot) === DONE ? this.pageAt(slot) : undefined;
  }

  /**
   * This thread is about to claim and inflate pages `from`..`to - 1` in that order: the helper
   * takes them from the last down meanwhile, until the two meet.
   */
  announce(from: number, to: number): void {
    Atomics.store(this.control, READ_FROM, from);
    Atomics.store(this.control, READ_TO, to);
    Atomics.add(this.control, ANNOUNCED, 1);
  }

  /**
   * Pages `from`..`to - 1` are read late if at all: the helper inflates them after all the others
   * (unless a read announces them). A later call replaces an earlier one.
   */
  deferLast(from: number, to: number): void {
    Atomics.store(this.control, LAST_FROM, from);
    Atomics.store(this.control, LAST_TO, to);
  }

  /**
   * Page `slot` when it has been inflated; HELPER_BUSY while the helper is on it (take() waits
   * for it); undefined when this thread is to inflate it now (see inflateHere), or when it does
   * not inflate to a page.
   */
  claim(slot: number): Uint8Array | typeof HELPER_BUSY | undefined {
    for (;;) {
      const state = Atomics.load(this.states, slot);
      if (state === DONE) return this.pageAt(slot);
      // MAIN: claimed by an earlier read here that stopped on an error; FAILED: the caller inflates it to say why.
      if (state === MAIN || state === FAILED) return undefined;
      if (state === HELPER) return HELPER_BUSY;
      if (Atomics.compareExchange(this.states, slot, TODO, MAIN) === TODO) return undefined;
    }
  }

  /** As claim(), but waiting for a page the helper is on. */
  take(slot: number): Uint8Array | undefined {
    for (;;) {
      const claimed = this.claim(slot);
      if (claimed !== HELPER_BUSY) return claimed;
      if (Atomics.wait(this.states, slot, HELPER, HELPER_TIMEOUT_MS) === 'timed-out') {
        Atomics.compareExchange(this.states, slot, HELPER, MAIN);
      }
    }
  }

  /** Page `slot` inflated here from its stored bytes, after take() left it to this thread; undefined when it does not inflate to exactly a page. */
  inflateHere(slot: number, stored: Uint8Array): Uint8Array | undefined {
    const into = this.pageAt(slot);
    const inflated = ZlibInflater.forStream(stored.length, into.length).inflateExactlyInto(stored, into);
    Atomics.store(this.states, slot, inflated ? DONE : FAILED);
    return inflated ? into : undefined;
  }

  /** Pages the helper thread has inflated so far. */
  helperPages(): number {
    return Atomics.load(this.control, HELPER_PAGES);
  }

  close(): void {
    void this.worker.terminate();
  }

  private pageAt(slot: number): Uint8Array {
    return this.output.subarray(slot * this.pageLength, (slot + 1) * this.pageLength);
  }
}
