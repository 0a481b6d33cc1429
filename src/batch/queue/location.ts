import type { ConnectionOptions } from 'bullmq';
import { VmscopeError } from '../../util/errors.js';

/** Where the queue lives: `redis://[user:password@]HOST[:PORT]/NAME[?db=N]` (rediss:// for TLS). */
export interface QueueLocation {
  readonly connection: ConnectionOptions & { host: string; port: number; db: number };
  readonly queueName: string;
  /** The URL without its password, for logs and errors. */
  readonly display: string;
}

export function parseQueueUrl(url: string): QueueLocation {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VmscopeError('USAGE', `--queue ${url}: not a URL; expected redis://HOST:PORT/NAME`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new VmscopeError('USAGE', `--queue ${url}: expected redis://HOST:PORT/NAME (or rediss:// for TLS)`);
  }
  const queueName = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  // BullMQ joins its Redis keys with ':' (bull:NAME:id), so a ':' in the name would alias keys.
  if (!/^[A-Za-z0-9._-]+$/.test(queueName)) {
    throw new VmscopeError(
      'USAGE',
      `--queue ${url}: the path must be the queue name (letters, digits, . _ -), e.g. redis://127.0.0.1:6379/vmscope`,
    );
  }
  const db = Number(parsed.searchParams.get('db') ?? '0');
  if (!Number.isInteger(db) || db < 0)
    throw new VmscopeError('USAGE', `--queue ${url}: db must be a non-negative integer`);
  const port = parsed.port === '' ? 6379 : Number(parsed.port);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    connection: {
      host,
      port,
      db,
      ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
      ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
      ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    },
    queueName,
    display: `${parsed.protocol}//${parsed.hostname}${parsed.port ? ':' + parsed.port : ''}/${queueName}${db !== 0 ? `?db=${db}` : ''}`,
  };
}

/** Fail fast when Redis is not there, rather than ioredis's endless reconnects. */
const CONNECT_TIMEOUT_MS = 10_000;
export async function readyOrThrow(
  client: { waitUntilReady(): Promise<unknown> },
  location: QueueLocation,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new VmscopeError(
            'UNAVAILABLE',
            `cannot reach Redis at ${location.display} within ${CONNECT_TIMEOUT_MS / 1000} s`,
          ),
        ),
      CONNECT_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([client.waitUntilReady(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
