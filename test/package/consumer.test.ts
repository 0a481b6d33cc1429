import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath, truth } from '../support/fixtures.js';

/**
 * vmscope as a monitor embeds it: the package as npm packs it, installed into a new strict
 * TypeScript project, compiled against the shipped declarations and run on a real dump.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-consumer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const CONSUMER = `import { DumpContext, watch, yarascan, type AnyAnalysisResult, type WatchAlert } from 'vmscope';

const dump: string = process.argv[2]!;
const rules: string = process.argv[3]!;
const context = new DumpContext(dump, { cacheDir: process.argv[4]! });
const release: string = context.kernel.release;
const hits: AnyAnalysisResult = await yarascan(context, { rules, threads: 1 });
// yarascan's rows are made as they are read (a RowSet): read them before the context is closed.
const holders = [...hits.rows].filter((row) => row.owner === 'process').map((row) => row.pid);
context.close();
// watch is a function of a source and a policy: its type is what a monitor compiles against.
const alerts: typeof watch = watch;
const first: WatchAlert | undefined = undefined;
console.log(JSON.stringify({ release, holders, watch: typeof alerts, first: first ?? null }));
`;

describe('the packed package in a strict TypeScript consumer', () => {
  it('packs, installs, type-checks with strict: true and runs on a fixture', () => {
    const packDir = join(work, 'pack');
    mkdirSync(packDir);
    execFileSync('npm', ['pack', '--pack-destination', packDir, '--silent'], {
      cwd: repoRoot,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const tarball = join(
      packDir,
      readdirSync(packDir).find((name) => name.endsWith('.tgz'))!,
    );
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    expect(listing).toContain('package/dist/types/src/index.d.ts');
    expect(
      listing.some(
        (path) =>
          path.startsWith('package/build/') ||
          path.startsWith('package/src/') ||
          path.startsWith('package/dist/bench/'),
      ),
    ).toBe(false);

    const project = join(work, 'consumer');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          outDir: 'out',
        },
        include: ['main.ts'],
      }),
    );
    writeFileSync(join(project, 'main.ts'), CONSUMER);
    // Dependencies come from npm's cache (npm ci filled it); the registry only when missing there.
    execFileSync(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', tarball, '@types/node@20'],
      { cwd: project, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const compile = spawnSync(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', project], {
      encoding: 'utf8',
    });
    expect(compile.stdout + compile.stderr).toBe('');
    expect(compile.status).toBe(0);

    const marker = (
      truth('linux61-rootkit').markers as Array<{ kind: string; value: string; holder_pid: number }>
    ).find((entry) => entry.kind === 'labmark')!;
    const rules = join(work, 'marker.yar');
    writeFileSync(rules, `rule labmark { strings: $m = "${marker.value}" condition: $m }`);
    const run = spawnSync(
      process.execPath,
      [join(project, 'out/main.js'), fixturePath('linux61-rootkit', 'lime'), rules, join(work, 'profiles')],
      { encoding: 'utf8', cwd: project },
    );
    expect(run.stderr).toBe('');
    const output = JSON.parse(run.stdout) as { release: string; holders: number[]; watch: string };
    expect(output.release).toBe(truth('linux61-rootkit').kernel.release);
    expect(output.holders).toContain(marker.holder_pid);
    expect(output.watch).toBe('function');
  }, 300_000); // npm pack runs `prepare`: the whole build, WASM kernels and example plugins included
});
