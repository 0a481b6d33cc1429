import { statSync } from 'node:fs';
import { DumpContext, type CarriedKernel, type ContextOptions } from '../../analyses/context.js';
import { carvedTasksProvider, taskCarverProvider } from '../../analyses/providers/processes.js';
import { PageCopyImage } from '../../image/pageCopyImage.js';
import { openQemuSharedMemory } from '../../image/qemuSharedMemory.js';
import { imageWithCpus } from '../../image/rangeView.js';
import type { ProfileDerivation } from '../../os/linux/profile.js';
import { runsOnAVcpu } from '../../os/linux/runningKernel.js';
import type { ExaminedTask } from '../../os/linux/taskCarving.js';
import type { MemoryImage } from '../../image/types.js';
import { X86AddressSpace } from '../../space/x86.js';
import { isVmscopeError, VmscopeError } from '../../util/errors.js';
import { derivationThread } from '../derivationThread.js';
import { readGuestRamLayout, type GuestRamLayout } from '../qemuLayout.js';
import { QmpClosedError, type QmpClient, type QmpConnectOptions } from '../qmp.js';
import { connectToGuest, GuestGoneError } from './qmpSource.js';
import { pause, ProducingSource, type Snapshot, type SourceOptions } from './source.js';

export interface QemuSharedMemorySourceOptions extends SourceOptions {
  /** The file QEMU backs the guest's RAM with (`memory-backend-file,mem-path=…,share=on`). */
  readonly ramPath: string;
  /** The guest's QMP socket: the RAM layout, the vCPUs' registers, stop/cont. */
  readonly qmpSocket: string;
  /**
   * Pause the guest (QMP `stop`) for each check and resume it (`cont`) when the check is done:
   * one consistent view, at the cost of a pause (reported in `pausedMs`). Default false: the
   * guest runs while it is read and the watch confirms each finding with a second read.
   */
  readonly consistent?: boolean;
  /** Time between the starts of two checks. Default 2000 ms. The first check starts at once. */
  readonly intervalMs?: number;
  /**
   * How often a check carves all of memory for task_structs (psscan; the hidden-process cross
   * view and eBPF holders use it). The checks between re-read only the tasks the last carve
   * found. Default 60 000 ms; the first check always carves.
   */
  readonly scanIntervalMs?: number;
  readonly connect?: QmpConnectOptions;
  /**
   * The bundled profile derivation thread (derivationThread.ts), where a kernel's profile is
   * derived when the cache has none. The default, profileThread.js beside the running bundle,
   * is right for dist/index.js and dist/cli.js; code run from dist/bench passes
   * dist/profileThread.js; from sources, where there is none, the profile is derived in this thread.
   */
  readonly profileThread?: string | URL;
}

/** The file as opened: replaced (another inode) or resized, it is opened again with a fresh layout. */
interface OpenRam {
  readonly image: MemoryImage;
  readonly identity: string;
  readonly layout: string;
}

/**
 * Checks of a running QEMU guest read straight from its shared RAM file: no dump is written,
 * a check reads only the pages its analyses touch. Each interval the layout is asked of QEMU
 * again (a reset or a hot-plug changes it), the file is reopened when it was replaced or
 * resized, and the snapshot hands out fresh contexts over the live memory (`openContext`), so
 * every kernel object is read anew; the kernel's place and profile are carried from check to
 * check while its banner stays where it was (a reboot into another kernel is found again, and
 * the watch says so).
 *
 * QEMU exiting (the guest destroyed, or migrated away) ends the iteration with GuestGoneError;
 * a file that cannot be read as this guest's RAM (truncated under QEMU, not shared) is a
 * `memory-unreadable` problem and the check is skipped.
 */
export class QemuSharedMemorySource extends ProducingSource {
  readonly ramPath: string;
  readonly qmpSocket: string;
  private readonly consistent: boolean;
  private readonly intervalMs: number;
  private qmp: QmpClient | undefined;
  private ram: OpenRam | undefined;
  private carried: CarriedKernel | undefined;
  private readonly scanIntervalMs: number;
  /** The pages the last consistent check read: what the next one copies in its pause. */
  private workingSet: ReadonlySet<number> | undefined;
  private lastCopy: PageCopyImage | undefined;
  /** The last full carve, for the light checks until the next one. */
  private lastCarve: { readonly tasks: readonly ExaminedTask[]; readonly at: number } | undefined;
  /** The pause action stopped the guest: no check may resume it. */
  private pausedByAction = false;
  private readonly derivation: ProfileDerivation | undefined;

  constructor(private readonly options: QemuSharedMemorySourceOptions) {
    super(options);
    this.ramPath = options.ramPath;
    this.qmpSocket = options.qmpSocket;
    this.consistent = options.consistent ?? false;
    this.intervalMs = options.intervalMs ?? 2000;
    this.scanIntervalMs = options.scanIntervalMs ?? 60_000;
    this.derivation = derivationThread(options.profileThread);
  }

