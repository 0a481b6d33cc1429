/**
 * The library API: everything the CLI does is a typed function here first.
 */
export { VmscopeError, AbsentMemoryError, PageFaultError, isVmscopeError, type ErrorCode } from './util/errors.js';
export { hex, parseHex } from './util/hex.js';
export { openImage, openImageSource } from './image/open.js';
export { FileSource, BufferSource, type ByteSource } from './image/source.js';
export type { MemoryImage, PhysicalRange, ImageFormat, CpuState, ElfNote } from './image/types.js';
export { decompressToFile, ensureDecompressed } from './image/decompress.js';
export { X86AddressSpace, type Translation, type MappingRun, type PagingLevels } from './space/x86.js';
export { MultiNeedleSearcher, searchReference, type NeedleHit } from './kernels/multiNeedle.js';
export { discoverLinuxKernel, type LinuxKernel, type DiscoveryMethod } from './os/linux/discovery.js';
export { Vmcoreinfo } from './os/linux/vmcoreinfo.js';
export { START_KERNEL_MAP, MODULES_VADDR, MODULES_END } from './os/linux/layout.js';
export { KernelReader, type ListWalk, type WalkProblem } from './os/linux/kernelReader.js';
export { readTask, walkTaskList, type TaskInfo } from './os/linux/tasks.js';
export { processAddressSpace, readArguments } from './os/linux/processSpace.js';
export { walkModuleList, findHiddenModules } from './os/linux/modules.js';
export { checkSyscalls } from './os/linux/syscalls.js';
export { buildReverseMap, attributeHits, ReverseMap } from './os/linux/reverseMap.js';
export { scanProcessVirtual } from './os/linux/virtualScan.js';
export { linuxProfile, deriveProfile, type ProfileOptions, type LinuxProfile } from './os/linux/profile.js';
export { Profile, type ProfileSymbol, type ProfileOrigin } from './symbols/profile.js';
export { readIsfFile, parseIsf, stringifyIsf, type IsfDocument } from './symbols/isf.js';
export { DumpContext, defineProvider, type ContextOptions, type Provider } from './analyses/context.js';
export * from './analyses/providers/kernel.js';
export * from './analyses/providers/modules.js';
export * from './analyses/providers/processes.js';
export { typeLayout } from './analyses/typeLayout.js';
export { exportIsf } from './analyses/isfExport.js';
export {
  ScanPool,
  parallelSearchImage,
  DEFAULT_JOB_BYTES,
  type ScanPoolOptions,
  type PoolSearchOptions,
} from './workers/scanPool.js';
export { parseRules } from './rules/parser.js';
export { compileRules, compileSource } from './rules/compile.js';
export { matchReference } from './rules/reference.js';
export { analyses, findAnalysis, registerAnalysis } from './analyses/registry.js';
export {
  defineAnalysis,
  option,
  type Analysis,
  type AnalysisSpec,
  type AnalysisInputs,
  type AnalysisResult,
  type AnyAnalysisResult,
  type Column,
  type Row,
  type RowRole,
  type RowSet,
} from './analyses/types.js';
export type { Finding, Severity } from './analyses/findings.js';
export type {
  SnapshotSummary,
  SnapshotProcess,
  SnapshotModule,
  SnapshotSyscall,
  SnapshotSignatureHit,
  SnapshotKernelHook,
  SnapshotBpfProgram,
  SnapshotSocket,
  SnapshotRegion,
  SnapshotFileless,
  SnapshotEnvironment,
  HostMetadata,
} from './monitor/snapshot.js';
export { summarizeSnapshot, summarizeDump, isPartialSummary, type SummarizeOptions } from './monitor/summarize.js';
export { diffSnapshots, type DiffRow, type DiffKind, type DiffChange, type DiffOptions } from './monitor/diff.js';
export { runDiff, type RunDiffOptions } from './monitor/diffCommand.js';
export {
  loadPolicy,
  parsePolicy,
  evaluatePolicy,
  policyRulesFiles,
  PolicyError,
  type Policy,
  type Violation,
} from './monitor/policy.js';
export {
  FolderSource,
  QmpSource,
  QemuSharedMemorySource,
  type QemuSharedMemorySourceOptions,
  GuestGoneError,
  type Snapshot,
  type SnapshotSource,
  type FolderSourceOptions,
  type QmpSourceOptions,
} from './monitor/sources/index.js';
export { QmpClient } from './monitor/qmp.js';
export {
  watch,
  runWatch,
  sourceProblemAlert,
  type WatchAlert,
  type WatchOptions,
  type SnapshotTimings,
} from './monitor/watch.js';
export { yarascan, yarascanAnalysis, type YarascanOptions } from './analyses/yarascan.js';
export { RuleScanner, type RuleScanResult } from './rules/scanner.js';
export { HitList, type StringHit } from './rules/hitList.js';
export { parallelScanRules } from './workers/scanPool.js';
export { runBatch, runBatchToEnd, type BatchOptions, type BatchSummary } from './batch/batch.js';
export { runDumpJob, type DumpJobRequest, type DumpResult } from './batch/job.js';
export { enqueueBatch, waitForBatch, runWorker, parseQueueUrl } from './batch/queue.js';
export { loadPlugin, loadPluginDirectory, loadPluginFile, type Plugin } from './plugins/load.js';
export { pluginAnalysis, type PluginRunOptions } from './plugins/analysis.js';
export { pluginLimits, DEFAULT_PLUGIN_LIMITS, type PluginLimits } from './plugins/limits.js';
export { MANIFEST_SECTION, PLUGIN_INTERFACE_VERSION, type PluginManifest } from './plugins/manifest.js';
export { appendCustomSection } from './plugins/wasmBinary.js';
