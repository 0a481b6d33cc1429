/**
 * The watch loop: every snapshot a source hands out is summarized, compared with the previous
 * one and judged by the policy, and what matters comes out as alerts — the library API behind
 * `vmscope watch`, for monitors that embed vmscope.
 *
 * ```ts
 * const source = new QmpSource('/run/guest/qmp.sock', { intervalMs: 60_000, signal });
 * for await (const alert of watch({ source, policy: loadPolicy('policy.yaml'), signal })) {
 *   console.log(JSON.stringify(alert));          // one NDJSON line per alert
 * }
 * ```
 *
 * Shape: an async generator, pulled by its consumer. The next snapshot is asked of the source
 * only when the consumer asks for the next alert, so a slow consumer slows the loop instead of
 * piling up dumps (each as large as the guest's RAM). `onAlert` is awaited for every alert just
 * before it is yielded; `runWatch` drains the generator for callback-only use.
 *
 * How it ends: normally when `signal` aborts (after the snapshot under analysis is finished and
 * its alerts are emitted) or when the source ends; by throwing the source's error otherwise
 * (GuestGoneError for a QEMU that went away), right after an `error` alert saying so.
 *
 * What is reported, per snapshot:
 * - `change`: every diff row against the previous snapshot of the same kernel (none for the
 *   first). When the kernel banner differs (the guest rebooted into another kernel) a single
 *   `change` of kind `kernel` says so and the watch starts over: every open violation is
 *   resolved and the new snapshot is judged as a first one.
 * - `violation`: a policy violation when it first appears — all of them on the first snapshot.
 *   A violation that persists is not repeated (a rootkit that stays would flood the alerts and
 *   re-run its action at every interval); its rule's action runs once, before its alert is
 *   emitted (so a paused guest is already paused when the alert is read).
 * - `resolved`: a violation open before that the policy no longer finds.
 * - `error`: a dump that could not be read (the watch goes on), an action that failed, the
 *   guest going away.
 * A violation is "the same" across snapshots when its rule, kind, pid, name and comm are: the
 * detail (counts, capture times) may change without reopening it.
 *
 * A running guest read in place (a smeared snapshot) may change under the walk, so a read that
 * finds anything is read again, and only what two reads in a row agree on is reported. After
 * three reads with no two in a row agreeing, the second is reported as far as the third repeats
 * it and becomes the baseline: a change that began during the check is the next check's news.
 */
import type { ContextOptions } from '../analyses/context.js';
import { isVmscopeError } from '../util/errors.js';
import { runAction } from './actions.js';
import {
  changeFields,
  completeAlert,
  rebootAlerts,
  reconcileViolations,
  sourceFailureAlert,
  violationFields,
  violationIdentity,
  type AlertFields,
} from './alerts.js';
import { diffSnapshots, type DiffChange, type DiffKind, type DiffOptions } from './diff.js';
import {
  evaluatePolicy,
  policyRulesFiles,
  type Action,
  type Policy,
  type Severity,
  type Violation,
  type ViolationKind,
} from './policy.js';
import type { SnapshotSummary } from './snapshot.js';
import type { Snapshot, SnapshotSource, SourceProblem } from './sources/source.js';
import { isPartialSummary, summarizeDump, summarizeSnapshot, type SummarizeOptions } from './summarize.js';

export { reconcileViolations } from './alerts.js';

export type AlertType = 'violation' | 'resolved' | 'change' | 'error';

/** Why an `error` alert was emitted. Source problems keep the source's own kind. */
export type ErrorKind =
  | 'unreadable_dump'
  | 'action_failed'
  | 'guest_gone'
  | 'source_failed'
  | 'broken_file'
  | 'dump_skipped'
  | 'dump_failed'
  | 'memory_unreadable';

/**
 * One alert, shaped for NDJSON: `JSON.stringify(alert)` is the line (snake_case keys, ISO
 * times, null rather than absent). Fields that do not apply to a type are null.
 */
export interface WatchAlert {
  /** When the alert was emitted. */
  readonly time: string;
  readonly type: AlertType;
  /** The dump concerned (for QMP a temporary file, removed once analysed); null when no dump is. */
  readonly snapshot: string | null;
  /** The guest's clock at capture (or the file's mtime, see SnapshotSummary); null when the dump was not read. */
  readonly captured_at: string | null;
  /** The policy rule, for violations, resolutions and failed actions. */
  readonly rule: string | null;
  readonly severity: Severity | null;
  readonly action: Action | null;
  /** A ViolationKind, a DiffKind, `kernel` (rebooted into another kernel) or an ErrorKind. */
  readonly kind: ViolationKind | DiffKind | 'kernel' | ErrorKind;
  /** For changes: started/ended/loaded/… (DiffChange). */
  readonly change: DiffChange | null;
  readonly pid: number | null;
  readonly name: string | null;
  readonly comm: string | null;
  readonly detail: string;
}

