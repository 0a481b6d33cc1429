import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedFixtures } from './fixtures.js';

/**
 * The fixtures' guest booted live under QEMU (TCG, no KVM needed), exactly as
 * ../shared/fixtures/README.md shows, for tests that talk QMP to a real QEMU.
 *
 * A booted QEMU must never outlive the test run, however the run ends: kill() in afterAll/afterEach,
 * a process 'exit' hook for a normal exit, and a watchdog for everything else (the vitest worker
 * killed, Ctrl-C): QEMU is started through `sh`, whose background subshell reads the pipe to our
 * stdin and SIGKILLs QEMU when that pipe closes, which the kernel does whenever this process dies.
 */

/** VMSCOPE_QEMU overrides the binary (a QEMU built elsewhere; a missing name to see the skip path). */
export const QEMU_BINARY = process.env.VMSCOPE_QEMU ?? 'qemu-system-x86_64';
const guestDir = join(sharedFixtures, 'guest');
const kernelPath = join(guestDir, 'vmlinuz-6.1.0-56-amd64');
const initrdPath = join(guestDir, 'initramfs-6.1.0-56-amd64.cpio.gz');
/** sockaddr_un.sun_path is 108 bytes on Linux, terminator included. */
const MAX_UNIX_SOCKET_PATH = 107;

export type GuestMode = 'clean' | 'rootkit' | 'diff';

export interface LiveGuest {
  readonly qmpSocket: string;
  /** Path of the first serial port's log. */
  readonly console: string;
  readonly pid: number;
  /** Milliseconds from spawn to the first `LAB:READY` line. */
  readonly bootMs: number;
  /** Resolves when the console shows a line matching `pattern` (e.g. `LAB:READY t1` in diff mode). */
  waitForConsole(pattern: RegExp, timeoutMs: number): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once QEMU has exited. Safe to call twice. */
  kill(graceMs?: number): Promise<void>;
}

/** Why live-guest tests cannot run here, or undefined when they can. */
export function qemuUnavailableReason(): string | undefined {
  const probe = spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return `${QEMU_BINARY} is not installed (apt-get install qemu-system-x86)`;
  }
  for (const file of [kernelPath, initrdPath]) {
    if (!existsSync(file))
      return `the guest kernel/initramfs is missing: ${file} (../shared/fixtures must sit beside the repo)`;
  }
  return undefined;
}

export function qemuAvailable(): boolean {
  return qemuUnavailableReason() === undefined;
}

const liveProcesses = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: a plain SIGKILL, no waiting.
  process.on('exit', () => {
    for (const child of liveProcesses) child.kill('SIGKILL');
  });
}

/** QEMU arguments putting the guest's 512 MiB of RAM in a shared file a monitor on the host can map (issue 19's live source). */
export function sharedRamArgs(ramPath: string): string[] {
  return [
    '-object',
    `memory-backend-file,id=ram0,size=512M,mem-path=${ramPath},share=on`,
    '-machine',
    'memory-backend=ram0',
  ];
}

/** The objects of an NDJSON file written as it goes (a watch's alerts), none while it does not exist yet. */
export function readNdjsonFile<T>(path: string): T[] {
  return existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as T)
    : [];
}

export interface BootOptions {
  mode: GuestMode;
  /** Holds the QMP socket and the console log; keep it short (unix socket paths are limited). */
  tmpDir: string;
  /** Bound on boot to `LAB:READY`. Default 180 s: a loaded 2-core box under TCG is slow. */
  readyTimeoutMs?: number;
  /** More QEMU arguments (e.g. `-device vmcoreinfo`, as libvirt adds). */
  extraArgs?: readonly string[];
}

export async function bootGuest({
  mode,
  tmpDir,
  readyTimeoutMs = 180_000,
  extraArgs = [],
}: BootOptions): Promise<LiveGuest> {
  const qmpSocket = join(tmpDir, 'qmp.sock');
  const consolePath = join(tmpDir, 'console.log');
  if (Buffer.byteLength(qmpSocket) > MAX_UNIX_SOCKET_PATH)
    throw new Error(`QMP socket path too long for a unix socket: ${qmpSocket}`);
  const qemuArgs = [
    '-M',
    'pc',
    '-accel',
    'tcg',
    '-cpu',
    'max,la57=off',
    '-smp',
    '2',
    '-m',
    '512M',
    '-nodefaults',
    '-display',
    'none',
    '-serial',
    `file:${consolePath}`,
    '-serial',
    'null',
    '-qmp',
    `unix:${qmpSocket},server=on,wait=off`,
    '-kernel',
    kernelPath,
    '-initrd',
    initrdPath,
    '-append',
    `console=ttyS0 labmode=${mode} panic=-1`,
    '-no-reboot',
    ...extraArgs,
  ];
  // $$ is the shell's pid, which `exec` hands to QEMU: the watchdog kills QEMU once our end of
  // stdin closes. stdin goes to the subshell through fd 3 because sh gives a background job
  // /dev/null as its stdin.
  const watchdog = 'exec 3<&0; (cat <&3 >/dev/null 2>&1; kill -9 $$ 2>/dev/null) & exec 3<&-; exec "$0" "$@"';
  installExitHook();
  const startedAt = Date.now();
  const child = spawn('sh', ['-c', watchdog, QEMU_BINARY, ...qemuArgs], { stdio: ['pipe', 'ignore', 'pipe'] });
  liveProcesses.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let hasExited = false;
  child.once('exit', () => {
    hasExited = true;
    liveProcesses.delete(child);
    child.stdin.destroy(); // lets the watchdog's cat end (its kill then hits nobody)
  });

  const waitForConsole = async (pattern: RegExp, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = existsSync(consolePath) ? readFileSync(consolePath, 'utf8') : '';
      if (pattern.test(text)) return;
      if (hasExited)
        throw new Error(
          `QEMU exited before the console showed ${pattern}: ${stderr.trim() || 'no stderr'}\n${text.slice(-2000)}`,
        );
      if (Date.now() > deadline)
        throw new Error(
          `the console did not show ${pattern} within ${timeoutMs} ms; last lines:\n${text.slice(-2000)}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  };

  const kill = async (graceMs = 3000): Promise<void> => {
    if (hasExited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  try {
    await waitForConsole(/LAB:READY/, readyTimeoutMs);
    const bootMs = Date.now() - startedAt;
    // The QMP socket is created at QEMU start, long before the guest is ready; check it anyway.
    if (!existsSync(qmpSocket)) throw new Error(`QEMU is running but ${qmpSocket} does not exist`);
    return { qmpSocket, console: consolePath, pid: child.pid!, bootMs, waitForConsole, kill };
  } catch (error) {
    await kill(0);
    throw error;
  }
}
