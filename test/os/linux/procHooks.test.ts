import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOperationPointers, type OperationPointers } from '../../../src/os/linux/procHooks.js';
import { parseHex } from '../../../src/util/hex.js';
import { truth } from '../../support/fixtures.js';
import { openKernelFixture, READER_FIXTURES, type KernelFixture } from '../../support/kernelFixture.js';

interface SeqOpsHookTruth {
  struct: string;
  struct_addr: string;
  field: string;
  orig: string;
  orig_symbol: string;
  new: string;
  new_symbol: string;
}
interface ModernTruth {
  module: { name: string };
  seq_ops_hooks: SeqOpsHookTruth[];
}

const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-prochooks-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe.each(READER_FIXTURES)('reporting tables of $name ($format)', ({ name, format }) => {
  const modern = truth(name).modern as ModernTruth | undefined;
  let fixture: KernelFixture;
  let report: OperationPointers;
  beforeAll(async () => {
    fixture = await openKernelFixture(name, format, cacheDir);
    report = readOperationPointers(fixture.reader, fixture.owners);
  });
  afterAll(() => fixture.context.close());

  it('reads the /proc/net, /proc and socket tables every kernel has, without a problem', () => {
    expect(report.problems).toEqual([]);
    const structures = new Set(report.pointers.map((pointer) => pointer.structure));
    for (const structure of [
      'tcp4_seq_ops',
      'tcp6_seq_ops',
      'udp_seq_ops',
      'unix_seq_ops',
      'proc_root_operations',
      'proc_tgid_base_operations',
      'inet_stream_ops',
    ]) {
      expect(structures, structure).toContain(structure);
    }
    const show = report.pointers.find((pointer) => pointer.structure === 'unix_seq_ops' && pointer.field === 'show');
    expect(show).toMatchObject({ type: 'seq_operations', symbol: 'unix_seq_show', owner: 'kernel', suspicious: false });
  });

  it(
    modern ? 'finds tcp4_seq_ops.show pointing into the module, and what it should be' : 'finds no hooked pointer',
    () => {
      const expected = (modern?.seq_ops_hooks ?? []).map((hook) => ({
        structure: hook.struct,
        structureAddress: parseHex(hook.struct_addr),
        field: hook.field,
        pointer: parseHex(hook.new),
        symbol: hook.new_symbol,
        owner: modern!.module.name,
        expected: parseHex(hook.orig),
        expectedSymbol: hook.orig_symbol,
        suspicious: true,
      }));
      const suspicious = report.pointers.filter((pointer) => pointer.suspicious);
      expect(suspicious).toMatchObject(expected);
      expect(suspicious.length).toBe(expected.length);
    },
  );

  it('every untouched pointer with a determinable expectation holds it', () => {
    const mismatched = report.pointers.filter(
      (pointer) => !pointer.suspicious && pointer.expected !== undefined && pointer.expected !== pointer.pointer,
    );
    expect(mismatched).toEqual([]);
    expect(report.pointers.filter((pointer) => pointer.expected !== undefined).length).toBeGreaterThan(0);
  });
});
