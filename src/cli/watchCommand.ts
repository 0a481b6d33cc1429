import { closeSync, fsyncSync, openSync, statSync, writeSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { readHostMetadata } from '../monitor/hostMetadata.js';
import { loadPolicy } from '../monitor/policy.js';
import { FolderSource } from '../monitor/sources/folderSource.js';
import { QemuSharedMemorySource } from '../monitor/sources/qemuSharedMemorySource.js';
import { GuestGoneError, QmpSource } from '../monitor/sources/qmpSource.js';
import type { SnapshotSource, SourceOptions } from '../monitor/sources/source.js';
import { runWatch, sourceProblemAlert, type WatchAlert } from '../monitor/watch.js';
import { reportAlertedSnapshots } from '../report/reports.js';
import { VmscopeError } from '../util/errors.js';
import type { CommandHelpers } from './policyCommand.js';
import { createProgress } from './progress.js';
import { parseByteSize } from './options.js';

/**
 * Exit code of a watch whose QEMU went away (or was never there): beyond main.ts's 0 ok,
 * 1 findings, 2 usage, so a supervisor tells "restart me with the guest" from "fix my arguments".
 */
export const GUEST_GONE_EXIT = 3;

interface WatchCliOptions {
  folder?: string;
  qmp?: string;
  qemuShm?: string;
  consistent?: boolean;
  scanInterval?: number;
  interval?: number;
  policy?: string;
  hostMetadata?: string;
  alerts?: string;
  tempDir?: string;
  diskBudget?: number;
  includeExisting?: boolean;
  reportDir?: string;
  json?: boolean;
  progress: boolean;
}

const WATCH_HELP = `Each snapshot is summarized (processes with argv, hidden processes, modules, hidden modules,
the syscall table, sockets, executable memory, environments, the guest's clock, and the host
metadata of --host-metadata, re-read every time), compared with the previous one and judged by
the policy.
Alerts are appended as NDJSON, one object per line, to --alerts FILE or stdout:

  {"time":"…","type":"violation","snapshot":"…","captured_at":"…","rule":"hidden","severity":"critical",
   "action":"pause","kind":"hidden_process","change":null,"pid":115,"name":null,"comm":"lab_hideme","detail":"…"}

  type  change     a diff row against the previous snapshot (kind process, module, syscall,
                   hidden_process, hidden_module, the kernel hook kinds of check, signature, socket, executable_region;
                   change started/ended/opened/closed/…), or kind
                   "kernel": the guest rebooted into another kernel and the comparison starts over
        violation  a policy violation when it FIRST appears (every one on the first snapshot);
                   one that persists is not repeated and its action runs once
        resolved   a violation reported before that is gone
        error      a dump that could not be analysed (the watch goes on), a failed action, a
                   broken file or skipped dump, the guest going away
--report-dir DIR writes the HTML report (see vmscope report --help) of each snapshot that raised
an alert, from its summary and those alerts: DIR/<capture time>-<dump name>.html.

Sources (exactly one):
  --folder DIR   dumps dropped into DIR by something else (virsh dump, a hook); a file is read
                 once it is complete (size stable and its structure whole). Files already there
                 at start are skipped unless --include-existing.
  --qmp SOCKET --qemu-shm FILE
                 a QEMU guest whose RAM is a shared file (-object memory-backend-file,id=ram0,
                 size=…,mem-path=/dev/shm/NAME,share=on -machine memory-backend=ram0): every
                 --interval (default 2 s) the RAM is read in place, no dump written; the layout
                 comes from QMP. The guest runs while it is read and every finding is confirmed
                 by a second read; --consistent pauses it for each check instead, just
                 long enough to copy the pages the last check read.
  --qmp SOCKET   a QEMU guest's QMP socket: every --interval seconds QEMU writes an ELF dump
                 (dump-guest-memory) into a private folder in --temp-dir (QEMU must be able to
                 write there), removed once analysed; a dump that would exceed --disk-budget or
                 leave under 1 GiB free is skipped (error alert) and tried next interval.

Actions (per policy rule, run once per new violation, before its alert is written):
  alert   nothing more
  exec    runs the rule's command (no shell) with the alert as one JSON line on stdin; killed
          after 30 s; a failure is an error alert
  pause   QMP "stop" on the guest (--qmp only; with --folder an error alert says it cannot)
Without --policy only changes and errors are reported.

Ctrl-C (SIGINT) or SIGTERM: the snapshot under analysis is finished, the alerts file is
flushed, exit 0. A second Ctrl-C exits at once (130).
Exit codes: 0 stopped by a signal, 2 bad arguments or policy (before anything is read),
3 the guest went away (QEMU exited or its socket does not answer).

Examples:
  vmscope watch --qmp /run/guest1/qmp.sock --interval 300 --policy guest1.yaml --alerts guest1.ndjson
  vmscope watch --qmp qmp.sock --interval 60 --temp-dir /var/tmp --disk-budget 4G --policy p.yaml
  vmscope watch --folder /srv/dumps/guest1 --include-existing --policy guest1.yaml | jq -c 'select(.type == "violation")'`;

/** Adds `watch (--folder DIR | --qmp SOCKET) [--policy FILE] ...` to the program. */
export function registerWatchCommand<Options extends { progress: boolean }>(
  program: Command,
  helpers: Pick<CommandHelpers<Options>, 'withCommonOptions' | 'contextOptions' | 'setExitCode'>,
): void {
  const command = helpers.withCommonOptions(
    program
      .command('watch')
      .description(
        'watch a guest: snapshot it (QMP) or take the dumps dropped in a folder, diff each with the last, judge it by a policy, alert and act',
      )
      .option('--folder <dir>', 'take the dumps written into this folder')
      .option('--qmp <socket>', 'snapshot the QEMU guest behind this QMP unix socket')
      .option(
        '--qemu-shm <file>',
        "with --qmp: read the guest's RAM in place from this shared file (no dumps; checks every 2 s by default)",
      )
      .option('--consistent', 'with --qemu-shm: pause the guest to copy what each check reads (the pause is reported)')
      .option(
        '--scan-interval <seconds>',
        "full-memory scans at most this often (the policy's signatures rules; with --qemu-shm also the task_struct carving, default 60): the checks between keep the last hits",
        parsePositiveNumber,
      )
      .option(
        '--interval <seconds>',
        'with --qmp: time between the starts of two dumps or checks, e.g. 60, 2s, 500ms (default 60, 2 with --qemu-shm)',
        parsePositiveNumber,
      )
      .option(
        '--policy <file>',
        'judge every snapshot by this policy (YAML or JSON); without it only changes are reported',
      )
      .option(
        '--host-metadata <file>',
        "the host's location for geo_fence rules (JSON: region, postal_code, timezone), re-read for every snapshot",
      )
      .option('--alerts <file>', 'append the alerts (NDJSON) to this file instead of writing them to stdout')
      .option('--temp-dir <dir>', 'with --qmp: where QEMU writes the dumps (default the system temp folder)')
      .option(
        '--disk-budget <size>',
        'with --qmp: most disk the dumps held at once may take, e.g. 2G, 512M (default unlimited)',
        parseByteSize,
      )
      .option('--include-existing', 'with --folder: also analyse the dumps already in the folder at start')
      .option('--report-dir <dir>', 'write an HTML report of each snapshot that raised an alert into this folder')
      .addHelpText('after', `\n${WATCH_HELP}\n`),
  );
  // The common --json/--ndjson choose an analysis's output format; a watch's is always NDJSON.
  for (const option of command.options) if (option.long === '--json' || option.long === '--ndjson') option.hideHelp();
  command.action(async (options: Options & WatchCliOptions) => {
    checkSourceOptions(options);
    // Everything that can be wrong with the arguments fails here, before a dump is taken.
    const policy = options.policy !== undefined ? loadPolicy(options.policy) : undefined;
    if (options.hostMetadata !== undefined) readHostMetadata(options.hostMetadata);
    const alerts = openAlertSink(options.alerts);
    const stop = new AbortController();
    const removeSignalHandlers = stopOnSignals(stop);
    const progress = perSnapshotProgress(options.progress);
    const writeAlert = (alert: WatchAlert): void => {
      progress.stop();
      alerts.write(alert);
    };
    try {
      const source = openSource(options, {
        signal: stop.signal,
        onProblem: (problem) => writeAlert(sourceProblemAlert(problem)),
      });
      await runWatch({
        source,
        ...(policy ? { policy } : {}),
        ...(options.hostMetadata !== undefined ? { hostMetadataFile: options.hostMetadata } : {}),
        ...(options.scanInterval !== undefined ? { scanIntervalMs: options.scanInterval * 1000 } : {}),
        signal: stop.signal,
        contextOptions: helpers.contextOptions(options, progress),
        onAlert: writeAlert,
        onSnapshotDone: () => progress.next(),
        ...(options.reportDir !== undefined ? { onSnapshotJudged: reportAlertedSnapshots(options.reportDir) } : {}),
      });
      helpers.setExitCode(0);
    } catch (error) {
      if (!(error instanceof GuestGoneError)) throw error;
      process.stderr.write(`vmscope: ${error.message}; stopped watching\n`);
      helpers.setExitCode(GUEST_GONE_EXIT);
    } finally {
      progress.stop();
      removeSignalHandlers();
      alerts.close();
    }
  });
}

/** Exactly one source, and no option meant for the other one (a silently ignored --interval is a surprise at 3 a.m.). */
function checkSourceOptions(options: WatchCliOptions): void {
  if (options.json)
    throw new VmscopeError('USAGE', 'watch always writes NDJSON (one alert per line): leave out --json');
  if ((options.folder === undefined) === (options.qmp === undefined)) {
    throw new VmscopeError('USAGE', 'watch needs exactly one source: --folder DIR or --qmp SOCKET');
  }
  if (options.qemuShm !== undefined && options.qmp === undefined)
    throw new VmscopeError('USAGE', '--qemu-shm needs --qmp SOCKET: the RAM layout is asked of QEMU, never assumed');
  const misplaced =
    options.folder !== undefined
      ? (['interval', 'tempDir', 'diskBudget', 'qemuShm', 'consistent'] as const)
          .filter((key) => options[key] !== undefined)
          .map(optionName)
      : options.includeExisting
        ? ['--include-existing']
        : options.qemuShm !== undefined
          ? (['tempDir', 'diskBudget'] as const).filter((key) => options[key] !== undefined).map(optionName)
          : options.consistent
            ? ['--consistent']
            : [];
  if (misplaced.length > 0) {
    throw new VmscopeError(
      'USAGE',
      `${misplaced.join(', ')} ${misplaced.length > 1 ? 'do' : 'does'} not apply to ${options.folder !== undefined ? '--folder' : options.qemuShm !== undefined ? '--qemu-shm' : '--qmp without --qemu-shm'}`,
    );
  }
  if (options.folder !== undefined && !isDirectory(options.folder)) {
    throw new VmscopeError('USAGE', `--folder ${options.folder}: not a directory`);
  }
}

function optionName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (letter) => '-' + letter.toLowerCase());
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function openSource(options: WatchCliOptions, common: SourceOptions): SnapshotSource {
  if (options.folder !== undefined)
    return new FolderSource(options.folder, { ...common, includeExisting: options.includeExisting === true });
  if (options.qemuShm !== undefined)
    return new QemuSharedMemorySource({
      ...common,
      ramPath: options.qemuShm,
      qmpSocket: options.qmp!,
      consistent: options.consistent === true,
      ...(options.interval !== undefined ? { intervalMs: options.interval * 1000 } : {}),
      ...(options.scanInterval !== undefined ? { scanIntervalMs: options.scanInterval * 1000 } : {}),
    });
  return new QmpSource(options.qmp!, {
    ...common,
    ...(options.interval !== undefined ? { intervalMs: options.interval * 1000 } : {}),
    ...(options.tempDir !== undefined ? { tempDir: options.tempDir } : {}),
    ...(options.diskBudget !== undefined ? { diskBudgetBytes: options.diskBudget } : {}),
  });
}

