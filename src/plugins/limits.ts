import { z } from 'zod';

/**
 * What one plugin run may spend. Every limit, when hit, ends the run with an error that names
 * it and its value; none of them can be raised from inside the plugin.
 */
export const pluginLimitsSchema = z
  .object({
    /** Linear memory, in 64 KiB pages: the module's declared maximum is lowered to this at load. */
    memoryPages: z.number().int().min(1).max(65536),
    /** Wall-clock time of the plugin's thread, start-up included; the thread is terminated when spent. */
    timeMs: z.number().int().min(1),
    /** Bytes the plugin may write to stdout. */
    outputBytes: z.number().int().min(1),
    /** Calls of read_virtual, read_physical and symbol. */
    reads: z.number().int().min(0),
    /** Bytes those reads may return in all. */
    readBytes: z.number().int().min(0),
  })
  .strict();
export type PluginLimits = z.output<typeof pluginLimitsSchema>;

export const DEFAULT_PLUGIN_LIMITS: PluginLimits = {
  memoryPages: 1024, // 64 MiB
  timeMs: 30_000,
  outputBytes: 16 * 2 ** 20,
  reads: 1_000_000,
  readBytes: 256 * 2 ** 20,
};

/** The defaults with some limits changed (a test's small budget, a site's larger one), validated. */
export function pluginLimits(overrides: Partial<PluginLimits> = {}): PluginLimits {
  return pluginLimitsSchema.parse({ ...DEFAULT_PLUGIN_LIMITS, ...overrides });
}
