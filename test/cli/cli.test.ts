import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath, truth } from '../support/fixtures.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The real, bundled CLI as a user runs it (npm test builds it first), stdout and stderr piped. */
function vmscope(...args: string[]) {
  const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), ...args], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    env: { ...process.env, VMSCOPE_CACHE_DIR: join(work, 'profiles') },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('vmscope CLI', () => {
  it('info --json prints one JSON object with the contract keys', () => {
    const { code, stdout, stderr } = vmscope('info', fixturePath('linux61-rootkit', 'lime'), '--json');
    expect(code).toBe(0);
    expect(stderr).toBe(''); // piped: no progress bar, and a clean dump has no warning
    const document = JSON.parse(stdout) as Record<string, unknown>;
    for (const key of [
      'format',
      'ranges',
      'kernel_release',
      'linux_banner',
      'kaslr',
      'kaslr_slide',
      'phys_base',
      'dtb',
      'page_offset_base',
      'paging_levels',
    ]) {
      expect(document).toHaveProperty(key);
    }
    expect(document.dtb).toBe('0x' + BigInt(truth('linux61-rootkit').layout.init_top_pgt_phys).toString(16));
    expect(document.ranges).toEqual([
      { start: '0x0', end: '0x20000000' },
      { start: '0xfffc0000', end: '0x100000000' },
    ]);
  });

  it('info --ndjson prints exactly one line holding the same object', () => {
    const path = fixturePath('linux61-rootkit', 'lime');
    const lines = vmscope('info', path, '--ndjson').stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual(JSON.parse(vmscope('info', path, '--json').stdout));
  });

  it('info as a table names every field', () => {
    const { code, stdout } = vmscope('info', fixturePath('linux61-rootkit', 'lime'));
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Kernel release\s+6\.1\.0-56-amd64$/m);
    expect(stdout).toMatch(/^Kernel DTB\s+0x[0-9a-f]+$/m);
  });

  it('unreadable input: exit 2 and one line naming the file and offset', () => {
    const path = join(work, 'random.bin');
    writeFileSync(path, Buffer.alloc(1 << 20, 0x41));
    const { code, stdout, stderr } = vmscope('info', path, '--json');
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(stderr).toContain(`${path}: offset 0x0: NO_KERNEL_FOUND`);
  });

  it('usage errors exit 2; --help teaches with examples and exits 0', () => {
    expect(vmscope('info').code).toBe(2);
    expect(vmscope('no-such-command').code).toBe(2);
    expect(vmscope('info', 'x', '--json', '--ndjson').code).toBe(2);
    const help = vmscope('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Examples:');
    expect(help.stdout).toContain('Exit codes');
  });

  it('kallsyms --json lists every vmlinux symbol of the guest with address, type and name', () => {
    const { code, stdout } = vmscope('kallsyms', fixturePath('linux612-clean', 'elf'), '--json');
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as Array<{ address: string; type: string; name: string }>;
    expect(rows.length).toBe(truthSymbolCount('linux612-clean'));
    expect(rows).toContainEqual({
      address: `0x${BigInt(truth('linux612-clean').layout.text_virt).toString(16)}`,
      type: 'T',
      name: '_text',
    });
  });

  it('types prints a struct layout; isf writes an ISF that --isf reads back to the same layout', () => {
    const dump = fixturePath('linux61-clean', 'elf');
    const table = vmscope('types', dump, 'task_struct');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^struct task_struct: \d+ bytes$/m);
    const derived = JSON.parse(vmscope('types', dump, 'list_head', '--json').stdout);
    expect(derived).toEqual([
      { offset: 0, size: 8, field: 'next', type: 'struct list_head *', bit_position: null, bit_length: null },
      { offset: 8, size: 8, field: 'prev', type: 'struct list_head *', bit_position: null, bit_length: null },
    ]);
    const isf = join(work, 'linux61.json');
    expect(vmscope('isf', dump, '-o', isf).code).toBe(0);
    const viaIsf = vmscope('types', fixturePath('linux61-rootkit', 'lime'), 'task_struct', '--json', '--isf', isf);
    expect(viaIsf.code).toBe(0);
    expect(JSON.parse(viaIsf.stdout)).toEqual(JSON.parse(vmscope('types', dump, 'task_struct', '--json').stdout));
    expect(vmscope('types', dump, 'no_such_struct').stderr).toMatch(
      /NO_PROFILE: the profile has no struct or union "no_such_struct"/,
    );
  });
  it('yarascan --json lists each match with its owner; exit 1 on matches, 2 on a bad rule file or a missing --rules', () => {
    const marker = (
      truth('linux61-rootkit').markers as Array<{ kind: string; value: string; holder_pid: number }>
    ).find((m) => m.kind === 'labmark')!;
    const rules = join(work, 'marker.yar');
    writeFileSync(rules, `rule labmark { strings: $m = "${marker.value}" condition: $m }`);
    const { code, stdout } = vmscope(
      'yarascan',
      '--rules',
      rules,
      '--threads',
      '2',
      fixturePath('linux61-rootkit', 'lime'),
      '--json',
    );
    expect(code).toBe(1);
    const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
    expect(Object.keys(rows[0]!)).toEqual([
      'rule',
      'string',
      'physical',
      'owner',
      'pid',
      'comm',
      'virtual',
      'length',
      'data',
    ]);
    expect(rows.map((row) => row.pid)).toContain(marker.holder_pid);

    const broken = join(work, 'broken.yar');
    writeFileSync(broken, 'rule ok { condition: true }\nrule bad { strings: $a = "unterminated condition: $a }');
    const bad = vmscope('yarascan', '--rules', broken, fixturePath('linux61-rootkit', 'lime'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/broken\.yar:2:\d+: .*unterminated/i);
    expect(vmscope('yarascan', fixturePath('linux61-rootkit', 'lime')).code).toBe(2);
  });
});

function truthSymbolCount(name: string): number {
  return readFileSync(fixturePath(name, 'kallsyms.txt'), 'utf8')
    .split('\n')
    .filter((line) => line && !line.includes('[')).length;
}
