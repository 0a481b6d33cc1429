/**
 * The monitor's profile derivation thread (derivationThread.ts starts it), bundled on its own to
 * dist/profileThread.js. It derives the profile from guest memory it reads through its owner,
 * encodes it as the cache stores it, posts that, and ends: its heap, where the derivation's
 * transient objects lived, goes with it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { MemoryImage } from '../image/types.js';
import type { LinuxKernel } from '../os/linux/discovery.js';
import { deriveEncoded } from '../os/linux/profile.js';
import { Vmcoreinfo } from '../os/linux/vmcoreinfo.js';
import { X86AddressSpace } from '../space/x86.js';
import { AbsentMemoryError } from '../util/errors.js';
import {
  FAILED,
  LENGTH,
  reviveError,
  serializeError,
  STATE,
  WAITING,
  WINDOW_BYTES,
  type ProfileThreadData,
  type ProfileThreadMessage,
  type SerializedError,
} from './profileThreadProtocol.js';

if (!parentPort) throw new Error('profileThread.js runs as the worker thread of a profile derivation, not on its own');
const port = parentPort;
const data = workerData as ProfileThreadData;
const control = new Int32Array(data.control);
const window = new Uint8Array(data.window);

const post = (message: ProfileThreadMessage, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

/** The owner's image, read a window at a time: the thread waits for each answer. */
function readPresentThroughOwner(physical: number, into: Uint8Array): number {
  let done = 0;
  while (done < into.length) {
    const length = Math.min(WINDOW_BYTES, into.length - done);
    post({ kind: 'read', physical: physical + done, length });
    Atomics.wait(control, STATE, WAITING);
    const state = Atomics.load(control, STATE);
    const answered = Atomics.load(control, LENGTH);
    if (state === FAILED) {
      const error = JSON.parse(new TextDecoder().decode(window.slice(0, answered))) as SerializedError;
      Atomics.store(control, STATE, WAITING);
      throw reviveError(error);
    }
    into.set(window.subarray(0, answered), done);
    Atomics.store(control, STATE, WAITING);
    done += answered;
    if (answered < length) break;
  }
  return done;
}

const image: MemoryImage = {
  ...data.image,
  readPresent: readPresentThroughOwner,
  read(physical, into) {
    const present = readPresentThroughOwner(physical, into);
    if (present < into.length) throw new AbsentMemoryError(data.image.path, physical + present, into.length - present);
  },
  close() {},
};
const { vmcoreinfo, ...found } = data.kernel;
const kernel: LinuxKernel = {
  ...found,
  image,
  vmcoreinfo: vmcoreinfo && new Vmcoreinfo(vmcoreinfo.text, vmcoreinfo.source, vmcoreinfo.physical),
  space: new X86AddressSpace(image, found.dtb, found.pagingLevels),
  warnings: [],
};

try {
  const derivation = deriveEncoded(kernel, data.kallsyms);
  const { buffer, byteOffset, byteLength } = derivation.payload;
  // The payload's memory is its own (Buffer.alloc of ~10 MiB is never pooled): it moves, it is not copied.
  post(
    { kind: 'derived', derivation },
    byteOffset === 0 && byteLength === buffer.byteLength ? [buffer as ArrayBuffer] : [],
  );
} catch (error) {
  post({ kind: 'failed', error: serializeError(error) });
}
