import { stringifyIsf } from '../symbols/isf.js';
import type { DumpContext } from './context.js';

export const PRODUCER_VERSION = '0.1.0';

/** `isf`: the dump's profile as a Volatility 3 ISF document (JSON text). */
export async function exportIsf(context: DumpContext): Promise<string> {
  return stringifyIsf((await context.profile()).toIsf(PRODUCER_VERSION));
}
