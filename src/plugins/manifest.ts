import { z } from 'zod';
import type { Column } from '../analyses/types.js';

/** The interface version this host implements (docs/plugins.md); a manifest names the one it was written for. */
export const PLUGIN_INTERFACE_VERSION = 1;
/** The custom section that holds a plugin's manifest, as UTF-8 JSON. */
export const MANIFEST_SECTION = 'vmscope.manifest';

/** What a plugin may be given on stdin. */
export const PLUGIN_INPUTS = ['processes', 'regions', 'modules', 'sockets', 'syscalls'] as const;
export type PluginInput = (typeof PLUGIN_INPUTS)[number];
/** What a plugin may ask for through its `vmscope` imports. */
export const PLUGIN_ACCESS = ['memory.virtual', 'memory.physical', 'symbols'] as const;
export type PluginAccess = (typeof PLUGIN_ACCESS)[number];

/** The columns a plugin whose rows are findings must have: they join `check`'s rows and a batch's findings. */
export const FINDING_KEYS = ['kind', 'severity', 'subject', 'detail'] as const;

const columnSchema = z
  .object({
    key: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'a snake_case key of at most 64 characters'),
    kind: z.enum(['int', 'address', 'text', 'bool', 'list']),
    title: z.string().min(1).max(64),
  })
  .strict();

export const manifestSchema = z
  .object({
    interface: z.literal(PLUGIN_INTERFACE_VERSION),
    name: z.string().regex(/^[a-z][a-z0-9_-]{0,47}$/, 'lowercase letters, digits, _ and -, at most 48'),
    version: z.string().regex(/^\d+\.\d+\.\d+$/, 'major.minor.patch'),
    description: z.string().min(1).max(300),
    rows: z.enum(['data', 'findings']).default('data'),
    columns: z
      .array(columnSchema)
      .min(1)
      .max(32)
      .refine((columns) => new Set(columns.map((column) => column.key)).size === columns.length, 'column keys repeat'),
    inputs: z.array(z.enum(PLUGIN_INPUTS)).default([]),
    access: z.array(z.enum(PLUGIN_ACCESS)).default([]),
  })
  .strict()
  .refine(
    (manifest) =>
      manifest.rows === 'data' ||
      FINDING_KEYS.every((key) => manifest.columns.some((column) => column.key === key && column.kind === 'text')),
    { message: `a plugin whose rows are findings has the text columns ${FINDING_KEYS.join(', ')}` },
  );
export type PluginManifest = z.output<typeof manifestSchema>;

/** The manifest's columns as the analysis model declares them. */
export function manifestColumns(manifest: PluginManifest): readonly Column[] {
  return manifest.columns.map(({ key, kind, title }) => ({
    key,
    kind,
    title,
    ...(kind === 'list' ? { separator: ' ' } : {}),
  }));
}
