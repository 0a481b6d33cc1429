import { filelessKind, type FilelessKind } from '../os/linux/exe.js';
import type { ProcessSuspiciousRegions } from '../os/linux/malfind.js';
import type { ResolvedPath } from '../os/linux/paths.js';
import { hex } from '../util/hex.js';
import type { Provider } from './context.js';
import type { Finding } from './findings.js';
import { executablesProvider, suspiciousRegionsProvider, type PerProcess } from './providers/processContext.js';

/** What a fileless executable is, in a finding's words. */
const FILELESS: Record<FilelessKind, string> = {
  memfd: 'a memfd (memory-only file)',
  pseudo_file: 'a pseudo file with no directory entry',
  deleted_file: 'a file deleted since it was executed',
};

/**
 * Anonymous executable memory in a user process: code no file accounts for (malfind's first
 * reason). Writable code backed by a file is left to malfind: it is how some programs patch
 * themselves, and no injection is needed to explain it. One finding per region.
 */
export function injectedCodeFindings(found: PerProcess<ProcessSuspiciousRegions>): Finding[] {
  return found.entries.flatMap(({ task, value }) =>
    value.regions
      .filter((region) => region.region.file === 0n)
      .map((region) => ({
        kind: 'injected_code',
        severity: 'high' as const,
        subject: `pid ${task.pid} ${task.comm}`,
        owner: `pid ${task.pid} ${task.comm}`,
        detail: `${region.perms} memory ${hex(region.start)}-${hex(region.end)} backed by no file${region.elfHeader ? ', starting with an ELF header' : ''}: ${Buffer.from(region.bytes.subarray(0, 16)).toString('hex')}… (see malfind: a JIT compiler also makes such regions)`,
      })),
  );
}

/** A user process whose executable is a memfd, a pseudo file or a deleted file. */
export function filelessProcessFindings(executables: PerProcess<ResolvedPath | undefined>): Finding[] {
  return executables.entries.flatMap(({ task, value }) => {
    const kind = value && filelessKind(value);
    return kind
      ? [
          {
            kind: 'fileless_process',
            severity: 'high' as const,
            subject: `pid ${task.pid} ${task.comm}`,
            owner: `pid ${task.pid} ${task.comm}`,
            detail: `runs from ${FILELESS[kind]}: ${value.path}`,
          },
        ]
      : [];
  });
}

/** The providers the process-state findings read: `check` declares them. */
export const processStateProviders: ReadonlyArray<Provider<unknown>> = [suspiciousRegionsProvider, executablesProvider];

/** injected_code and fileless_process findings, with the problems that may hide some. */
export async function processStateFindings(
  get: <T>(provider: Provider<T>) => Promise<T>,
): Promise<{ findings: Finding[]; problems: string[] }> {
  const suspicious = await get(suspiciousRegionsProvider);
  const executables = await get(executablesProvider);
  return {
    findings: [...injectedCodeFindings(suspicious), ...filelessProcessFindings(executables)],
    problems: [...suspicious.warnings, ...executables.warnings],
  };
}
