import { z } from 'zod';
import type { ColumnKind, Row } from '../analyses/types.js';
import { VmscopeError } from '../util/errors.js';
import { FINDING_KEYS, type PluginManifest } from './manifest.js';

const MAX_CELL_TEXT = 4096;
const MAX_LIST_ITEMS = 1024;

const text = z.string().max(MAX_CELL_TEXT);
/** What a cell of each column kind may hold in a plugin's NDJSON (null: unknown, as built-ins print it). */
const cellSchemas: Record<ColumnKind, z.ZodType> = {
  int: z.number().int().nullable(),
  address: z
    .string()
    .regex(/^0x[0-9a-f]{1,16}$/, 'an address is a lowercase 0x… string')
    .nullable(),
  text: text.nullable(),
  bool: z.boolean().nullable(),
  list: z.array(z.union([text, z.number()])).max(MAX_LIST_ITEMS),
};

/**
 * One schema per plugin: declared columns only, each of its kind; one may be left out (as
 * built-in rows leave out an owner), except that a finding always says what, how bad, about
 * what and why, in text (what `check` and a batch's findings require).
 */
export function rowSchema(manifest: PluginManifest): z.ZodType<Row> {
  const findings = manifest.rows === 'findings';
  const cell = (key: string, kind: ColumnKind): z.ZodType =>
    findings && (FINDING_KEYS as readonly string[]).includes(key)
      ? text
      : findings && key === 'owner'
        ? text.optional()
        : cellSchemas[kind].optional();
  return z
    .object(Object.fromEntries(manifest.columns.map((column) => [column.key, cell(column.key, column.kind)])))
    .strict() as unknown as z.ZodType<Row>;
}

/**
 * The plugin's stdout as rows: one JSON object per line, each checked against its manifest. The
 * first line that is not is refused with the plugin's name and the line number, and no row of
 * that run is kept (a plugin that writes one bad row may have written others wrong).
 */
export function parseRows(manifest: PluginManifest, stdout: Uint8Array, file: string): Row[] {
  const schema = rowSchema(manifest);
  const lines = new TextDecoder().decode(stdout).split('\n');
  const rows: Row[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    const refuse = (reason: string) =>
      new VmscopeError('PLUGIN_FAILED', `plugin ${manifest.name}: output line ${index + 1}: ${reason}`, file);
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw refuse(`not JSON (${(error as Error).message})`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw refuse(
        `${issue.path.length > 0 ? `column ${issue.path.join('.')}: ` : ''}${issue.message} (manifest columns: ${manifest.columns.map((column) => `${column.key}:${column.kind}`).join(', ')})`,
      );
    }
    rows.push(parsed.data);
  });
  return rows;
}
