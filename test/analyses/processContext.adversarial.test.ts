import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { lsofAnalysis } from '../../src/analyses/lsof.js';
import { mapsAnalysis } from '../../src/analyses/maps.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import { sockstatAnalysis } from '../../src/analyses/sockstat.js';
import type { Analysis, AnalysisResult } from '../../src/analyses/types.js';
import { KernelReader } from '../../src/os/linux/kernelReader.js';
import { walkTaskList, type TaskInfo } from '../../src/os/linux/tasks.js';
import { fixturePath } from '../support/fixtures.js';
import { OverlayContext } from '../support/overlay.js';
import { materialized } from '../support/rows.js';

/**
 * The analyses over forged copies of linux61-modern (the readers' own adversarial tests cover
 * the reading): each finishes promptly, marks its result partial, names the process in a
 * warning, and still shows the rows it could read.
 */
const HANG_GUARD_MS = 5000;
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-adversarial-state-'));
let base: DumpContext;
let reader: KernelReader;
let tasks: TaskInfo[];
beforeAll(async () => {
  base = new DumpContext(fixturePath('linux61-modern', 'elf'), { cacheDir });
  reader = new KernelReader(base.kernel.space, await base.profile());
  tasks = walkTaskList(reader, reader.profile.requireSymbol('init_task')).tasks;
});
afterAll(() => {
  base.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const task = (comm: string) => tasks.find((candidate) => candidate.comm === comm)!;
const field = (address: bigint, struct: string, name: string) => address + reader.offset(struct, name);

async function runForged(
  analysis: Analysis,
  patches: Array<[bigint, bigint]>,
  options: Record<string, unknown> = {},
): Promise<{ forged: AnalysisResult; clean: AnalysisResult }> {
  const context = new OverlayContext(base);
  for (const [address, value] of patches) context.patchKernelU64(address, value);
  const started = performance.now();
  const forged = await materialized(analysis.run(context, options));
  expect(performance.now() - started).toBeLessThan(HANG_GUARD_MS);
  return { forged, clean: await materialized(analysis.run(base, options)) };
}

describe('process-state analyses over hostile copies of linux61-modern', () => {
  it('maps: a maple tree with a cycle gives the regions before it, partial, with a warning naming the process', async () => {
    const victim = task('lab_injected');
    const root = reader.u64(field(field(victim.mm, 'mm_struct', 'mm_mt'), 'maple_tree', 'ma_root'));
    const types = reader.profile.types.enums['maple_type']!.constants;
    const layout = Number((root >> 3n) & 0xfn) === types['maple_arange_64'] ? 'maple_arange_64' : 'maple_range_64';
    const secondSlot = (root & ~0xffn) + reader.offset(layout, 'slot') + 8n;
    const { forged, clean } = await runForged(mapsAnalysis, [[secondSlot, root & ~2n]], { pid: victim.pid });
    expect(forged.partial).toBe(true);
    expect(forged.warnings).toContainEqual(
      expect.stringMatching(/^pid \d+ \(lab_injected\): maps: maple tree .* \(a cycle\)/),
    );
    expect(forged.rows.length).toBeGreaterThan(0);
    expect(forged.rows).toEqual(clean.rows.slice(0, forged.rows.length));
  });

  it('lsof: an fd table claiming max_fds 2^31 is read bounded, the real fds kept, partial', async () => {
    const victim = task('lab_http');
    const fdt = reader.pointerField(reader.pointerField(victim.task, 'task_struct', 'files'), 'files_struct', 'fdt');
    const maxFds = field(fdt, 'fdtable', 'max_fds');
    const { forged, clean } = await runForged(
      lsofAnalysis,
      [[maxFds, (reader.u64(maxFds) & ~0xffffffffn) | (1n << 31n)]],
      { pid: victim.pid },
    );
    expect(forged.partial).toBe(true);
    expect(forged.warnings[0]).toMatch(
      /^pid \d+ \(lab_http\): fd table: fd table 0x[0-9a-f]+ claims max_fds 2147483648/,
    );
    expect(forged.rows.slice(0, clean.rows.length)).toEqual(clean.rows);
  });

  it('pslist: a dentry chain that loops cuts the exe path, with a warning, the process still listed', async () => {
    const victim = task('lab_http');
    const exeFile = reader.pointerField(victim.mm, 'mm_struct', 'exe_file');
    const dentry = reader.pointerField(field(exeFile, 'file', 'f_path'), 'path', 'dentry');
    const bin = reader.pointerField(dentry, 'dentry', 'd_parent');
    const { forged, clean } = await runForged(pslistAnalysis, [[field(bin, 'dentry', 'd_parent'), dentry]]);
    expect(forged.partial).toBe(true);
    expect(forged.warnings).toContainEqual(expect.stringMatching(/^pid \d+ \(lab_http\): exe: dentry chain loops/));
    expect(forged.rows).toHaveLength(clean.rows.length);
  });

  it('sockstat: a socket whose sk_prot points to garbage keeps its row, with a warning', async () => {
    const victim = task('lab_backdoor');
    const held = await sockstatAnalysis.run(base, { pid: victim.pid });
    const sock = BigInt(String(held.rows[0]!.sock));
    const { forged, clean } = await runForged(sockstatAnalysis, [
      [field(sock, 'sock_common', 'skc_prot'), sock + 0x1000n],
    ]);
    expect(forged.partial).toBe(true);
    expect(forged.warnings).toContainEqual(
      expect.stringMatching(/^socket 0x[0-9a-f]+ of pid \d+: sk_prot 0x[0-9a-f]+ does not point to a struct proto/),
    );
    expect(forged.rows).toEqual(clean.rows);
    expect(forged.rows.find((row) => row.sock === held.rows[0]!.sock)).toMatchObject({
      local_port: 4444,
      state: 'LISTEN',
    });
  });
});
