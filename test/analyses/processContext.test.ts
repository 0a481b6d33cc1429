import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { envarsAnalysis } from '../../src/analyses/envars.js';
import { lsofAnalysis } from '../../src/analyses/lsof.js';
import { malfindAnalysis } from '../../src/analyses/malfind.js';
import { mapsAnalysis } from '../../src/analyses/maps.js';
import { processStateFindings } from '../../src/analyses/processFindings.js';
import { psauxAnalysis } from '../../src/analyses/psaux.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import { sockstatAnalysis } from '../../src/analyses/sockstat.js';
import type { AnalysisResult, Row } from '../../src/analyses/types.js';
import { parseHex } from '../../src/util/hex.js';
import { dumpFixtures, fixturePath, snapshotNames, truth } from '../support/fixtures.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface TruthSocket {
  pid: number;
  comm: string;
  proto: string;
  local_addr: string;
  local_port: number;
  remote_addr: string;
  remote_port: number;
  state: string;
  inode: number;
  fd: number;
  in_proc_net: boolean;
}
const modern = truth('linux61-modern') as unknown as {
  sockets: TruthSocket[];
  maps: Record<string, Array<Record<string, unknown>>>;
  exe: Record<string, string | null>;
  environ: Record<string, string[]>;
  injected: Array<{ pid: number; comm: string; start: string; end: string; perms: string; code_hex: string }>;
  fileless: Array<{ pid: number; comm: string; exe: string }>;
};

