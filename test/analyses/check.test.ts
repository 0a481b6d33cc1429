import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-check-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** `vmscope check` as a user runs it: the bundled CLI, JSON rows, its exit code. */
function check(path: string): { code: number | null; findings: Array<Record<string, unknown>>; stderr: string } {
  const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), 'check', path, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, VMSCOPE_CACHE_DIR: cacheDir },
  });
  return {
    code: result.status,
    findings: JSON.parse(result.stdout || '[]') as Array<Record<string, unknown>>,
    stderr: result.stderr,
  };
}

// linux61-modern's kernel hooks are findings too: tampering.test.ts checks them.
const clean = snapshotNames().filter((name) => !['rootkit', 'modern'].includes(truth(name).mode as string));

describe('vmscope check', () => {
  it("flags exactly the rootkit's hidden process, hidden module and syscall hook, and exits 1", () => {
    const expected = truth('linux61-rootkit') as unknown as {
      rootkit: {
        hidden_process: { pid: number; comm: string; task_struct: string };
        module: { name: string; struct_module: string };
        syscall_hook: { index: number; syscall: string; hooked: string };
      };
    };
    const { code, findings } = check(fixturePath('linux61-rootkit', 'lime'));
    expect(code).toBe(1);
    expect(findings.map((finding) => finding.kind).sort()).toEqual(['hidden_module', 'hidden_process', 'syscall_hook']);
    const byKind = new Map(findings.map((finding) => [finding.kind, finding]));
    const { hidden_process: process, module, syscall_hook: hook } = expected.rootkit;
    expect(byKind.get('hidden_process')).toMatchObject({ subject: `pid ${process.pid} ${process.comm}` });
    expect(byKind.get('hidden_process')!.detail).toContain(`0x${BigInt(process.task_struct).toString(16)}`);
    expect(byKind.get('hidden_module')).toMatchObject({ subject: module.name });
    expect(byKind.get('hidden_module')!.detail).toContain(`0x${BigInt(module.struct_module).toString(16)}`);
    expect(byKind.get('syscall_hook')).toMatchObject({ subject: `sys_call_table[${hook.index}] ${hook.syscall}` });
    expect(byKind.get('syscall_hook')!.detail).toContain(`0x${BigInt(hook.hooked).toString(16)}`);
    expect(byKind.get('syscall_hook')!.detail).toContain(`owned by ${module.name}`);
    for (const finding of findings) expect(['critical', 'high']).toContain(finding.severity);
  });

  it.each(clean)('%s: no finding at all, exit 0', (name) => {
    const format = dumpFixtures().find((fixture) => fixture.name === name)!.format;
    const { code, findings, stderr } = check(fixturePath(name, format));
    expect(findings).toEqual([]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});
