import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { VmscopeError } from '../util/errors.js';
import type { HostMetadata } from './snapshot.js';

const hostMetadataSchema = z.strictObject({
  region: z.string().min(1).optional(),
  postal_code: z.string().min(1).optional(),
  timezone: z.string().min(1).optional(),
});

/**
 * The host's location, from the JSON file a monitor is given (`--host-metadata`): `region`,
 * `postal_code`, `timezone`, each optional. Read anew for every snapshot, so a guest migrated to
 * another host is judged where it runs now. Throws a VmscopeError naming the file when it cannot
 * be read or is not such an object.
 */
export function readHostMetadata(file: string): HostMetadata {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new VmscopeError('UNREADABLE_FILE', `cannot read host metadata: ${(error as Error).message}`, file);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new VmscopeError('USAGE', `host metadata is not JSON: ${(error as Error).message}`, file);
  }
  const parsed = hostMetadataSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw new VmscopeError(
      'USAGE',
      `host metadata: ${where}${issue.message} (expected {"region", "postal_code", "timezone"} strings)`,
      file,
    );
  }
  return parsed.data;
}
