import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';

/** prb_desc.state_var: the state in the top two bits of an unsigned long, the descriptor id below. */
const STATE_SHIFT = 62n;
const ID_MASK = (1n << STATE_SHIFT) - 1n;
const U64 = (1n << 64n) - 1n;
/** enum desc_state: only committed and finalized records are complete (the kernel's own readers skip the rest). */
const DESC_COMMITTED = 1n;
const DESC_FINALIZED = 2n;
/**
 * The most descriptors and text this reads: the kernel allots one descriptor per 32 bytes of text
 * (PRB_AVGBITS), and 2^22 descriptors is a 128 MiB log, far beyond log_buf_len in practice.
 */
const MAX_COUNT_BITS = 22;
const MAX_SIZE_BITS = 31;
/** Each data block starts with the id of the descriptor that owns it (an unsigned long). */
const BLOCK_ID_SIZE = 8;
/** Problems of one kind reported one by one before they are only counted. */
const MAX_LISTED_PROBLEMS = 8;

/** One record of the kernel log, as the printk ring buffer holds it. */
export interface LogRecord {
  readonly sequence: bigint;
  /** Nanoseconds since boot (local clock), as printk stamped it. */
  readonly timestampNs: bigint;
  /** Syslog facility (0 for the kernel) and level (0 emergency … 7 debug). */
  readonly facility: number;
  readonly level: number;
  /** LOG_NEWLINE (2) / LOG_CONT (8) flags of printk_info. */
  readonly flags: number;
  readonly callerId: number;
  /** The message, continuation lines already merged into it as the kernel does; may hold newlines. */
  readonly text: string;
}

export interface KernelLog {
  readonly records: LogRecord[];
  readonly problems: string[];
}

interface RingLayout {
  readonly descs: bigint;
  readonly infos: bigint;
  readonly count: bigint;
  readonly headId: bigint;
  readonly tailId: bigint;
  readonly data: bigint;
  readonly dataSize: bigint;
  readonly sizeBits: bigint;
  readonly headLpos: bigint;
  readonly tailLpos: bigint;
}

/**
 * The kernel log from the lockless printk ring buffer (5.10+): `prb` points to the ring in use
 * (the static one or the one setup_log_buf() allocated). Descriptors are read from the tail id to
 * the head id, as the kernel's readers do: only committed or finalized ones carry a record, and a
 * record's text is the data block its descriptor's logical positions name, checked to lie in the
 * data ring's valid window and to name that descriptor back. Anything else is a problem, and the
 * records that do check out are still returned.
 */