/** A context over a fixture with its own profile cache, removed on close. */
function openContext(name: string, format: 'elf' | 'lime' | 'raw') {
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-process-context-'));
  const context = new DumpContext(fixturePath(name, format), { cacheDir });
  return {
    context,
    close: () => {
      context.close();
      rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

const whole = (result: AnalysisResult) => {
  expect(result.warnings).toEqual([]);
  expect(result.partial).toBe(false);
  return result.rows;
};
const ofPid = (rows: readonly Row[], pid: number) => rows.filter((row) => row.pid === pid);

describe('linux61-modern: the process-state analyses against the guest /proc (truth)', () => {
  let opened: ReturnType<typeof openContext>;
  beforeAll(() => {
    opened = openContext('linux61-modern', 'elf');
  });
  afterAll(() => opened.close());

  it('sockstat lists every truth socket and no other, 4444 (hidden from /proc/net/tcp) included', async () => {
    const rows = whole(await sockstatAnalysis.run(opened.context));
    const fields = (socket: TruthSocket) => ({
      pid: socket.pid,
      comm: socket.comm,
      fd: socket.fd,
      proto: socket.proto,
      local_address: socket.local_addr,
      local_port: socket.local_port,
      remote_address: socket.remote_addr,
      remote_port: socket.remote_port,
      state: socket.state,
      inode: socket.inode,
    });
    const byInode = (a: { inode: unknown }, b: { inode: unknown }) => Number(a.inode) - Number(b.inode);
    expect(
      rows
        .map(({ pid, comm, fd, proto, local_address, local_port, remote_address, remote_port, state, inode }) => ({
          pid,
          comm,
          fd,
          proto,
          local_address,
          local_port,
          remote_address,
          remote_port,
          state,
          inode,
        }))
        .sort(byInode),
    ).toEqual(modern.sockets.map(fields).sort(byInode));
    const hidden = modern.sockets.filter((socket) => !socket.in_proc_net);
    expect(hidden.map((socket) => [socket.comm, socket.local_port])).toEqual([['lab_backdoor', 4444]]);
    expect(rows.find((row) => row.local_port === 4444)!.sources).toEqual(
      expect.arrayContaining(['fd', 'tcp_listening']),
    );
    // --pid narrows to one process's sockets.
    const backdoor = hidden[0]!.pid;
    expect(whole(await sockstatAnalysis.run(opened.context, { pid: backdoor })).map((row) => row.inode)).toEqual([
      hidden[0]!.inode,
    ]);
  });

  it.each(Object.keys(modern.maps).map(Number))('maps of pid %i equal /proc/PID/maps', async (pid) => {
    const rows = whole(await mapsAnalysis.run(opened.context, { pid }));
    expect(
      rows.map(({ start, end, perms, offset, dev, inode, path }) => ({ start, end, perms, offset, dev, inode, path })),
    ).toEqual(modern.maps[String(pid)]);
  });

  it('maps names the memfd and the deleted executable as the kernel does', async () => {
    const rows = whole(await mapsAnalysis.run(opened.context));
    for (const { pid, exe } of modern.fileless) expect(ofPid(rows, pid).map((row) => row.path)).toContain(exe);
  });

  it("malfind reports exactly lab_injected's two regions among user processes, with their bytes", async () => {
    const rows = whole(await malfindAnalysis.run(opened.context));
    const expected = [...modern.injected].sort((a, b) => (parseHex(a.start) < parseHex(b.start) ? -1 : 1));
    expect(
      rows.map(({ pid, comm, start, end, perms }) => ({ pid, comm, start, end, perms: String(perms).slice(0, 3) })),
    ).toEqual(
      expected.map(({ pid, comm, start, end, perms }) => ({ pid, comm, start, end, perms: perms.slice(0, 3) })),
    );
    for (const [index, row] of rows.entries()) {
      expect(row.bytes).toHaveLength(128);
      expect(String(row.bytes).startsWith(expected[index]!.code_hex)).toBe(true);
      expect(row.starts_with).toBe('code');
      expect((row.disassembly as string[])[0]).toMatch(new RegExp(`^${expected[index]!.start}: \\S`));
    }
  });

  it('pslist and psaux: exe equals /proc/PID/exe for every process', async () => {
    for (const analysis of [pslistAnalysis, psauxAnalysis]) {
      const rows = whole(await analysis.run(opened.context));
      for (const [pid, exe] of Object.entries(modern.exe)) {
        expect(
          ofPid(rows, Number(pid)).map((row) => row.exe),
          `${analysis.name} pid ${pid}`,
        ).toEqual([exe]);
      }
    }
  });

  it('envars equals /proc/PID/environ for every lab process', async () => {
    const rows = whole(await envarsAnalysis.run(opened.context));
    for (const [pid, environ] of Object.entries(modern.environ)) {
      expect(
        ofPid(rows, Number(pid)).map((row) =>
          row.value === null ? row.name : `${String(row.name)}=${String(row.value)}`,
        ),
      ).toEqual(environ);
    }
    // The lab's LD_PRELOAD, which forbidden_environment policies look for.
    expect(rows.filter((row) => row.name === 'LD_PRELOAD').map((row) => row.comm)).toContain('lab_preload');
  });

  it("lsof lists each lab process's socket fds with the truth's inodes", async () => {
    for (const socket of modern.sockets) {
      const rows = whole(await lsofAnalysis.run(opened.context, { pid: socket.pid }));
      expect(rows.find((row) => row.fd === socket.fd)).toMatchObject({
        comm: socket.comm,
        kind: 'socket',
        inode: socket.inode,
        path: `socket:[${socket.inode}]`,
      });
    }
  });

  it('the providers are computed once for all these analyses', () => {
    for (const [name, count] of opened.context.computations) expect(count, name).toBe(1);
  });
});

/** `vmscope check DUMP --json` through the bundled CLI (npm run build first). */
function checkCli(path: string): { code: number | null; findings: Array<Record<string, string>> } {
  const cacheDir = mkdtempSync(join(tmpdir(), 'vmscope-check-'));
  try {
    const result = spawnSync(process.execPath, [join(repoRoot, 'bin/vmscope.js'), 'check', path, '--json'], {
      encoding: 'utf8',
      env: { ...process.env, VMSCOPE_CACHE_DIR: cacheDir },
    });
    return { code: result.status, findings: JSON.parse(result.stdout || '[]') as Array<Record<string, string>> };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

const PROCESS_STATE_KINDS = ['injected_code', 'fileless_process'];

describe('vmscope check on linux61-modern (CLI bundle)', () => {
  it('reports injected_code for lab_injected and fileless_process for lab_fileless and lab_deleted, nothing else of these kinds', () => {
    const { code, findings } = checkCli(fixturePath('linux61-modern', 'elf'));
    expect(code).toBe(1);
    const mine = findings.filter((finding) => PROCESS_STATE_KINDS.includes(finding.kind!));
    const injected = modern.injected.map(({ pid, comm }) => ['injected_code', `pid ${pid} ${comm}`]);
    const fileless = modern.fileless.map(({ pid, comm }) => ['fileless_process', `pid ${pid} ${comm}`]);
    expect(mine.map((finding) => [finding.kind, finding.subject]).sort()).toEqual([...injected, ...fileless].sort());
    expect(injected).toHaveLength(2);
    expect(fileless.map(([, subject]) => subject)).toEqual(['pid 126 lab_fileless', 'pid 128 lab_deleted']);
    for (const { exe } of modern.fileless) expect(mine.some((finding) => finding.detail!.endsWith(exe))).toBe(true);
    // Nothing else new: every other finding is of the kernel-tampering kinds.
    for (const finding of findings.filter((candidate) => !PROCESS_STATE_KINDS.includes(candidate.kind!)))
      expect(finding.kind).not.toMatch(/process|code|env|socket/);
  });
});

const others = snapshotNames()
  .filter((name) => name !== 'linux61-modern')
  .map((name) => dumpFixtures().find((fixture) => fixture.name === name)!);

describe.each(others)('$name ($format): ordinary processes only', ({ name, format }) => {
  let opened: ReturnType<typeof openContext>;
  beforeAll(() => {
    opened = openContext(name, format);
  });
  afterAll(() => opened.close());

  it('maps: every user process of the truth has its executable mapped r-x', async () => {
    const maps = whole(await mapsAnalysis.run(opened.context));
    const exe = new Map(whole(await pslistAnalysis.run(opened.context)).map((row) => [row.pid, row.exe]));
    const users = (
      truth(name).processes as Array<{ pid: number; kernel_thread: boolean; in_task_list: boolean }>
    ).filter((process) => !process.kernel_thread && process.in_task_list);
    expect(users.length).toBeGreaterThan(10);
    for (const { pid } of users) {
      expect(exe.get(pid), `pid ${pid} exe`).toMatch(/^\/\S+$/);
      expect(
        ofPid(maps, pid).some((row) => row.path === exe.get(pid) && row.perms === 'r-xp'),
        `pid ${pid}: ${String(exe.get(pid))} mapped r-x`,
      ).toBe(true);
    }
  });

  it('sockstat: empty or loopback-only, as the guest was', async () => {
    const rows = whole(await sockstatAnalysis.run(opened.context));
    const local = /^(127\.|0\.0\.0\.0$|::1?$|::ffff:127\.)/;
    const inet = rows.filter((row) => row.family === 'AF_INET' || row.family === 'AF_INET6');
    expect(
      inet.filter((row) => !local.test(String(row.local_address)) || !local.test(String(row.remote_address))),
    ).toEqual([]);
  });

  it('malfind and check: no injected code, no fileless process', async () => {
    expect(whole(await malfindAnalysis.run(opened.context))).toEqual([]);
    const { findings, problems } = await processStateFindings((provider) => opened.context.get(provider));
    expect(problems).toEqual([]);
    expect(findings).toEqual([]);
  });
});
