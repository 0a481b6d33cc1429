import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type ResourceLimits } from 'node:worker_threads';
import type { MemoryImage } from '../image/types.js';
import type { LinuxKernel } from '../os/linux/discovery.js';
import { deriveEncoded, type EncodedDerivation, type ProfileDerivation } from '../os/linux/profile.js';
import type { KallsymsLocation } from '../symbols/kallsyms.js';
import {
  FAILED,
  LENGTH,
  READ,
  reviveError,
  serializeError,
  STATE,
  WINDOW_BYTES,
  type ProfileThreadData,
  type ProfileThreadMessage,
  type ReadRequest,
} from './profileThreadProtocol.js';

/**
 * The thread's heap. The derivation makes a few hundred MiB of short-lived objects around a
 * live set of ~100 MiB (6.1 and 6.12 kernels alike); in a default heap (16 MiB semi-spaces,
 * V8's growing factor for a multi-GiB limit) they grow a process's RSS by 180-250 MiB. A small
 * young generation and a capped old one (which also makes V8 grow the heap by smaller steps)
 * keep the whole monitor near 220 MiB at its peak (bench/live.ts; 295 MiB deriving in its own
 * heap), at ~20% more derivation time. A kernel whose live set does not fit the cap is derived
 * in the owner's thread instead.
 */
const THREAD_HEAP: ResourceLimits = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 };

/**
 * A derivation on a thread of its own (profileThread.ts), for a long-running monitor: a
 * derivation in the monitor's own heap grows it by a hundred MiB that V8 keeps committed long
 * after the profile is built, where the thread's heap is released when it ends. The thread
 * reads guest memory through this one (the image may be a live RAM file or a copy of its
 * pages: nothing it could open by path); `script` is the bundled thread,
 * dist/profileThread.js. Undefined when that file is not there (code run from sources): the
 * derivation then stays in this thread.
 */
export function derivationThread(
  script: string | URL = new URL('./profileThread.js', import.meta.url),
  heap: ResourceLimits = THREAD_HEAP,
): ProfileDerivation | undefined {
  if (!existsSync(typeof script === 'string' ? script : fileURLToPath(script))) return undefined;
  return async (kernel, kallsyms) => {
    try {
      return await deriveOnThread(script, heap, kernel, kallsyms);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_WORKER_OUT_OF_MEMORY') throw error;
      return deriveEncoded(kernel, kallsyms);
    }
  };
}

function deriveOnThread(
  script: string | URL,
  heap: ResourceLimits,
  kernel: LinuxKernel,
  kallsyms: KallsymsLocation,
): Promise<EncodedDerivation> {
  const control = new Int32Array(new SharedArrayBuffer(8));
  const window = new Uint8Array(new SharedArrayBuffer(WINDOW_BYTES));
  const { image, vmcoreinfo } = kernel;
  const data: ProfileThreadData = {
    control: control.buffer,
    window: window.buffer,
    image: {
      path: image.path,
      format: image.format,
      ranges: image.ranges,
      totalBytes: image.totalBytes,
      notes: image.notes,
      cpus: image.cpus,
    },
    kernel: {
      method: kernel.method,
      release: kernel.release,
      banner: kernel.banner,
      bannerPhysical: kernel.bannerPhysical,
      kaslrSlide: kernel.kaslrSlide,
      physBase: kernel.physBase,
      dtb: kernel.dtb,
      pageOffsetBase: kernel.pageOffsetBase,
      pagingLevels: kernel.pagingLevels,
      kaslr: kernel.kaslr,
      vmcoreinfo: vmcoreinfo && { text: vmcoreinfo.text, source: vmcoreinfo.source, physical: vmcoreinfo.physical },
    },
    kallsyms,
  };
  return new Promise((resolve, reject) => {
    let outcome: { derivation: EncodedDerivation } | { error: Error } | undefined;
    const worker = new Worker(script, {
      workerData: data,
      resourceLimits: heap,
    });
    worker.on('message', (message: ProfileThreadMessage) => {
      if (message.kind === 'read') answer(image, message, control, window);
      else if (message.kind === 'derived') {
        const { payload } = message.derivation;
        // Structured cloning hands a Buffer over as a plain Uint8Array.
        const derivation = {
          ...message.derivation,
          payload: Buffer.from(payload.buffer, payload.byteOffset, payload.length),
        };
        outcome = { derivation };
      } else outcome = { error: reviveError(message.error) };
    });
    worker.on('error', (error) => (outcome ??= { error }));
    // Settled when the thread has ended, so its heap is gone before the monitor goes on.
    worker.on('exit', (code) => {
      if (outcome && 'derivation' in outcome) resolve(outcome.derivation);
      else reject(outcome?.error ?? new Error(`the profile thread exited with code ${code} before answering`));
    });
  });
}

/** One read for the thread: the bytes present into the window, or the error as JSON in it. */
function answer(image: MemoryImage, request: ReadRequest, control: Int32Array, window: Uint8Array): void {
  try {
    Atomics.store(
      control,
      LENGTH,
      image.readPresent(request.physical, window.subarray(0, Math.min(request.length, WINDOW_BYTES))),
    );
    Atomics.store(control, STATE, READ);
  } catch (error) {
    const text = new TextEncoder().encode(JSON.stringify(serializeError(error))).subarray(0, WINDOW_BYTES);
    window.set(text);
    Atomics.store(control, LENGTH, text.length);
    Atomics.store(control, STATE, FAILED);
  }
  Atomics.notify(control, STATE);
}
