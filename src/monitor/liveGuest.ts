import { DumpContext, type ContextOptions } from '../analyses/context.js';
import { openQemuSharedMemory } from '../image/qemuSharedMemory.js';
import { readGuestRamLayout } from './qemuLayout.js';
import { VmscopeError } from '../util/errors.js';
import { QmpClient, QmpConnectError } from './qmp.js';

export interface LiveGuestTarget {
  readonly ramPath: string;
  readonly qmpSocket: string;
  /** Pause the guest for the analysis (and resume it after, unless it was already paused). */
  readonly consistent?: boolean;
}

/**
 * One analysis of a live guest's memory, read in place from its shared RAM file with the
 * layout QEMU reports: what `vmscope check --qemu-shm … --qmp …` runs. Returns the analysis's
 * value and how long the guest was paused (consistent runs).
 */
export async function analyseLiveGuest<T>(
  target: LiveGuestTarget,
  contextOptions: ContextOptions,
  analyse: (context: DumpContext) => Promise<T>,
): Promise<{ value: T; pausedMs: number | undefined }> {
  const client = await QmpClient.connect(target.qmpSocket).catch((error: unknown) => {
    throw error instanceof QmpConnectError ? new VmscopeError('UNAVAILABLE', error.message, target.qmpSocket) : error;
  });
  try {
    const stop = target.consistent === true && (await client.queryStatus()).running;
    if (stop) await client.stop();
    const stoppedAt = performance.now();
    try {
      const image = openQemuSharedMemory(target.ramPath, await readGuestRamLayout(client, target.ramPath));
      // Scan threads open a dump by its path: the RAM file's layout is QEMU's, so this process reads it.
      const { parallelRuleScan: _threadsOpenByPath, ...inPlace } = contextOptions;
      const context = DumpContext.overLiveImage(image, inPlace);
      try {
        return { value: await analyse(context), pausedMs: stop ? performance.now() - stoppedAt : undefined };
      } finally {
        context.close();
        image.close();
      }
    } finally {
      if (stop) await client.cont();
    }
  } finally {
    await client.close();
  }
}
