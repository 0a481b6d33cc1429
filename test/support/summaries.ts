import type { SnapshotSummary } from '../../src/monitor/snapshot.js';

/** A summary of nothing (no processes, modules or syscalls) with `parts` laid over it: for unit tests of diff and policy. */
export function syntheticSummary(parts: Partial<SnapshotSummary> = {}): SnapshotSummary {
  return {
    path: 'synthetic.elf',
    banner: 'Linux version 6.1.0',
    capturedAt: new Date(0),
    capturedAtSource: 'guest-clock',
    processes: [],
    hiddenProcesses: [],
    modules: [],
    hiddenModules: [],
    syscalls: [],
    sockets: [],
    executableRegions: [],
    filelessProcesses: [],
    environments: [],
    guestClock: new Date(0),
    hostCapturedAt: new Date(0),
    host: null,
    hostProblem: null,
    kernelHooks: [],
    bpfPrograms: [],
    warnings: [],
    ...parts,
  };
}