  /** The QMP connection, once iteration has started (QEMU serves one client per socket). */
  get client(): QmpClient | undefined {
    return this.qmp;
  }

  async pauseGuest(): Promise<void> {
    if (!this.qmp) throw new Error('the source is not connected to QEMU yet');
    this.pausedByAction = true;
    await this.qmp.stop();
  }

  protected async *produce(): AsyncGenerator<Snapshot, void> {
    const client = await this.connect();
    const stopOrGone = AbortSignal.any([this.stopping, client.closedSignal]);
    let nextCheckAt = Date.now();
    while (!this.stopping.aborted) {
      if (!(await pause(Math.max(0, nextCheckAt - Date.now()), stopOrGone))) {
        if (this.stopping.aborted) return;
        throw new GuestGoneError(this.qmpSocket, client.closeReason ?? 'the QMP connection closed');
      }
      nextCheckAt = Date.now() + this.intervalMs;
      const snapshot = await this.guestGoneOnClose(() => this.capture(client));
      if (snapshot) yield snapshot;
    }
  }

  protected async cleanup(): Promise<void> {
    this.ram?.image.close();
    this.ram = undefined;
    await this.qmp?.close();
  }

  private async connect(): Promise<QmpClient> {
    return (this.qmp = await connectToGuest(this.qmpSocket, this.options.connect));
  }