/** How long each step of one snapshot took, for monitoring the monitor. */
export interface SnapshotTimings {
  readonly snapshot: string;
  /** Waiting for the source (for QMP: the rest of the interval, then QEMU writing the dump). */
  readonly waitMs: number;
  /** Opening the dump and summarizing it (profile included: cached on disk after the first). */
  readonly summarizeMs: number;
  readonly diffMs: number;
  readonly policyMs: number;
  /** Running the actions of new violations (exec, pause). */
  readonly actionsMs: number;
  /** Alerts the snapshot produced. */
  readonly alerts: number;
  /** Reads of the memory: more than one when a running guest's findings were confirmed. */
  readonly reads?: number;
  /** How long the guest was paused for this snapshot (a consistent live read), in ms. */
  readonly pausedMs?: number;
}

export interface WatchOptions {
  readonly source: SnapshotSource;
  /** Without a policy only changes (and errors) are reported. */
  readonly policy?: Policy;
  /** Called (and awaited) with every alert, just before it is yielded. */
  readonly onAlert?: (alert: WatchAlert) => void | Promise<void>;
  /** Stops the watch once the snapshot under analysis is done; a wait for the next snapshot is cut short. */
  readonly signal?: AbortSignal;
  /** How each dump is opened (ISF, profile cache directory, progress). */
  readonly contextOptions?: ContextOptions;
  readonly diffOptions?: DiffOptions;
  /** Bound on an `exec` action's command; it is killed (and an error alert emitted) after. Default 30 000 ms. */
  readonly execTimeoutMs?: number;
  /** Called after each snapshot (an unreadable one too: it took the time it took to fail), with where the time went. */
  readonly onSnapshotDone?: (timings: SnapshotTimings) => void;
  /** Called (and awaited) after each summarized snapshot with its summary and the alerts it raised (watch --report-dir writes its report). */
  readonly onSnapshotJudged?: (summary: SnapshotSummary, alerts: readonly WatchAlert[]) => void | Promise<void>;
  /** The host's location (JSON: region, postal_code, timezone) for `geo_fence` rules, re-read for every snapshot (a live migration is seen). */
  readonly hostMetadataFile?: string;
  /**
   * Signature scans (the policy's `signatures` rules read all of memory) at most this often; the
   * snapshots between carry the last scan's hits. Default: every snapshot.
   */
  readonly scanIntervalMs?: number;
  /** The alerts' `time` (tests pin it). Default: the real clock. */
  readonly now?: () => Date;
}

const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
/** Reads of a running guest per snapshot at most: the first, its confirmation, and one more when they disagree. */
const MAX_SMEARED_READS = 3;
const NOTHING_DONE = { waitMs: 0, summarizeMs: 0, diffMs: 0, policyMs: 0, actionsMs: 0, alerts: 0 } as const;
/** What is kept of an exec'd command's stderr to explain its failure. */

