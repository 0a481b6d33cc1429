/**
 * One scan thread of the pool (scanPool.ts), bundled on its own to dist/scanWorker.js. It opens
 * the dump itself, so only paths, needles and hits cross threads, never dump bytes, and it owns
 * one WASM instance whose window is created and pre-touched before it reports ready.
 */
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { parentPort, workerData } from 'node:worker_threads';
import { openImage } from '../image/open.js';
import type { MemoryImage } from '../image/types.js';
import { KernelInstance } from '../kernels/kernelInstance.js';
import { needleSearcher } from '../kernels/needleSearcher.js';
import { deserialize } from 'node:v8';
import type { CompiledRules } from '../rules/compile.js';
import type { MatchLimits } from '../rules/matchCap.js';
import { RuleScanner } from '../rules/scanner.js';
import type { ScanPart } from '../rules/partMerge.js';
import {
  jobPart,
  packHits,
  partBuffers,
  scanPhysicalSlice,
  searchPhysicalSlice,
  type PackedHits,
} from './physicalJobs.js';
import { installTypedErrorTransfer } from './typedErrors.js';
import { assertSameFile, type FileIdentity } from '../util/files.js';

export interface ScanWorkerData {
  readonly windowBytes: number;
}

if (!parentPort) throw new Error('scanWorker.js runs as a worker thread of a ScanPool, not on its own');
const port = parentPort;
const { windowBytes } = workerData as ScanWorkerData;
installTypedErrorTransfer();
KernelInstance.shared(windowBytes);

/** The rules of the scan under way, compiled once by the pool's owner and loaded before the scan's first job. */
let rulesScanner: RuleScanner | undefined;

/** Kept open between the jobs of one pool search; the pool closes it when the search ends. */
let image: MemoryImage | undefined;
/**
 * A thread reads its jobs once, in address order: its cache only has to keep what a window boundary
 * or a shared page asks for again (QEMU's one zero page, the AVML chunk a window ends in), not
 * the 256 MiB a compressed image keeps by default. Small, because every page a scan decodes
 * passes through it: an 8 MiB cache kept 2048 decoded pages alive long enough to be promoted and
 * collected by the major GC, which measured about 10% of a kdump-zlib scan thread's CPU.
 */
const SCAN_THREAD_CACHE_BYTES = 256 << 10;

function imageAt(path: string): MemoryImage {
  if (image?.path !== path) {
    image?.close();
    image = undefined; // a failed open must not leave the closed image cached
    image = openImage(path, { cacheBytes: SCAN_THREAD_CACHE_BYTES });
  }
  return image;
}

const api = {
  /** Resolves once the thread is up and its window is touched. */
  ready(): true {
    return true;
  },

  /** Hits starting in [start, end) of the dump's physical memory, in (offset, needle) order. */
  searchPhysical(
    path: string,
    needles: Uint8Array[],
    start: number,
    end: number,
    identity?: FileIdentity,
    wordAligned?: boolean,
  ): PackedHits {
    // As scanRules: another file at the path now is refused, not searched.
    if (identity) assertSameFile(path, identity);
    const searcher = needleSearcher(needles, { windowBytes, ...(wordAligned ? { wordAligned } : {}) });
    const longestNeedle = needles.reduce((longest, needle) => Math.max(longest, needle.length), 0);
    const packed = packHits(searchPhysicalSlice(imageAt(path), searcher, longestNeedle, start, end));
    return Comlink.transfer(packed, [packed.offsets.buffer, packed.needles.buffer]);
  },

  /**
   * Loads the rules the next scanRules calls use: CompiledRules as node:v8 serialized them (one
   * serialization on the owner's side for every thread, instead of each thread compiling the text).
   */
  loadRules(serializedRules: Uint8Array, limits: MatchLimits): void {
    const rules = deserialize(serializedRules) as CompiledRules;
    rulesScanner = RuleScanner.create(rules, { windowBytes, limits });
  },

  /**
   * Every string match of the loaded rules starting in [start, end) of the dump's physical memory,
   * in offset order, keeping per string only what the cap leaves after `keptBefore` earlier matches.
   */
  scanRules(path: string, start: number, end: number, keptBefore: Uint32Array, identity?: FileIdentity): ScanPart {
    // The caller opened this path before; another file there now (replaced, truncated) is refused, not scanned.
    if (identity) assertSameFile(path, identity);
    const scanner = rulesScanner;
    if (!scanner) throw new Error('scanRules before loadRules');
    const { hits, truncated } = scanPhysicalSlice(imageAt(path), scanner.reach, start, end, (slice) =>
      scanner.scanImage(slice, { keptBefore }),
    );
    const part = jobPart({ hits, truncated }, start, end);
    return Comlink.transfer(part, partBuffers(part));
  },

  /** Ends a search: the dump is closed and the rules dropped. */
  closeImage(): void {
    image?.close();
    image = undefined;
    rulesScanner = undefined;
  },
};

export type ScanWorkerApi = typeof api;

Comlink.expose(api, nodeEndpoint(port));
