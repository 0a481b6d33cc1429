import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext, type ContextOptions } from '../../src/analyses/context.js';
import { carvedTasksProvider, everyProcessProvider } from '../../src/analyses/providers/processes.js';
import { parallelSearchNeedles } from '../../src/workers/scanPool.js';
import { fixturePath, truth } from '../support/fixtures.js';

// Worker threads cannot load TypeScript: the search threads run the bundle `npm test` builds first.
const WORKER_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/scanWorker.js');
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-threaded-carve-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

async function withContext<T>(
  path: string,
  options: ContextOptions,
  use: (context: DumpContext) => Promise<T>,
): Promise<T> {
  const context = new DumpContext(path, { cacheDir, ...options });
  try {
    return await use(context);
  } finally {
    context.close();
  }
}

let threadedSearches = 0;
/** Search threads for any decoded dump, however small (parallelCarveMinBytes 0), counted. */
const threaded = (threads: number): ContextOptions => ({
  threads,
  parallelCarveMinBytes: 0,
  parallelNeedleSearch: (request) => {
    threadedSearches++;
    return parallelSearchNeedles(request, { workerScript: WORKER_SCRIPT });
  },
});

describe('carving task_structs on search threads', () => {
  // A decoded format (AVML): a stored dump is carved on the calling thread, where it is faster.
  const path = fixturePath('linux61-rootkit', 'avml');

  it.each([2, 3])(
    'finds the same tasks, in the same order, as the carve on this thread (%i threads: one or two searching)',
    async (threads) => {
      const here = await withContext(path, {}, (context) => context.get(carvedTasksProvider));
      const before = threadedSearches;
      const elsewhere = await withContext(path, threaded(threads), (context) => context.get(carvedTasksProvider));
      expect(threadedSearches).toBe(before + 1);
      expect(here.length).toBeGreaterThan(0);
      expect(elsewhere).toEqual(here);
    },
  );

  it('so every process still includes the one the rootkit hid from the task list', async () => {
    const { pid, comm } = (
      truth('linux61-rootkit') as unknown as { rootkit: { hidden_process: { pid: number; comm: string } } }
    ).rootkit.hidden_process;
    const { processes } = await withContext(path, threaded(2), (context) => context.get(everyProcessProvider));
    expect(processes.map((task) => `${task.pid} ${task.comm}`)).toContain(`${pid} ${comm}`);
  });

  it.each([
    ['a stored dump (LiME): reading it is cheaper than a thread', fixturePath('linux61-rootkit', 'lime'), 0],
    ['a decoded dump with little to decode (the 46 MiB AVML, by default)', path, undefined],
  ])('carves %s on this thread', async (_what, dump, parallelCarveMinBytes) => {
    let searches = 0;
    const tasks = await withContext(
      dump,
      {
        threads: 2,
        ...(parallelCarveMinBytes === undefined ? {} : { parallelCarveMinBytes }),
        parallelNeedleSearch: (request) => {
          searches++;
          return parallelSearchNeedles(request, { workerScript: WORKER_SCRIPT });
        },
      },
      (context) => context.get(carvedTasksProvider),
    );
    expect(tasks.length).toBeGreaterThan(0);
    expect(searches).toBe(0);
  });

  it('searches on this thread when the memory is lent (a live guest: threads could not open it by path)', async () => {
    const image = new DumpContext(path).image;
    try {
      let searches = 0;
      const context = DumpContext.overLiveImage(image, {
        cacheDir,
        parallelNeedleSearch: (request) => {
          searches++;
          return parallelSearchNeedles(request, { workerScript: WORKER_SCRIPT });
        },
      });
      expect((await context.get(carvedTasksProvider)).length).toBeGreaterThan(0);
      expect(searches).toBe(0);
    } finally {
      image.close();
    }
  });
});