export function readKernelLog(reader: KernelReader): KernelLog {
  const problems: string[] = [];
  let ring: RingLayout;
  try {
    ring = readRing(reader);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return { records: [], problems: [`printk ring buffer: ${error.message}`] };
  }
  const { profile } = reader;
  const descSize = BigInt(profile.sizeOf('prb_desc'));
  const infoSize = BigInt(profile.sizeOf('printk_info'));
  const info = {
    seq: profile.offsetOf('printk_info', 'seq'),
    ts: profile.offsetOf('printk_info', 'ts_nsec'),
    textLen: profile.offsetOf('printk_info', 'text_len'),
    facility: profile.offsetOf('printk_info', 'facility'),
    callerId: profile.offsetOf('printk_info', 'caller_id'),
    flags: bitfield(reader, 'flags'),
    level: bitfield(reader, 'level'),
  };
  const desc = {
    state: profile.offsetOf('prb_desc', 'state_var'),
    begin: profile.offsetOf('prb_desc', 'text_blk_lpos') + profile.offsetOf('prb_data_blk_lpos', 'begin'),
    next: profile.offsetOf('prb_desc', 'text_blk_lpos') + profile.offsetOf('prb_data_blk_lpos', 'next'),
  };
  const span = ((ring.headId - ring.tailId) & ID_MASK) + 1n;
  if (span > ring.count)
    problems.push(
      `printk ring buffer: tail id ${hex(ring.tailId)} and head id ${hex(ring.headId)} are ${span} apart, more than its ${ring.count} descriptors`,
    );
  const steps = span > ring.count ? ring.count : span;

  // The whole data ring in one read: records are small and many.
  let data: Uint8Array;
  try {
    data = reader.bytes(ring.data, Number(ring.dataSize));
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return {
      records: [],
      problems: [...problems, `printk data ring at ${hex(ring.data)} is unreadable: ${error.message}`],
    };
  }
  const dataView = new DataView(data.buffer);
  const descriptors = new ArrayWindow(reader, ring.descs, descSize, ring.count);
  const infos = new ArrayWindow(reader, ring.infos, infoSize, ring.count);
  const decoder = new TextDecoder('utf-8');
  const records: LogRecord[] = [];
  const badBlocks: string[] = [];
  let badBlockCount = 0;
  for (let step = 0n; step < steps; step++) {
    const id = (ring.tailId + step) & ID_MASK;
    const index = id & (ring.count - 1n);
    let descBytes: DataView;
    let infoBytes: DataView;
    try {
      descBytes = descriptors.at(index);
      infoBytes = infos.at(index);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      problems.push(`printk descriptor ${hex(id)} is unreadable: ${error.message}`);
      continue;
    }
    const stateVar = descBytes.getBigUint64(desc.state, true);
    const state = stateVar >> STATE_SHIFT;
    // A descriptor already reused for a newer id, or not yet complete, is no record (the kernel skips it too).
    if ((stateVar & ID_MASK) !== id || (state !== DESC_COMMITTED && state !== DESC_FINALIZED)) continue;
    const begin = descBytes.getBigUint64(desc.begin, true);
    const next = descBytes.getBigUint64(desc.next, true);
    const textLength = infoBytes.getUint16(info.textLen, true);
    const block = locateBlock(ring, begin, next);
    let text = '';
    if (block === 'dataless') {
      // A record whose text did not fit (or an empty line): the kernel shows it without text.
    } else if (typeof block === 'string') {
      badBlockCount++;
      if (badBlocks.length < MAX_LISTED_PROBLEMS) badBlocks.push(`printk record ${hex(id)}: ${block}`);
      continue;
    } else {
      const blockId = dataView.getBigUint64(block.offset, true);
      if (blockId !== id) {
        badBlockCount++;
        if (badBlocks.length < MAX_LISTED_PROBLEMS)
          badBlocks.push(
            `printk record ${hex(id)}: its data block at ${hex(begin)} belongs to descriptor ${hex(blockId)}`,
          );
        continue;
      }
      const available = block.length - BLOCK_ID_SIZE;
      const start = block.offset + BLOCK_ID_SIZE;
      text = decoder.decode(data.subarray(start, start + Math.min(textLength, available)));
    }
    const flagsByte = infoBytes.getUint8(info.flags.byte);
    records.push({
      sequence: infoBytes.getBigUint64(info.seq, true),
      timestampNs: infoBytes.getBigUint64(info.ts, true),
      facility: infoBytes.getUint8(info.facility),
      level: (infoBytes.getUint8(info.level.byte) >> info.level.position) & ((1 << info.level.length) - 1),
      flags: (flagsByte >> info.flags.position) & ((1 << info.flags.length) - 1),
      callerId: infoBytes.getUint32(info.callerId, true),
      text,
    });
  }
  problems.push(...badBlocks);
  if (badBlockCount > badBlocks.length)
    problems.push(`printk ring buffer: ${badBlockCount - badBlocks.length} more records with bad data blocks`);
  records.sort((a, b) => (a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0));
  return { records, problems };
}

/**
 * The log as `dmesg` prints it: each line of each record prefixed with `[seconds.micros]`
 * (`[%5lu.%06lu] `), as the kernel's syslog reader (record_print_text) does for multi-line records.
 */
export function formatDmesg(records: readonly LogRecord[]): string[] {
  return records.flatMap((record) => {
    const seconds = record.timestampNs / 1_000_000_000n;
    const micros = (record.timestampNs % 1_000_000_000n) / 1000n;
    const prefix = `[${seconds.toString().padStart(5)}.${micros.toString().padStart(6, '0')}] `;
    return record.text.split('\n').map((line) => prefix + line);
  });
}

/** Descriptors and infos are read a block at a time (records are consecutive); one element alone when its block is unreadable. */
class ArrayWindow {
  private static readonly BLOCK = 512n;
  private block: { first: bigint; bytes: Uint8Array } | undefined;

  constructor(
    private readonly reader: KernelReader,
    private readonly base: bigint,
    private readonly stride: bigint,
    private readonly count: bigint,
  ) {}

  /** Element `index` (below the array's count); throws a VmscopeError when it is unreadable. */
  at(index: bigint): DataView {
    const first = index - (index % ArrayWindow.BLOCK);
    if (this.block?.first !== first) {
      const length = (first + ArrayWindow.BLOCK > this.count ? this.count - first : ArrayWindow.BLOCK) * this.stride;
      try {
        this.block = { first, bytes: this.reader.bytes(this.base + first * this.stride, Number(length)) };
      } catch (error) {
        if (!(error instanceof VmscopeError)) throw error;
        this.block = undefined;
        return new DataView(this.reader.bytes(this.base + index * this.stride, Number(this.stride)).buffer);
      }
    }
    return new DataView(this.block.bytes.buffer, Number((index - first) * this.stride), Number(this.stride));
  }
}

