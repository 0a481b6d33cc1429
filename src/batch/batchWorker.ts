/**
 * One thread of the batch's job pool (jobPool.ts), bundled on its own to dist/batchWorker.js:
 * it runs whole dump jobs, so only requests and results (small plain objects) cross threads.
 */
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { parentPort } from 'node:worker_threads';
import { runDumpJob } from './job.js';

if (!parentPort) throw new Error('batchWorker.js runs as a worker thread of a batch job pool, not on its own');

const api = { runDumpJob };
export type BatchWorkerApi = typeof api;

Comlink.expose(api, nodeEndpoint(parentPort));
