import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient } from '../../src/monitor/qmp.js';
import { repoRoot, sharedFixtures } from './fixtures.js';
import { bootGuest, qemuUnavailableReason } from './liveGuest.js';

/**
 * ONE boot of the fixtures' 6.1 guest in rootkit mode, paused ONCE and captured by QEMU itself in
 * every format it writes: `dump-guest-memory` as ELF (with `-device vmcoreinfo`, as libvirt adds)
 * and kdump-compressed (zlib, lzo, snappy: QEMU writes makedumpfile's *flattened* stream), `pmemsave`
 * raw, and the migration stream (`migrate exec:cat > FILE`). `makedumpfile -R` rearranges the
 * flattened zlib dump into the random-access layout. Every file holds the same guest-physical bytes.
 *
 * The set is cached in .cache/formats/<hash of the guest kernel + initramfs>/ so the tests of a
 * run (and later runs) boot once; a lock directory serializes concurrent test files.
 */
export interface FormatCapture {
  readonly dir: string;
  readonly elf: string;
  readonly raw: string;
  /** QEMU kdump-* output (flattened), by compression; only those this QEMU supports. */
  readonly kdumpFlat: Readonly<Record<string, string>>;
  /** `makedumpfile -R` of the flattened zlib dump (undefined without makedumpfile). */
  readonly kdumpZlib: string | undefined;
  readonly migration: string;
  /** The guest's serial console: `LAB:ROOTKIT ... hide_pid=N ... hook_nr=N`. */
  readonly console: string;
  /** What the rootkit hid, from the console. */
  readonly hiddenPid: number;
  readonly hookedSyscall: number;
}

const GUEST_RAM = 512 << 20;
const KDUMP_FORMATS = ['kdump-zlib', 'kdump-lzo', 'kdump-snappy'] as const;
const CAPTURE_TIMEOUT_MS = 600_000;

/** Why the capture cannot be made here, or undefined. */
export function formatCaptureUnavailable(): string | undefined {
  return qemuUnavailableReason();
}

function guestHash(): string {
  const hash = createHash('sha256');
  for (const file of ['vmlinuz-6.1.0-56-amd64', 'initramfs-6.1.0-56-amd64.cpio.gz'])
    hash.update(readFileSync(join(sharedFixtures, 'guest', file)));
  hash.update('capture-v1');
  return hash.digest('hex').slice(0, 16);
}

function describeCapture(dir: string): FormatCapture {
  const console = join(dir, 'console.log');
  const text = readFileSync(console, 'utf8');
  const rootkit = /LAB:ROOTKIT insmod \S+ hide_pid=(\d+) .*hook_nr=(\d+)/.exec(text);
  if (!rootkit) throw new Error(`${console}: no LAB:ROOTKIT line`);
  const kdumpFlat: Record<string, string> = {};
  for (const format of KDUMP_FORMATS) {
    const path = join(dir, `${format}.flat`);
    if (existsSync(path)) kdumpFlat[format] = path;
  }
  const rearranged = join(dir, 'kdump-zlib');
  return {
    dir,
    elf: join(dir, 'guest.elf'),
    raw: join(dir, 'guest.raw'),
    kdumpFlat,
    kdumpZlib: existsSync(rearranged) ? rearranged : undefined,
    migration: join(dir, 'guest.migration'),
    console,
    hiddenPid: Number(rootkit[1]),
    hookedSyscall: Number(rootkit[2]),
  };
}

let pending: Promise<FormatCapture> | undefined;

/** The cached capture, made on first use (one QEMU boot, about a minute under TCG). */
export function formatCapture(): Promise<FormatCapture> {
  pending ??= captureOnce();
  return pending;
}

async function captureOnce(): Promise<FormatCapture> {
  const root = join(repoRoot, '.cache', 'formats');
  mkdirSync(root, { recursive: true });
  const dir = join(root, guestHash());
  const lock = `${dir}.lock`;
  const deadline = Date.now() + CAPTURE_TIMEOUT_MS;
  for (;;) {
    if (existsSync(join(dir, 'complete'))) return describeCapture(dir);
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      // Another test process captures now; a lock whose process is gone is from a killed run.
      if (!lockHolderAlive(lock)) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`waited ${CAPTURE_TIMEOUT_MS} ms for ${lock}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  try {
    if (!existsSync(join(dir, 'complete'))) await capture(dir);
    return describeCapture(dir);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function lockHolderAlive(lock: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(lock, 'pid'), 'utf8'));
  } catch {
    // Just created, pid not written yet: alive unless the lock is old.
    const stat = statSync(lock, { throwIfNoEntry: false });
    return stat !== undefined && Date.now() - stat.mtimeMs < 10_000;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function capture(dir: string): Promise<void> {
  const reason = formatCaptureUnavailable();
  if (reason) throw new Error(reason);
  const work = `${dir}.partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work);
  const qmpDir = mkdtempSync(join(tmpdir(), 'vmscope-cap-'));
  const guest = await bootGuest({ mode: 'rootkit', tmpDir: qmpDir, extraArgs: ['-device', 'vmcoreinfo'] });
  try {
    // The rootkit is loaded before LAB:BEGIN; READY comes after the truth sections.
    await guest.waitForConsole(/LAB:READY main/, 180_000);
    const client = await QmpClient.connect(guest.qmpSocket, { commandTimeoutMs: CAPTURE_TIMEOUT_MS });
    try {
      await client.stop();
      const capability = await client.execute<{ formats: string[] }>('query-dump-guest-memory-capability');
      await client.execute('dump-guest-memory', { paging: false, protocol: `file:${join(work, 'guest.elf')}` });
      for (const format of KDUMP_FORMATS) {
        if (!capability.formats.includes(format)) continue;
        await client.execute('dump-guest-memory', {
          paging: false,
          protocol: `file:${join(work, `${format}.flat`)}`,
          format,
        });
      }
      await client.execute('pmemsave', { val: 0, size: GUEST_RAM, filename: join(work, 'guest.raw') });
      await migrateToFile(client, join(work, 'guest.migration'));
    } finally {
      await client.close();
    }
    writeFileSync(join(work, 'console.log'), readFileSync(guest.console));
  } finally {
    await guest.kill();
    rmSync(qmpDir, { recursive: true, force: true });
  }
  const flatZlib = join(work, 'kdump-zlib.flat');
  if (existsSync(flatZlib) && spawnSync('makedumpfile', ['-v'], { stdio: 'ignore' }).status === 0) {
    const result = spawnSync('sh', ['-c', 'makedumpfile -R "$1" < "$2"', 'sh', join(work, 'kdump-zlib'), flatZlib], {
      encoding: 'utf8',
    });
    if (result.status !== 0) throw new Error(`makedumpfile -R failed: ${result.stderr}`);
  }
  writeFileSync(join(work, 'complete'), `${new Date().toISOString()}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
}

/** `stop` was sent: the stream is the paused state; QEMU ends in `postmigrate`. */
async function migrateToFile(client: QmpClient, path: string): Promise<void> {
  await client.execute('migrate', { uri: `exec:cat > '${path}'` });
  const deadline = Date.now() + CAPTURE_TIMEOUT_MS;
  for (;;) {
    const state = await client.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (state.status === 'completed') return;
    if (state.status === 'failed' || state.status === 'cancelled')
      throw new Error(`migration to ${path} ${state.status}: ${state['error-desc'] ?? ''}`);
    if (Date.now() > deadline) throw new Error(`migration to ${path} did not complete in ${CAPTURE_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