/** Watch the source until the signal aborts or the source ends; see the module comment. */
export async function* watch(options: WatchOptions): AsyncGenerator<WatchAlert, void, undefined> {
  const { source, signal } = options;
  const now = options.now ?? (() => new Date());
  const emit = async (fields: AlertFields): Promise<WatchAlert> => {
    const alert = completeAlert(fields, now());
    await options.onAlert?.(alert);
    return alert;
  };

  const snapshots = source[Symbol.asyncIterator]();
  // Closing the source while a snapshot is being analysed would close what the analysis still
  // uses (the QMP connection a pause goes through): only a wait for the next snapshot is cut short.
  let waitingForSource = false;
  const stopWaiting = (): void => {
    if (waitingForSource) void source.close();
  };
  signal?.addEventListener('abort', stopWaiting, { once: true });

  // The policy's `signatures` rules need the dump scanned with their rules files while it is open.
  const rulesFiles = options.policy ? policyRulesFiles(options.policy) : [];
  const rulesById = new Map((options.policy?.rules ?? []).map((rule) => [rule.id, rule]));
  const scans = signatureCadence(options.scanIntervalMs);
  let previous: SnapshotSummary | undefined;
  let open = new Map<string, Violation>();
  try {
    while (!signal?.aborted) {
      const waitStarted = performance.now();
      let next: IteratorResult<Snapshot>;
      waitingForSource = true;
      try {
        next = await snapshots.next();
      } catch (error) {
        yield await emit(sourceFailureAlert(error));
        throw error;
      } finally {
        waitingForSource = false;
      }
      if (next.done) return;
      const snapshot = next.value;
      const waitMs = performance.now() - waitStarted;

      const summarizeStarted = performance.now();
      const summarizeOptions: SummarizeOptions = {
        rulesFiles: scans.due() ? rulesFiles : [],
        ...(options.hostMetadataFile !== undefined ? { hostMetadataFile: options.hostMetadataFile } : {}),
        ...(snapshot.capturedAt ? { hostCapturedAt: snapshot.capturedAt } : {}),
      };
      const read = (): Promise<SnapshotSummary> =>
        summarizeOf(snapshot, options.contextOptions, summarizeOptions).then((summary) => scans.carry(summary));
      let summary: SnapshotSummary;
      let judged: Judgement;
      let reads = 1;
      try {
        summary = await read();
        judged = judge(summary, previous, open, options);
        // A running guest's lists may change under the walk: alert only what two reads in a row agree on.
        if (snapshot.smeared && !judged.quiet) {
          for (;;) {
            const again = await read();
            reads++;
            const later = judge(again, previous, open, options);
            if (agreement(judged, later).complete) {
              [summary, judged] = [again, later];
              break;
            }
            if (reads === MAX_SMEARED_READS) {
              // Out of reads: the earlier read is the new baseline, alerting what the later one repeats. A
              // change the later read saw first is then still news to the next check, not hidden in its baseline.
              judged = agreement(judged, later).judgement;
              break;
            }
            [summary, judged] = [again, later];
          }
        }
      } catch (error) {
        // Whatever the dump did to the analysis (a VmscopeError, or a bug it tripped), the next dump deserves a look.
        const reason = isVmscopeError(error)
          ? error.describe()
          : error instanceof Error
            ? error.message
            : String(error);
        await snapshot.release();
        yield await emit({
          type: 'error',
          snapshot: snapshot.path,
          kind: 'unreadable_dump',
          detail: `the dump could not be analysed: ${reason}`,
        });
        options.onSnapshotDone?.({
          ...NOTHING_DONE,
          snapshot: snapshot.path,
          waitMs,
          summarizeMs: performance.now() - summarizeStarted,
          alerts: 1,
          ...pausedOf(snapshot),
        });
        continue;
      }
      // Only the summary is needed from here on: a QMP dump (as large as the guest's RAM) goes now, a paused guest resumes.
      await snapshot.release();
      const summarizeMs = performance.now() - summarizeStarted;
      const about = { snapshot: summary.path, captured_at: summary.capturedAt.toISOString() };
      const raised: WatchAlert[] = [];
      const emitRaised = async (fields: AlertFields): Promise<WatchAlert> => {
        const alert = await emit(fields);
        raised.push(alert);
        return alert;
      };

      const { changes, reconciled, diffMs, policyMs } = judged;
      for (const change of changes) {
        yield await emitRaised({ ...about, ...change });
      }
      const { appeared, resolved } = reconciled;
      open = reconciled.open;
      previous = summary;

      let actionsMs = 0;
      for (const violation of appeared) {
        // Built before the action runs (exec hands it to the command), emitted after (a pause is done by the time it is read).
        const alert = completeAlert(
          { ...about, ...violationFields(violation), type: 'violation', detail: violation.detail },
          now(),
        );
        const actionStarted = performance.now();
        const failure = await runAction(
          violation,
          rulesById.get(violation.rule)?.command,
          alert,
          source,
          options.execTimeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
        );
        actionsMs += performance.now() - actionStarted;
        await options.onAlert?.(alert);
        raised.push(alert);
        yield alert;
        if (failure) {
          yield await emitRaised({
            ...about,
            ...violationFields(violation),
            type: 'error',
            kind: 'action_failed',
            detail: failure,
          });
        }
      }
      for (const violation of resolved) {
        yield await emitRaised({
          ...about,
          ...violationFields(violation),
          type: 'resolved',
          detail: `no longer found: ${violation.detail}`,
        });
      }
      await options.onSnapshotJudged?.(summary, raised);
      options.onSnapshotDone?.({
        snapshot: snapshot.path,
        waitMs,
        summarizeMs,
        diffMs,
        policyMs,
        actionsMs,
        alerts: raised.length,
        reads,
        ...pausedOf(snapshot),
      });
    }
  } finally {
    signal?.removeEventListener('abort', stopWaiting);
    // Ends the source's own iteration too (the for-await protocol's return()): sockets and temp files go.
    await snapshots.return?.();
  }
}

/** The summary of one read: of a fresh context over live memory, or of the dump file. */
async function summarizeOf(
  snapshot: Snapshot,
  contextOptions: ContextOptions | undefined,
  options: SummarizeOptions,
): Promise<SnapshotSummary> {
  if (!snapshot.openContext) return summarizeDump(snapshot.path, contextOptions, options);
  const context = await snapshot.openContext(contextOptions ?? {});
  try {
    return await summarizeSnapshot(context, options);
  } finally {
    context.close();
  }
}