interface AlertSink {
  write(alert: WatchAlert): void;
  /** Flush to disk and close (a no-op for stdout). */
  close(): void;
}

/**
 * Alerts are written synchronously, one line per call: a line written is in the file (or the
 * pipe) before the next snapshot is analysed, so a crash or a kill loses no alert already emitted.
 */
function openAlertSink(path: string | undefined): AlertSink {
  if (path === undefined)
    return { write: (alert) => void process.stdout.write(JSON.stringify(alert) + '\n'), close: () => undefined };
  let fd: number;
  try {
    fd = openSync(path, 'a');
  } catch (error) {
    throw new VmscopeError('USAGE', `--alerts ${path}: cannot open for appending: ${(error as Error).message}`);
  }
  return {
    write: (alert) => void writeSync(fd, JSON.stringify(alert) + '\n'),
    close: () => {
      fsyncSync(fd);
      closeSync(fd);
    },
  };
}

/** The first SIGINT/SIGTERM stops the watch after the current snapshot; a second one exits at once. Returns the uninstaller. */
function stopOnSignals(stop: AbortController): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write(`vmscope: ${signal}: finishing the current snapshot, then stopping (again to exit at once)\n`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/** createProgress draws one bar once; a watch needs one per snapshot, and none while an alert is printed. */
function perSnapshotProgress(enabled: boolean): ReturnType<typeof createProgress> & { next(): void } {
  let current = createProgress(enabled);
  return {
    report: (phase, done, total) => current.report(phase, done, total),
    stop: () => current.stop(),
    next: () => {
      current.stop();
      current = createProgress(enabled);
    },
  };
}

/** Seconds, bare or with a unit: `60`, `2s`, `500ms`. */
function parsePositiveNumber(text: string): number {
  const unit = /^(.*?)(ms|s)?$/.exec(text.trim())!;
  const value = Number(unit[1]) / (unit[2] === 'ms' ? 1000 : 1);
  if (!Number.isFinite(value) || value <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return value;
}
