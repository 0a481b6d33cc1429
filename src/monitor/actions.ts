import { spawn } from 'node:child_process';
import type { Violation } from './policy.js';
import type { SnapshotSource } from './sources/source.js';
import type { WatchAlert } from './watch.js';

/** What a failing exec command's stderr contributes to its error alert. */
const STDERR_TAIL_CHARS = 500;

/** Run a new violation's action; returns why it failed, or undefined. Never throws: a failed action must not end the watch. */
export async function runAction(
  violation: Violation,
  command: readonly string[] | undefined,
  alert: WatchAlert,
  source: SnapshotSource,
  execTimeoutMs: number,
): Promise<string | undefined> {
  try {
    switch (violation.action) {
      case 'alert':
        return undefined;
      case 'exec':
        return await execWithAlert(command, alert, execTimeoutMs);
      case 'pause':
        return await pauseGuest(source);
    }
  } catch (error) {
    return `${violation.action} failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** The guest paused by the source that can (a QEMU guest's): its capability, not its class. */
async function pauseGuest(source: SnapshotSource): Promise<string | undefined> {
  if (!source.pauseGuest)
    return 'pause is impossible: the snapshots do not come from a QEMU guest (only a QMP source can pause one)';
  await source.pauseGuest();
  return undefined;
}

/** Run the rule's command with the alert as one JSON line on stdin, killed after `timeoutMs`. */
function execWithAlert(
  command: readonly string[] | undefined,
  alert: WatchAlert,
  timeoutMs: number,
): Promise<string | undefined> {
  const [program, ...args] = command ?? [];
  if (program === undefined) return Promise.resolve('exec failed: the rule has no command');
  const shown = JSON.stringify(command);
  return new Promise((resolve) => {
    // stdout is not inherited: the watch's own stdout may be the NDJSON alert stream.
    const child = spawn(program, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stderr
      .setEncoding('utf8')
      .on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS)));
    // A command that exits without reading its stdin makes the write fail with EPIPE: its exit status says what matters.
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(alert) + '\n');
    const why = (text: string): string => `exec ${shown} ${text}${stderr.trim() ? `: ${stderr.trim()}` : ''}`;
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve(why(`could not start: ${error.message}`));
    });
    child.once('close', (code, signalName) => {
      clearTimeout(timer);
      if (timedOut) resolve(why(`was killed after ${timeoutMs} ms`));
      else if (code === 0) resolve(undefined);
      else resolve(why(code !== null ? `exited with status ${code}` : `was killed by ${signalName}`));
    });
  });
}