/** What one summary means against the state so far: its changes and the violations that appear and go. */
interface Judgement {
  readonly changes: AlertFields[];
  readonly rebooted: boolean;
  readonly reconciled: ReturnType<typeof reconcileViolations>;
  /** Nothing to alert: no change, no violation appearing or going. */
  readonly quiet: boolean;
  readonly diffMs: number;
  readonly policyMs: number;
}

function judge(
  summary: SnapshotSummary,
  previous: SnapshotSummary | undefined,
  open: ReadonlyMap<string, Violation>,
  options: WatchOptions,
): Judgement {
  const diffStarted = performance.now();
  const rebooted = previous !== undefined && previous.banner !== summary.banner;
  const changes =
    previous === undefined
      ? []
      : rebooted
        ? rebootAlerts(previous, summary, open.values())
        : diffSnapshots(previous, summary, options.diffOptions).map(changeFields);
  const diffMs = performance.now() - diffStarted;
  const policyStarted = performance.now();
  const reconciled = reconcileViolations(
    rebooted ? new Map() : open,
    options.policy ? evaluatePolicy(options.policy, summary) : [],
    isPartialSummary(summary),
  );
  const quiet = changes.length === 0 && reconciled.appeared.length === 0 && reconciled.resolved.length === 0;
  return { changes, rebooted, reconciled, quiet, diffMs, policyMs: performance.now() - policyStarted };
}

/** A change is the same one in two reads when what and who agree (its detail may differ). */
function changeKey(change: AlertFields): string {
  return JSON.stringify([change.type, change.kind, change.change, change.pid, change.name, change.comm]);
}

/**
 * What two reads of a running guest (judged against the same baseline) agree on: `read`'s
 * changes, appearing and resolved violations that `confirmation` found too (`complete` when
 * the two found the same). The violations left open are `read`'s, minus those only it saw appear.
 */
function agreement(read: Judgement, confirmation: Judgement): { judgement: Judgement; complete: boolean } {
  const confirmedChanges = new Set(confirmation.changes.map(changeKey));
  const confirmedAppeared = new Set(confirmation.reconciled.appeared.map(violationIdentity));
  const confirmedResolved = new Set(confirmation.reconciled.resolved.map(violationIdentity));
  const changes = read.changes.filter((change) => confirmedChanges.has(changeKey(change)));
  const appeared = read.reconciled.appeared.filter((violation) => confirmedAppeared.has(violationIdentity(violation)));
  const resolved = read.reconciled.resolved.filter((violation) => confirmedResolved.has(violationIdentity(violation)));
  const unconfirmed = new Set(
    read.reconciled.appeared.filter((violation) => !appeared.includes(violation)).map(violationIdentity),
  );
  const open = new Map([...read.reconciled.open].filter(([identity]) => !unconfirmed.has(identity)));
  for (const violation of read.reconciled.resolved.filter((violation) => !resolved.includes(violation)))
    open.set(violationIdentity(violation), violation);
  const complete =
    changes.length === read.changes.length &&
    changes.length === confirmation.changes.length &&
    appeared.length === read.reconciled.appeared.length &&
    appeared.length === confirmation.reconciled.appeared.length &&
    resolved.length === read.reconciled.resolved.length &&
    resolved.length === confirmation.reconciled.resolved.length;
  return {
    judgement: { ...read, changes, reconciled: { appeared, resolved, open }, quiet: false },
    complete,
  };
}

function pausedOf(snapshot: Snapshot): { pausedMs?: number } {
  return snapshot.pausedMs !== undefined ? { pausedMs: snapshot.pausedMs } : {};
}

/** When signature scans are due, and the last scan's hits for the snapshots between. */
function signatureCadence(intervalMs: number | undefined): {
  due(): boolean;
  carry(summary: SnapshotSummary): SnapshotSummary;
} {
  let lastScanAt = Number.NEGATIVE_INFINITY;
  let lastHits: SnapshotSummary['signatures'];
  return {
    due: () => intervalMs === undefined || performance.now() - lastScanAt >= intervalMs,
    carry: (summary) => {
      if (summary.signatures !== undefined) {
        lastScanAt = performance.now();
        lastHits = summary.signatures;
        return summary;
      }
      return lastHits !== undefined ? { ...summary, signatures: lastHits } : summary;
    },
  };
}

/** Drain `watch(options)` for callback-style use (`onAlert`); resolves when the watch ends. */
export async function runWatch(options: WatchOptions): Promise<void> {
  for await (const _alert of watch(options)) {
    // onAlert has seen it.
  }
}

/** A source's non-fatal problem (a broken file, a skipped or failed dump) as an `error` alert, for the source's `onProblem`. */
export function sourceProblemAlert(problem: SourceProblem, time = new Date()): WatchAlert {
  const kind = problem.kind.replaceAll('-', '_') as ErrorKind;
  return completeAlert({ type: 'error', snapshot: problem.path ?? null, kind, detail: problem.message }, time);
}
