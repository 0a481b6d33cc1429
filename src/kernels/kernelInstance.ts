import { kernelsWasmBase64 } from './generated/wasmBinary.js';
import { buildAtomTables } from './atomTables.js';
import {
  ATOM_TABLES_BYTES,
  DEFAULT_WINDOW_BYTES,
  PAGE_TABLE_ADDRESS,
  TABLE_RECORDS_ADDRESS,
  WASM_PAGE_BYTES,
  WINDOW_ADDRESS,
} from './memoryMap.js';
import { planNeedleGroups, writeNeedleGroup, type NeedleGroup } from './needleTable.js';

interface KernelExports {
  findNeedles(needleCount: number, dataEnd: number, from: number, positionEnd: number): number;
  filterAtoms(tables: number, dataEnd: number, from: number, positionEnd: number): number;
  decodeTable(tableAddress: number, level: number, outAddress: number): number;
  findWordsInRange(low: bigint, high: bigint, dataEnd: number, from: number, positionEnd: number): number;
}

const OS_PAGE_BYTES = 4096;
/** Keeps every window address, and the end of any scan, a u32 with room to spare. */
const MAX_WINDOW_BYTES = 1 << 30;
/** Measured: enough filter and verification work for V8 to start optimizing every kernel function. */
const WARM_UP_BYTES = 16 * 1024;
const WARM_UP_CALLS = 8;

let kernelsModule: WebAssembly.Module | undefined;
const sharedInstances = new Map<number, KernelInstance>();

/**
 * One instance of the kernels with its linear memory (memoryMap.ts). The memory is created at its
 * final size and never grows, because growing a non-shared memory detaches every view of it; its
 * window pages are touched once up front, because first-touch page faults would otherwise dominate
 * the first scan.
 */
export class KernelInstance {
  readonly memory: Uint8Array;
  readonly words: Uint32Array;
  /** Where the host puts the bytes to search: reads from a dump land here directly. */
  readonly window: Uint8Array;
  /** Where filterAtoms finds its tables: right after the window (memoryMap.ts). */
  readonly atomTablesAddress: number;
  readonly kernels: KernelExports;
  private loadedGroup: NeedleGroup | undefined;
  private loadedAtomTables: Uint8Array | undefined;
  private busy = false;

  /** This thread's instance with a window of `windowBytes`, created on first use. */
  static shared(windowBytes: number = DEFAULT_WINDOW_BYTES): KernelInstance {
    let instance = sharedInstances.get(windowBytes);
    if (!instance) {
      instance = new KernelInstance(windowBytes);
      sharedInstances.set(windowBytes, instance);
    }
    return instance;
  }

  private constructor(windowBytes: number) {
    if (
      !Number.isInteger(windowBytes) ||
      windowBytes <= 0 ||
      windowBytes % WASM_PAGE_BYTES !== 0 ||
      windowBytes > MAX_WINDOW_BYTES
    ) {
      throw new RangeError(
        `windowBytes ${windowBytes} must be a multiple of ${WASM_PAGE_BYTES} between ${WASM_PAGE_BYTES} and ${MAX_WINDOW_BYTES}`,
      );
    }
    kernelsModule ??= new WebAssembly.Module(Buffer.from(kernelsWasmBase64, 'base64'));
    this.atomTablesAddress = WINDOW_ADDRESS + windowBytes;
    const pages = (this.atomTablesAddress + ATOM_TABLES_BYTES) / WASM_PAGE_BYTES;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const instance = new WebAssembly.Instance(kernelsModule, { env: { memory } });
    this.kernels = instance.exports as unknown as KernelExports;
    this.memory = new Uint8Array(memory.buffer);
    this.words = new Uint32Array(memory.buffer);
    this.window = this.memory.subarray(WINDOW_ADDRESS, WINDOW_ADDRESS + windowBytes);
    for (let page = 0; page < this.memory.length; page += OS_PAGE_BYTES) this.memory[page] = 0;
    this.warmUp();
  }

  /** Puts `group` in the needle table unless it is already there. */
  loadGroup(group: NeedleGroup): void {
    if (this.loadedGroup === group) return;
    writeNeedleGroup(this.memory, group);
    this.loadedGroup = group;
  }

  /** Puts atom tables built by atomFilter.ts after the window unless they are already there. */
  loadAtomTables(tables: Uint8Array): void {
    if (this.loadedAtomTables === tables) return;
    this.memory.set(tables, this.atomTablesAddress);
    this.loadedAtomTables = tables;
  }

  /** Runs `work` as the only user of the window and tables: a callback starting another search on this instance mid-scan would overwrite them. */
  exclusive<T>(work: () => T): T {
    if (this.busy)
      throw new Error('this kernel instance is already scanning (a search was started from inside a search callback)');
    this.busy = true;
    try {
      return work();
    } finally {
      this.busy = false;
    }
  }

  /**
   * V8 first runs WASM code in its baseline tier (about half speed here) and optimizes a function
   * in the background once it has done enough work. Doing that work now, on the zeroed window
   * where every address is a hit for zero needles and zero atoms so verification runs too, lets
   * the few milliseconds of optimization overlap the first read from the dump. The warm-up's
   * needle group and atom tables stay marked loaded, so the first real search loads its own.
   */
  private warmUp(): void {
    const zeros = new Uint8Array(2);
    const group = planNeedleGroups([zeros, zeros, zeros, zeros])[0]!;
    this.loadGroup(group);
    this.loadAtomTables(buildAtomTables([Uint8Array.of(0), zeros, new Uint8Array(4)]));
    const end = WINDOW_ADDRESS + WARM_UP_BYTES;
    for (let call = 0; call < WARM_UP_CALLS; call++) {
      const needleCount = 1 + (call % group.needles.length);
      this.kernels.findNeedles(needleCount, end, WINDOW_ADDRESS, end);
      this.kernels.filterAtoms(this.atomTablesAddress, end, WINDOW_ADDRESS, end);
      this.kernels.decodeTable(PAGE_TABLE_ADDRESS, 1 + (call % 4), TABLE_RECORDS_ADDRESS);
      this.kernels.findWordsInRange(0n, BigInt(call), end, WINDOW_ADDRESS, end);
    }
  }
}