  private async guestGoneOnClose<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof QmpClosedError) throw new GuestGoneError(this.qmpSocket, error.message, { cause: error });
      throw error;
    }
  }

  /**
   * One check's snapshot, or undefined when the memory cannot be read. Consistent, it is read
   * from a copy of the pages the last check read, taken in one short pause (`freeze`); the first
   * check, a check that carves all of memory, and one that follows a kernel change instead keep
   * the guest paused until released. A read that needs a page the copy lacks makes the snapshot
   * smeared: the watch reads again, from a new copy that has it.
   */
  private async capture(client: QmpClient): Promise<Snapshot | undefined> {
    let image: MemoryImage;
    try {
      // QEMU's answers about the layout need no pause: only memory must be read at one instant.
      const layout = await readGuestRamLayout(client, this.ramPath);
      // The file stays open from check to check; the vCPUs' registers are this check's (after a reset,
      // the registers of the boot before would make the kernel it left in memory look like the running one).
      image = imageWithCpus(this.openRam(layout), layout.cpus);
    } catch (error) {
      return this.unreadable(error);
    }
    const capturedAt = new Date();
    const snapshot = { path: this.ramPath, receivedAt: capturedAt, capturedAt };
    if (!this.consistent)
      return {
        ...snapshot,
        smeared: true,
        openContext: (options) => this.openContext({ live: image, view: image }, options, true),
        release: () => Promise.resolve(),
      };
    if (this.workingSet && !this.carveDue())
      return this.frozenSnapshot(client, image, snapshot).catch((error: unknown) => this.unreadable(error));
    const paused = await this.stopGuest(client);
    const view = new PageCopyImage(image, []);
    let pausedMs: number | undefined;
    return {
      ...snapshot,
      smeared: false,
      get pausedMs() {
        return pausedMs;
      },
      openContext: (options) => this.openContext({ live: image, view }, options, true),
      release: async () => {
        this.workingSet = view.touched;
        if (paused && pausedMs === undefined)
          pausedMs = await this.guestGoneOnClose(() => this.resumeGuest(client, paused));
      },
    };
  }

  /** A consistent snapshot read from copies of the working set's pages, each taken in its own short pause. */
  private async frozenSnapshot(
    client: QmpClient,
    image: MemoryImage,
    snapshot: Pick<Snapshot, 'path' | 'receivedAt' | 'capturedAt'>,
  ): Promise<Snapshot> {
    let pausedMs: number | undefined;
    const freeze = async (pages: Iterable<number>): Promise<PageCopyImage> => {
      const paused = await this.stopGuest(client);
      try {
        // The last copy is done with: snapshots are read one at a time, and a read again replaces its first copy.
        return (this.lastCopy = new PageCopyImage(image, pages, this.lastCopy));
      } finally {
        if (paused) pausedMs = (pausedMs ?? 0) + (await this.resumeGuest(client, paused));
      }
    };
    let view = await this.guestGoneOnClose(() => freeze(this.workingSet!));
    return {
      ...snapshot,
      get smeared() {
        return view.missed.size > 0;
      },
      get pausedMs() {
        return pausedMs;
      },
      openContext: async (options) => {
        // The last read needed pages the copy lacked: this one reads a new copy that has them.
        if (view.missed.size > 0) view = await this.guestGoneOnClose(() => freeze(view.touched));
        return this.openContext({ live: image, view }, options, false);
      },
      release: () => {
        this.workingSet = view.touched;
        return Promise.resolve();
      },
    };
  }

  /** A layout or file that cannot be read as this guest's RAM: reported, and the check skipped. */
  private unreadable(error: unknown): undefined {
    if (!isVmscopeError(error)) throw error;
    this.reportProblem({ kind: 'memory-unreadable', path: this.ramPath, message: error.describe(), cause: error });
    return undefined;
  }

  private carveDue(): boolean {
    return !this.lastCarve || performance.now() - this.lastCarve.at >= this.scanIntervalMs;
  }

  /** `stop` unless the guest is already paused (by someone else, or by the pause action): then it is not ours to resume. */
  private async stopGuest(client: QmpClient): Promise<{ stoppedAt: number } | undefined> {
    if (this.pausedByAction || !(await client.queryStatus()).running) return undefined;
    await client.stop();
    return { stoppedAt: performance.now() };
  }

  /** `cont`, unless the pause action stopped the guest meanwhile; returns how long it was paused. */
  private async resumeGuest(client: QmpClient, paused: { stoppedAt: number }): Promise<number> {
    if (!this.pausedByAction) await client.cont();
    return performance.now() - paused.stoppedAt;
  }

  /** The open file when neither it nor the layout changed, else the file opened again (and the kernel looked for again). */
  private openRam(layout: GuestRamLayout): MemoryImage {
    const stat = statSync(this.ramPath);
    const identity = `${stat.dev}:${stat.ino}:${stat.size}`;
    const ranges = JSON.stringify(layout.ranges);
    if (this.ram && this.ram.identity === identity && this.ram.layout === ranges) return this.ram.image;
    this.ram?.image.close();
    this.ram = undefined;
    this.forgetKernel();
    const image = openQemuSharedMemory(this.ramPath, layout);
    this.ram = { image, identity, layout: ranges };
    return image;
  }

  /**
   * A context whose analyses read `view` (the live memory, or a copy of it); the kernel is found,
   * and all of memory carved when that is due and `mayCarve`, on the live memory in contexts of
   * their own, so that what the analyses read is only what a light check reads.
   */
  private async openContext(
    { live, view }: { live: MemoryImage; view: MemoryImage },
    options: ContextOptions,
    mayCarve: boolean,
  ): Promise<DumpContext> {
    if (this.carried && !sameKernelRuns(live, this.carried)) this.forgetKernel();
    // Scan threads open the dump by its path: a RAM file is not a dump they could read (its layout is QEMU's).
    const { parallelRuleScan: _threadsOpenByPath, ...rest } = options;
    // A monitor lives long: its heap should not keep what one derivation needed for a moment.
    const inPlace: ContextOptions = this.derivation ? { deriveElsewhere: this.derivation, ...rest } : rest;
    const carried = (this.carried ??= await this.findKernel(live, inPlace));
    if (mayCarve && this.carveDue())
      this.lastCarve = {
        tasks: await DumpContext.overLiveImage(live, inPlace, carried).get(carvedTasksProvider),
        at: performance.now(),
      };
    const carved = this.lastCarve!.tasks;
    const context = DumpContext.overLiveImage(view, inPlace, carried);
    // Read again through the view, a fresh carve too: the pages of the tasks are then the working set's.
    context.substitute(carvedTasksProvider, async (light) => (await light.get(taskCarverProvider)).recarve(carved));
    return context;
  }

  /** The kernel in memory, when a vCPU runs it (else it is what an earlier boot left there). */
  private async findKernel(live: MemoryImage, options: ContextOptions): Promise<CarriedKernel> {
    const found = await DumpContext.overLiveImage(live, options).carriedKernel();
    if (!runsOnAVcpu(live, live.cpus, found.kernel.dtb))
      throw new VmscopeError(
        'NO_KERNEL_FOUND',
        `the kernel found in memory (${found.kernel.release}) runs on no vCPU: the guest is starting, or it is what an earlier boot left`,
        live.path,
      );
    return found;
  }

  /** Another kernel (or another file): nothing found of the last one holds. */
  private forgetKernel(): void {
    this.carried = undefined;
    this.lastCarve = undefined;
    this.workingSet = undefined;
  }
}

/**
 * Whether the kernel found at an earlier check still runs: its `linux_banner` symbol still
 * translates, through its own page tables, to the physical address where the banner was found,
 * and the banner's bytes are still there, and a vCPU runs it. A reboot (same kernel or not)
 * moves or overwrites them, or leaves them to no vCPU.
 */
export function sameKernelRuns(image: MemoryImage, carried: CarriedKernel): boolean {
  const { kernel, profile } = carried;
  if (!runsOnAVcpu(image, image.cpus, kernel.dtb)) return false;
  const symbol = profile.profile.symbol('linux_banner');
  if (symbol === undefined) return false;
  try {
    const translated = new X86AddressSpace(image, kernel.dtb, kernel.pagingLevels).tryTranslate(symbol);
    if (translated?.physical !== kernel.bannerPhysical) return false;
    const expected = new TextEncoder().encode(kernel.banner);
    const found = new Uint8Array(expected.length);
    image.read(kernel.bannerPhysical, found);
    return found.every((byte, index) => byte === expected[index]);
  } catch (error) {
    if (isVmscopeError(error)) return false;
    throw error;
  }
}
