import type * as WorkerThreads from 'node:worker_threads';
import { isMainThread, MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { INFLATE_INPUT_ADDRESS } from '../../assembly/inflateMemoryMap.js';
import { inflateModule, instantiateInflate, ZlibInflater } from './zlibInflate.js';

/**
 * The zlib pages of one long read inflated by this thread and a helper thread together, into
 * slabs of shared memory. A `check` on a kdump-zlib dump inflates some 18,000 pages on the thread
 * that runs the analyses while the second core mostly waits: the analyses are serial (the
 * carve's hits feed the checks), so the pages of each read are what can be shared out. The
 * helper takes a batch's pages from the back while this thread takes them from the front, so
 * neither waits for the other longer than one page however fast each is, and a helper that has not
 * started yet takes none.
 *
 * Each page is inflated straight into its place in a 16 MiB slab and returned as a view of it:
 * the image caches keep these. A new 4 KiB buffer per page cost about 7 us of a `check` on the
 * kdump capture (V8's allocation and accounting of each buffer, the garbage collections that
 * external memory triggers, the first write's page fault), more than half the inflating; the
 * helper's pages fault in on its own core.
 *
 * Claims: each job's word holds the batch's generation while the job is free; a thread claims it
 * by compare-and-exchange from that generation, so a helper still finishing an older batch can
 * never claim a job of a newer one. This thread prepares a batch only after every job the helper
 * claimed in the last one is done. A new slab reaches the helper on a message port it reads
 * synchronously when it wakes for a batch. Shared memory, made once per process:
 *   control  [generation, job count, pages the helper inflated]
 *   jobs     per job: input offset, input length, result (bytes or the kernel's error; PENDING until
 *            done), output offset in the slab, the slab's id (the helper's must match), page length
 *   claims   per job: the generation while free, CLAIMED once taken
 *   input    the stored bytes of the batch (INPUT_BYTES)
 * Only the main thread has a helper: the scan pool's threads already keep every core busy.
 */
const INPUT_BYTES = 16 << 20;
const SLAB_BYTES = 16 << 20;
const MAX_JOBS = 1024;
/** The largest page the helper inflates (kdump's largest block size in use), and its stored bytes. */
const MAX_PAGE_BYTES = 64 << 10;
const MAX_STORED_BYTES = 2 * MAX_PAGE_BYTES;
/** A job's words, in this order. */
const JOB_WORDS = 6;
const JOB_INPUT_AT = 0;
const JOB_INPUT_LENGTH = 1;
const JOB_RESULT = 2;
const JOB_OUTPUT_AT = 3;
const JOB_SLAB_ID = 4;
const JOB_PAGE_LENGTH = 5;
const GENERATION = 0;
const JOB_COUNT = 1;
const HELPER_PAGES = 2;
const PENDING = 0x7fffffff;
const CLAIMED = -1;
/** Generations run 1..MAX_GENERATION and round: 0 is no batch yet, and never a free job's word. */
const MAX_GENERATION = 0x7fffffff;
/** A helper that leaves a claimed page undone this long is given up (it died): its pages are inflated here. */
const HELPER_TIMEOUT_MS = 10_000;

interface SharedState {
  readonly control: Int32Array;
  readonly jobs: Int32Array;
  readonly claims: Int32Array;
  readonly input: Uint8Array;
}

/** What the helper's loop is given of this file's constants (its source runs on its own). */
const HELPER_CONSTANTS = {
  inputAddress: INFLATE_INPUT_ADDRESS,
  maxStoredBytes: MAX_STORED_BYTES,
  maxPageBytes: MAX_PAGE_BYTES,
  jobWords: JOB_WORDS,
  resultWord: JOB_RESULT,
  generationWord: GENERATION,
  jobCountWord: JOB_COUNT,
  helperPagesWord: HELPER_PAGES,
  claimed: CLAIMED,
};

/** The helper thread's loop, run from its source text: it may use only its arguments and globals. */
function helperLoop(
  workerThreads: typeof WorkerThreads,
  instantiate: typeof instantiateInflate,
  constants: typeof HELPER_CONSTANTS,
): void {
  const {
    inputAddress,
    maxStoredBytes,
    maxPageBytes,
    jobWords,
    resultWord,
    generationWord,
    jobCountWord,
    helperPagesWord,
    claimed,
  } = constants;
  const { module, control, jobs, claims, input, slabs } = workerThreads.workerData as SharedState & {
    module: WebAssembly.Module;
    slabs: MessagePort;
  };
  const { inflateZlib: inflate, heap, outputAddress } = instantiate(module, inputAddress, maxStoredBytes, maxPageBytes);
  let slab = { id: 0, bytes: new Uint8Array(0) };
  let seen = 0;
  for (;;) {
    Atomics.wait(control, generationWord, seen);
    seen = Atomics.load(control, generationWord);
    for (
      let message = workerThreads.receiveMessageOnPort(slabs);
      message;
      message = workerThreads.receiveMessageOnPort(slabs)
    )
      slab = message.message as typeof slab;
    const count = Atomics.load(control, jobCountWord);
    for (let job = count - 1; job >= 0; job--) {
      if (Atomics.compareExchange(claims, job, seen, claimed) !== seen) break;
      const record = job * jobWords;
      // Its words, in JOB_WORDS order: input offset and length, result, output offset, slab id, page length.
      const [at, length, , into, slabId, pageLength] = jobs.subarray(record, record + jobWords);
      let result = -1;
      try {
        if (slabId === slab.id && length! <= maxStoredBytes && pageLength! <= maxPageBytes) {
          heap.set(input.subarray(at, at! + length!), inputAddress);
          result = inflate(length!, outputAddress, pageLength!);
          if (result > 0) slab.bytes.set(heap.subarray(outputAddress, outputAddress + result), into);
        }
      } catch {
        result = -1; // inflated here instead, where its error is reported
      }
      if (result > 0) Atomics.add(control, helperPagesWord, 1);
      Atomics.store(jobs, record + resultWord, result);
      Atomics.notify(jobs, record + resultWord);
    }
  }
}

/** Made at the first pairedInput on the main thread; the helper may still fail to start (then this thread inflates alone). */
let shared: SharedState | undefined;
let helperStarted = false;
let slabPort: MessagePort | undefined;
let generation = 0;
let slab: Uint8Array = new Uint8Array(0);
let slabId = 0;
let slabUsed = 0;

/** Where the jobs of a batch find their stored bytes: `at`..`at + length` of pairedInput()'s buffer. */
export interface InflateJob {
  readonly at: number;
  readonly length: number;
}

/**
 * A shared buffer of `bytes` for a batch's stored bytes, when this thread has a helper (started at
 * the first call) and the batch fits; else undefined (inflate here alone).
 */
export function pairedInput(bytes: number): Uint8Array | undefined {
  if (bytes > INPUT_BYTES || !startHelper()) return undefined;
  return shared!.input.subarray(0, bytes);
}

/**
 * Each job inflated to exactly `pageLength` bytes, as a view of a slab; undefined for a job that
 * does not inflate to that length (the caller inflates it again to learn why).
 */
export function inflatePaired(jobs: readonly InflateJob[], pageLength: number): (Uint8Array | undefined)[] {
  const results: (Uint8Array | undefined)[] = new Array(jobs.length);
  if (pageLength > MAX_PAGE_BYTES) return results;
  const slots = Math.min(MAX_JOBS, Math.floor(SLAB_BYTES / pageLength));
  for (let first = 0; first < jobs.length; first += slots)
    inflateBatch(jobs, first, Math.min(slots, jobs.length - first), pageLength, results);
  return results;
}

function inflateBatch(
  jobs: readonly InflateJob[],
  first: number,
  count: number,
  pageLength: number,
  results: (Uint8Array | undefined)[],
): void {
  const state = shared!;
  if (slabUsed + count * pageLength > slab.length) {
    slab = new Uint8Array(new SharedArrayBuffer(SLAB_BYTES));
    slabId++;
    slabUsed = 0;
    slabPort?.postMessage({ id: slabId, bytes: slab });
  }
  generation = generation === MAX_GENERATION ? 1 : generation + 1;
  for (let job = 0; job < count; job++) {
    const { at, length } = jobs[first + job]!;
    const record = job * JOB_WORDS;
    state.jobs[record + JOB_INPUT_AT] = at;
    state.jobs[record + JOB_INPUT_LENGTH] = length;
    state.jobs[record + JOB_RESULT] = PENDING;
    state.jobs[record + JOB_OUTPUT_AT] = slabUsed + job * pageLength;
    state.jobs[record + JOB_SLAB_ID] = slabId;
    state.jobs[record + JOB_PAGE_LENGTH] = pageLength;
    Atomics.store(state.claims, job, generation);
  }
  Atomics.store(state.control, JOB_COUNT, count);
  Atomics.store(state.control, GENERATION, generation);
  Atomics.notify(state.control, GENERATION);
  // This thread's jobs are [0, mine), the helper's [mine, count): each side claims towards the other.
  let mine = 0;
  try {
    while (mine < count && Atomics.compareExchange(state.claims, mine, generation, CLAIMED) === generation) {
      const { at, length } = jobs[first + mine]!;
      const into = slab.subarray(slabUsed + mine * pageLength, slabUsed + (mine + 1) * pageLength);
      const input = state.input.subarray(at, at + length);
      results[first + mine] = ZlibInflater.forStream(length, pageLength).inflateExactlyInto(input, into)
        ? into
        : undefined;
      mine++;
    }
  } finally {
    // Claimed here too after an error (none is expected: the kernel reports errors as results).
    let taken = mine;
    while (taken < count && Atomics.compareExchange(state.claims, taken, generation, CLAIMED) === generation) taken++;
    for (let job = taken; job < count; job++) awaitHelper(state, job);
  }
  for (let job = mine; job < count; job++) {
    const offset = slabUsed + job * pageLength;
    results[first + job] =
      state.jobs[job * JOB_WORDS + JOB_RESULT] === pageLength ? slab.subarray(offset, offset + pageLength) : undefined;
  }
  slabUsed += count * pageLength;
}

function awaitHelper(state: SharedState, job: number): void {
  const result = job * JOB_WORDS + JOB_RESULT;
  while (Atomics.load(state.jobs, result) === PENDING) {
    if (Atomics.wait(state.jobs, result, PENDING, HELPER_TIMEOUT_MS) === 'timed-out') {
      // Given up (its thread died): the page reads as a failure, and is inflated again by the caller.
      Atomics.store(state.jobs, result, -1);
    }
  }
}

/** Pages the helper thread has inflated so far in this process (0 without one): how much it takes on. */
export function helperPagesInflated(): number {
  return shared === undefined ? 0 : Atomics.load(shared.control, HELPER_PAGES);
}

/** Whether this thread can pair (the helper is started now if not yet: it takes jobs once its thread is up). */
function startHelper(): boolean {
  if (!helperStarted) {
    helperStarted = true;
    if (!isMainThread) return false;
    shared = {
      control: new Int32Array(new SharedArrayBuffer(12)),
      jobs: new Int32Array(new SharedArrayBuffer(MAX_JOBS * JOB_WORDS * 4)),
      claims: new Int32Array(new SharedArrayBuffer(MAX_JOBS * 4)),
      input: new Uint8Array(new SharedArrayBuffer(INPUT_BYTES)),
    };
    try {
      const channel = new MessageChannel();
      const source = `(${helperLoop.toString()})(require('node:worker_threads'), ${instantiateInflate.toString()}, ${JSON.stringify(HELPER_CONSTANTS)})`;
      const helper = new Worker(source, {
        eval: true,
        workerData: { ...shared, module: inflateModule(), slabs: channel.port2 },
        transferList: [channel.port2],
      });
      helper.unref();
      // A helper that fails is no error: pairing goes on, and the jobs it never claims are inflated here.
      helper.on('error', () => {});
      channel.port1.unref();
      slabPort = channel.port1;
    } catch {
      // No helper thread (the same: this thread inflates every job).
    }
  }
  return shared !== undefined;
}
