import { realpathSync } from 'node:fs';
import {
  backendRanges,
  parseCpuRegisters,
  parseSystemFlatView,
  type FlatViewEntry,
  type SharedMemoryLayout,
} from '../image/qemuSharedMemory.js';
import { VmscopeError } from '../util/errors.js';
import type { QmpClient } from './qmp.js';

interface Memdev {
  readonly id?: string;
  readonly share?: boolean;
  readonly size: number;
}

/** Where a shared RAM file lies in the guest, as QEMU says, and the flat view it came from. */
export interface GuestRamLayout extends SharedMemoryLayout {
  /** The memory backend (`-object memory-backend-file,id=…`) whose file `ramPath` is. */
  readonly memdev: string;
  /** The whole system flat view: what else the guest sees (the BIOS ROM, device memory). */
  readonly flatView: readonly FlatViewEntry[];
}

/**
 * The layout of `ramPath` in the guest behind `client`, taken from QEMU: the memory backend
 * whose `mem-path` is this file (`query-memdev`, then `qom-get`), refused unless shared
 * (`share=off` keeps the guest's writes private to QEMU: the file would be stale), its
 * mappings in the system flat view (`info mtree -f`), and each vCPU's CR3/RIP (`info registers -a`).
 */
export async function readGuestRamLayout(client: QmpClient, ramPath: string): Promise<GuestRamLayout> {
  const wanted = realpathOf(ramPath);
  const memdevs = await client.execute<Memdev[]>('query-memdev');
  let backend: Memdev | undefined;
  for (const memdev of memdevs) {
    if (memdev.id === undefined) continue;
    const path = await client
      .execute<string>('qom-get', { path: `/objects/${memdev.id}`, property: 'mem-path' })
      .catch(() => undefined);
    if (path !== undefined && realpathOf(path) === wanted) backend = memdev;
  }
  if (backend?.id === undefined)
    throw new VmscopeError(
      'USAGE',
      `no memory backend of this QEMU has its RAM in this file (start QEMU with -object memory-backend-file,id=ram0,mem-path=${ramPath},share=on -machine memory-backend=ram0)`,
      ramPath,
    );
  if (backend.share !== true)
    throw new VmscopeError(
      'USAGE',
      `memory backend ${backend.id} is not shared (share=off): the guest's writes never reach the file; start it with share=on`,
      ramPath,
    );
  const flatView = parseSystemFlatView(await client.humanMonitorCommand('info mtree -f'), ramPath);
  const ranges = backendRanges(flatView, backend.id);
  const cpus = parseCpuRegisters(await client.humanMonitorCommand('info registers -a'));
  return { memdev: backend.id, ranges, cpus, flatView };
}

function realpathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch (error) {
    throw new VmscopeError('UNREADABLE_FILE', `cannot resolve: ${(error as Error).message}`, path);
  }
}
