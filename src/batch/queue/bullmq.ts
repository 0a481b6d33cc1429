import type * as BullMQ from 'bullmq';
import { lazyRequire } from '../../util/lazyRequire.js';

/**
 * bullmq (and its Redis client), loaded by the commands that queue, not by every command's
 * start-up. Required, not imported: the CLI runs as a script compiled from V8's code cache
 * (src/cli/launch.ts), where import() of a package needs an experimental flag.
 */
export const bullmq = lazyRequire<typeof BullMQ>('bullmq');
