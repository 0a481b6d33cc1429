import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Analysis } from '../analyses/types.js';
import { VmscopeError } from '../util/errors.js';

/**
 * An analysis that travels with a job as data, since the thread or machine that runs the job
 * has no copy of it: a WASI plugin's bytes (base64), with their sha256, which the receiver
 * checks before it loads them and which the batch's settings key includes (another plugin
 * build is other work). The batch knows nothing of plugins: the layer above registers how to
 * load one, in every thread that runs jobs.
 */
export const portableAnalysisSchema = z
  .object({
    kind: z.literal('wasi-plugin'),
    name: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    base64: z.string(),
  })
  .strict();
export type PortableAnalysis = z.output<typeof portableAnalysisSchema>;

type Loader = (bytes: Uint8Array<ArrayBuffer>, portable: PortableAnalysis) => Analysis;
let loader: Loader | undefined;

/** How this thread turns a portable analysis into one it runs (src/plugins registers the WASI loader). */
export function registerPortableAnalysisLoader(load: Loader): void {
  loader = load;
}

/** The analyses carried by a job, their bytes checked against their hashes. */
export function loadPortableAnalyses(portables: readonly PortableAnalysis[] = []): Analysis[] {
  return portables.map((portable) => {
    const bytes = new Uint8Array(Buffer.from(portable.base64, 'base64'));
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== portable.sha256)
      throw new VmscopeError(
        'INPUT_CHANGED',
        `plugin ${portable.name}: its bytes hash to ${sha256}, the job says ${portable.sha256}`,
      );
    if (!loader) throw new VmscopeError('USAGE', `plugin ${portable.name}: this thread has no plugin loader`);
    const analysis = loader(bytes, portable);
    if (analysis.name !== portable.name)
      throw new VmscopeError('INPUT_CHANGED', `plugin ${portable.name}: its bytes are plugin ${analysis.name}`);
    return analysis;
  });
}
