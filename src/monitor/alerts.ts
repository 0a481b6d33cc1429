import type { DiffRow } from './diff.js';
import type { Violation } from './policy.js';
import type { SnapshotSummary } from './snapshot.js';
import { GuestGoneError } from './sources/qmpSource.js';
import type { WatchAlert } from './watch.js';

export type AlertFields = Partial<Omit<WatchAlert, 'time' | 'type' | 'kind' | 'detail'>> &
  Pick<WatchAlert, 'type' | 'kind' | 'detail'>;

export function completeAlert(fields: AlertFields, time: Date): WatchAlert {
  // Key order is the NDJSON column order: when and what first, then who, then the words.
  return {
    time: time.toISOString(),
    type: fields.type,
    snapshot: fields.snapshot ?? null,
    captured_at: fields.captured_at ?? null,
    rule: fields.rule ?? null,
    severity: fields.severity ?? null,
    action: fields.action ?? null,
    kind: fields.kind,
    change: fields.change ?? null,
    pid: fields.pid ?? null,
    name: fields.name ?? null,
    comm: fields.comm ?? null,
    detail: fields.detail,
  };
}

export function violationFields(violation: Violation) {
  const { rule, severity, action, kind, pid, name, comm } = violation;
  return { rule, severity, action, kind, pid, name, comm };
}

export function changeFields(row: DiffRow): AlertFields {
  return {
    type: 'change',
    kind: row.kind,
    change: row.change,
    pid: row.pid,
    name: row.name,
    comm: row.comm,
    detail: row.detail,
  };
}

/**
 * The violations that appeared and went away since the last snapshot, and those open now. A
 * partial summary (a list cut short, an unreadable structure) may just not have seen what it
 * missed: its violations are added, but none is resolved on its word, or a damaged snapshot
 * would resolve a rootkit and the next one raise it again.
 */
export function reconcileViolations(
  open: ReadonlyMap<string, Violation>,
  found: readonly Violation[],
  partial: boolean,
): { appeared: Violation[]; resolved: Violation[]; open: Map<string, Violation> } {
  const current = new Map(found.map((violation) => [violationIdentity(violation), violation]));
  const appeared = [...current].filter(([identity]) => !open.has(identity)).map(([, violation]) => violation);
  if (partial) return { appeared, resolved: [], open: new Map([...open, ...current]) };
  const resolved = [...open].filter(([identity]) => !current.has(identity)).map(([, violation]) => violation);
  return { appeared, resolved, open: current };
}

/** A violation is the same one in the next snapshot when rule, kind and subject agree; a process is its pid and start time, so a reused pid is a new violation. */
export function violationIdentity(violation: Violation): string {
  return JSON.stringify([
    violation.rule,
    violation.kind,
    violation.pid,
    violation.name,
    violation.comm,
    violation.startTime?.toString() ?? null,
  ]);
}

/** Another kernel: one `kernel` change saying so, and every open violation resolved (the watch starts over). */
export function rebootAlerts(
  before: SnapshotSummary,
  after: SnapshotSummary,
  open: Iterable<Violation>,
): AlertFields[] {
  const banners = `${JSON.stringify(before.banner.trimEnd())} → ${JSON.stringify(after.banner.trimEnd())}`;
  return [
    {
      type: 'change',
      kind: 'kernel',
      change: 'changed',
      detail: `the guest now runs another kernel (${banners}): comparison starts over from this snapshot`,
    },
    ...[...open].map((violation): AlertFields => ({
      ...violationFields(violation),
      type: 'resolved',
      detail: `the guest rebooted into another kernel: ${violation.detail}`,
    })),
  ];
}

export function sourceFailureAlert(error: unknown): AlertFields {
  const detail = error instanceof Error ? error.message : String(error);
  return { type: 'error', kind: error instanceof GuestGoneError ? 'guest_gone' : 'source_failed', detail };
}