function readRing(reader: KernelReader): RingLayout {
  const { profile } = reader;
  const ring = reader.u64(profile.requireSymbol('prb'));
  const descRing = ring + reader.offset('printk_ringbuffer', 'desc_ring');
  const dataRing = ring + reader.offset('printk_ringbuffer', 'text_data_ring');
  const countBits = reader.u32Field(descRing, 'prb_desc_ring', 'count_bits');
  const sizeBits = reader.u32Field(dataRing, 'prb_data_ring', 'size_bits');
  if (countBits > MAX_COUNT_BITS || sizeBits > MAX_SIZE_BITS || sizeBits < 3) {
    throw new VmscopeError(
      'CORRUPT_STRUCTURE',
      `ring at ${hex(ring)} claims 2^${countBits} descriptors and 2^${sizeBits} bytes of text`,
      profile.source,
      ring,
    );
  }
  const counter = (at: bigint) => reader.u64(at + reader.offset('atomic64_t', 'counter'));
  return {
    descs: reader.pointerField(descRing, 'prb_desc_ring', 'descs'),
    infos: reader.pointerField(descRing, 'prb_desc_ring', 'infos'),
    count: 1n << BigInt(countBits),
    headId: counter(descRing + reader.offset('prb_desc_ring', 'head_id')) & ID_MASK,
    tailId: counter(descRing + reader.offset('prb_desc_ring', 'tail_id')) & ID_MASK,
    data: reader.pointerField(dataRing, 'prb_data_ring', 'data'),
    dataSize: 1n << BigInt(sizeBits),
    sizeBits: BigInt(sizeBits),
    headLpos: counter(dataRing + reader.offset('prb_data_ring', 'head_lpos')),
    tailLpos: counter(dataRing + reader.offset('prb_data_ring', 'tail_lpos')),
  };
}

/**
 * Where a descriptor's text block is in the data ring (get_data() in printk_ringbuffer.c): inside
 * the ring's valid window [tail_lpos, head_lpos], at most one wrap long; a block that does not fit
 * in the ring from its start continues at offset 0. Returns why not when it is not, or
 * `'dataless'` for a record that holds no text.
 */
function locateBlock(ring: RingLayout, begin: bigint, next: bigint): { offset: number; length: number } | string {
  // BLK_DATALESS: both positions odd (FAILED_LPOS / EMPTY_LINE_LPOS).
  if ((begin & 1n) === 1n && (next & 1n) === 1n) return 'dataless';
  const window = (ring.headLpos - ring.tailLpos) & U64;
  const fromTail = (lpos: bigint) => (lpos - ring.tailLpos) & U64;
  if (fromTail(begin) > window || fromTail(next) > window || fromTail(begin) >= fromTail(next)) {
    return `its text block ${hex(begin)}..${hex(next)} lies outside the data ring's valid window ${hex(ring.tailLpos)}..${hex(ring.headLpos)}`;
  }
  const beginIndex = Number(begin & (ring.dataSize - 1n));
  const nextIndex = Number(next & (ring.dataSize - 1n));
  const beginWrap = begin >> ring.sizeBits;
  const nextWrap = next >> ring.sizeBits;
  let offset: number;
  let length: number;
  if (beginWrap === nextWrap) {
    offset = beginIndex;
    length = nextIndex - beginIndex;
  } else if (((beginWrap + 1n) & (U64 >> ring.sizeBits)) === nextWrap) {
    // Wrapped: the block is stored whole at the start of the ring.
    offset = 0;
    length = nextIndex;
  } else {
    return `its text block ${hex(begin)}..${hex(next)} spans more than one wrap of the data ring`;
  }
  if (length < BLOCK_ID_SIZE || offset + length > Number(ring.dataSize))
    return `its text block ${hex(begin)}..${hex(next)} is ${length} bytes, too short for a block`;
  return { offset, length };
}

function bitfield(reader: KernelReader, name: string): { byte: number; position: number; length: number } {
  const field = reader.profile.field('printk_info', name);
  if (field.type.kind !== 'bitfield')
    throw new VmscopeError('NO_PROFILE', `printk_info.${name} is not a bitfield`, reader.profile.source);
  // Bit positions count from the field's storage unit; the unit here is one byte.
  return {
    byte: field.offset + Math.floor(field.type.bit_position / 8),
    position: field.type.bit_position % 8,
    length: field.type.bit_length,
  };
}
