import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';

/** More call sites than any kernel with all modules loaded has (a 6.x distribution kernel: ~60k). */
const MAX_FTRACE_RECORDS = 1 << 22;
const PAGE_SIZE = 4096;
/** ftrace_page.order: pages are allocated in blocks of at most MAX_ORDER; anything larger is forged. */
const MAX_PAGE_ORDER = 10;

/** One `struct dyn_ftrace`: a patchable call site (the `call __fentry__` at a function's entry). */
export interface FtraceRecord {
  readonly ip: bigint;
  /** The raw flags word (reference count in the low bits, FTRACE_FL_* above). */
  readonly flags: bigint;
}

export interface FtraceRecordWalk {
  readonly records: FtraceRecord[];
  readonly problems: string[];
}

/**
 * Every dyn_ftrace record: the call sites the kernel itself knows it may patch (kernel and module
 * functions compiled with fentry), walked from `ftrace_pages_start` through each page's `next`,
 * cycle-checked and bounded by the page's own allocation size. Empty without dynamic ftrace.
 */
export function readFtraceRecords(reader: KernelReader): FtraceRecordWalk {
  const { profile } = reader;
  const start = profile.symbol('ftrace_pages_start');
  if (start === undefined || profile.type('dyn_ftrace') === undefined) return { records: [], problems: [] };
  const recordSize = profile.sizeOf('dyn_ftrace');
  const ipOffset = profile.offsetOf('dyn_ftrace', 'ip');
  const flagsOffset = profile.offsetOf('dyn_ftrace', 'flags');
  const records: FtraceRecord[] = [];
  const problems: string[] = [];
  const seen = new Set<bigint>();
  let page: bigint;
  try {
    page = reader.u64(start);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { records, problems: [`ftrace_pages_start is unreadable: ${error.message}`] };
  }
  while (page !== 0n) {
    if (seen.has(page)) {
      problems.push(`ftrace pages loop back to ${hex(page)}`);
      break;
    }
    seen.add(page);
    try {
      const order = reader.i32Field(page, 'ftrace_page', 'order');
      const count = reader.i32Field(page, 'ftrace_page', 'index');
      const capacity = order >= 0 && order <= MAX_PAGE_ORDER ? Math.floor((PAGE_SIZE << order) / recordSize) : 0;
      if (count < 0 || count > capacity || records.length + count > MAX_FTRACE_RECORDS) {
        problems.push(
          `ftrace page ${hex(page)} claims ${count} records in ${capacity === 0 ? `an order-${order} block` : `room for ${capacity}`}`,
        );
        break;
      }
      const table = reader.bytes(reader.pointerField(page, 'ftrace_page', 'records'), count * recordSize);
      const view = new DataView(table.buffer);
      for (let at = 0; at < table.length; at += recordSize) {
        records.push({ ip: view.getBigUint64(at + ipOffset, true), flags: view.getBigUint64(at + flagsOffset, true) });
      }
      page = reader.pointerField(page, 'ftrace_page', 'next');
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`ftrace page ${hex(page)} is unreadable: ${error.message}`);
      break;
    }
  }
  return { records, problems };
}
