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
import { MultiNeedleSearcher } from '../kernels/multiNeedle.js';
import { packHits, searchPhysicalSlice, type PackedHits } from './physicalJobs.js';

export interface ScanWorkerData {
  readonly windowBytes: number;
}

if (!parentPort) throw new Error('scanWorker.js runs as a worker thread of a ScanPool, not on its own');
const port = parentPort;
const { windowBytes } = workerData as ScanWorkerData;
KernelInstance.shared(windowBytes);

/** Kept open between the jobs of one pool search; the pool closes it when the search ends. */
let image: MemoryImage | undefined;

function imageAt(path: string): MemoryImage {
  if (image?.path !== path) {
    image?.close();
    image = undefined; // a failed open must not leave the closed image cached
    image = openImage(path);
  }
  return image;
}

const api = {
  /** Resolves once the thread is up and its window is touched. */
  ready(): true {
    return true;
  },

  /** Hits starting in [start, end) of the dump's physical memory, in (offset, needle) order. */
  searchPhysical(path: string, needles: Uint8Array[], start: number, end: number): PackedHits {
    const searcher = MultiNeedleSearcher.create(needles, { windowBytes });
    const longestNeedle = Math.max(0, ...needles.map((needle) => needle.length));
    const packed = packHits(searchPhysicalSlice(imageAt(path), searcher, longestNeedle, start, end));
    return Comlink.transfer(packed, [packed.offsets.buffer, packed.needles.buffer]);
  },

  closeImage(): void {
    image?.close();
    image = undefined;
  },
};

export type ScanWorkerApi = typeof api;

Comlink.expose(api, nodeEndpoint(port));
