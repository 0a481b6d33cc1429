export type { Snapshot, SnapshotSource, SourceOptions, SourceProblem } from './source.js';
export { FolderSource, type FolderSourceOptions } from './folderSource.js';
export { GuestGoneError, QmpSource, type QmpSourceOptions } from './qmpSource.js';
export { QemuSharedMemorySource, type QemuSharedMemorySourceOptions } from './qemuSharedMemorySource.js';
