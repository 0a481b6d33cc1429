/**
 * The report's data model: what the HTML page shows, as plain JSON (addresses as `0x…` strings,
 * times since boot as seconds). Built here from providers and summaries, embedded in the page,
 * read by the page's script (src/report/page): the one contract between the two.
 */

/** One of `check`'s findings. */
export interface ReportFinding {
  readonly kind: string;
  readonly severity: string;
  readonly subject: string;
  readonly owner: string;
  readonly detail: string;
}

/** A watch alert that made the monitor write the report. */
export interface ReportAlert {
  readonly type: string;
  readonly kind: string;
  readonly rule: string | null;
  readonly severity: string | null;
  readonly pid: number | null;
  readonly comm: string | null;
  readonly detail: string;
}

export interface ReportProcess {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** argv; null when unreadable (kernel thread, pages absent). */
  readonly cmdline: readonly string[] | null;
  /** Seconds since boot. */
  readonly startSeconds: number;
  readonly kernelThread: boolean;
  /** Alive but missing from the task list (DKOM). */
  readonly hidden: boolean;
  /** The executable when it is a memfd, a pseudo file or a deleted file. */
  readonly fileless: string | null;
  /** Executable regions backed by no file. */
  readonly injectedRegions: number;
}

export interface ReportEnvironment {
  readonly pid: number;
  readonly variables: readonly string[];
}

export interface ReportSocket {
  readonly pid: number | null;
  readonly comm: string | null;
  readonly proto: string;
  readonly local: string;
  readonly remote: string;
  readonly state: string;
  readonly inode: number;
}

export interface ReportModule {
  readonly name: string;
  /** The struct module. */
  readonly address: string;
  /** Off the module list (found by the hidden-module search). */
  readonly hidden: boolean;
}

export interface ReportSignatureHit {
  readonly rule: string;
  readonly string: string | null;
  readonly physical: string | null;
  /** `process`, `kernel`, `unowned`, `dump`, `unknown`. */
  readonly owner: string;
  readonly pid: number | null;
  readonly comm: string | null;
  readonly virtual: string | null;
}

export type MemoryMarkKind = 'signature' | 'carved_task' | 'injected_code';

/** Something placed on the physical memory map. */
export interface MemoryMark {
  readonly kind: MemoryMarkKind;
  readonly physical: number;
  readonly label: string;
}

export interface ReportMemoryMap {
  /** The physical ranges the dump holds, [start, end). */
  readonly ranges: ReadonlyArray<readonly [number, number]>;
  readonly marks: readonly MemoryMark[];
}

export interface CarvedTask {
  readonly pid: number;
  readonly comm: string;
  readonly physical: string;
  /** alive, zombie, exited. */
  readonly life: string;
  readonly hidden: boolean;
}

export type TimelineKind = 'process_start' | 'module' | 'kernel_log';

export interface TimelineEvent {
  /** Seconds since boot. */
  readonly seconds: number;
  readonly kind: TimelineKind;
  readonly text: string;
}

/** The report of one dump (or of one snapshot a watch alerted on). */
export interface DumpReport {
  readonly type: 'dump';
  readonly generatedAt: string;
  readonly source: { readonly path: string; readonly format: string | null; readonly bytes: number | null };
  readonly kernel: { readonly banner: string; readonly capturedAt: string; readonly capturedAtSource: string };
  /** `check`'s findings; null when the report was written from a watch's summary (its alerts stand instead). */
  readonly findings: readonly ReportFinding[] | null;
  readonly alerts: readonly ReportAlert[] | null;
  readonly processes: readonly ReportProcess[];
  readonly environments: readonly ReportEnvironment[];
  readonly sockets: readonly ReportSocket[];
  readonly modules: readonly ReportModule[];
  /** null when no rules were given. */
  readonly signatures: readonly ReportSignatureHit[] | null;
  readonly carvedTasks: readonly CarvedTask[];
  readonly memory: ReportMemoryMap | null;
  readonly timeline: readonly TimelineEvent[];
  readonly warnings: readonly string[];
}

export interface SnapshotHeader {
  readonly path: string;
  readonly banner: string;
  readonly capturedAt: string;
}

export interface ReportDiffRow {
  readonly kind: string;
  readonly change: string;
  readonly pid: number | null;
  readonly name: string | null;
  readonly comm: string | null;
  readonly detail: string;
}

/** The report of what changed between two snapshots. */
export interface DiffReport {
  readonly type: 'diff';
  readonly generatedAt: string;
  readonly before: SnapshotHeader;
  readonly after: SnapshotHeader;
  readonly rows: readonly ReportDiffRow[];
  readonly warnings: readonly string[];
}

/** One dump of a batch, in its index. */
export interface IndexEntry {
  readonly path: string;
  readonly kernel: string | null;
  readonly findings: number;
  readonly hits: number;
  /** The report's file name, beside the index; null when none was written. */
  readonly report: string | null;
  readonly error: string | null;
}

/** A batch's index: every dump, linking its report. */
export interface IndexReport {
  readonly type: 'index';
  readonly generatedAt: string;
  readonly dumps: readonly IndexEntry[];
}

export type ReportData = DumpReport | DiffReport | IndexReport;
