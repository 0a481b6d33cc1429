import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';

/** The kernel refuses longer paths (ENAMETOOLONG); a forged dentry chain must not build a longer one. */
export const PATH_MAX = 4096;
/** A path component is at most NAME_MAX bytes; a longer d_name.len is forged. */
const NAME_MAX = 255;
/** Dentries and mounts crossed per path: PATH_MAX bytes hold at most this many "/x" components. */
const MAX_PATH_STEPS = PATH_MAX / 2;
const utf8 = new TextDecoder();

/**
 * Where a path came from: the directory tree, or one of the kernel's d_dname callbacks for
 * files outside it (a socket, a pipe, an anonymous inode, or a pseudo file such as a memfd or
 * SysV shared memory segment, which the kernel prints as "/NAME (deleted)").
 */
export type PathKind = 'filesystem' | 'socket' | 'pipe' | 'anon_inode' | 'pseudo' | 'unknown';

export interface ResolvedPath {
  /** The path as /proc/PID/maps, /proc/PID/exe and /proc/PID/fd print it, or what could be rebuilt of it. */
  readonly path: string;
  readonly kind: PathKind;
  /** The kernel adds " (deleted)": an unlinked file, or a pseudo file that never had a directory entry. */
  readonly deleted: boolean;
  /** Why the path is incomplete (a loop in the dentry chain, an unreadable dentry); empty when whole. */
  readonly problems: string[];
}

/** The inode a file refers to and the device it lives on, as /proc/PID/maps prints them. */
export interface FileIdentity {
  readonly inode: number;
  /** `major:minor` in hex, two digits at least (`00:17`). */
  readonly dev: string;
}

/**
 * Names the kernel's d_dname callbacks give to files without a place in any directory tree
 * (fs/d_path.c callers): sockets, pipes and anonymous inodes as /proc/PID/fd shows them, and
 * pseudo files such as memfds as "/NAME (deleted)" (simple_dname, set by alloc_file_pseudo).
 */
const DYNAMIC_NAMES: Record<
  string,
  { kind: PathKind; deleted: boolean; format: (name: string, inode: number) => string }
> = {
  sockfs_dname: { kind: 'socket', deleted: false, format: (_name, inode) => `socket:[${inode}]` },
  pipefs_dname: { kind: 'pipe', deleted: false, format: (_name, inode) => `pipe:[${inode}]` },
  anon_inodefs_dname: { kind: 'anon_inode', deleted: false, format: (name) => `anon_inode:${name}` },
  simple_dname: { kind: 'pseudo', deleted: true, format: (name) => `/${name} (deleted)` },
};

/** The path of a `struct file`, from its f_path as d_path() builds it. */
export function filePath(reader: KernelReader, file: bigint): ResolvedPath {
  const pathAt = file + reader.offset('file', 'f_path');
  let mnt: bigint;
  let dentry: bigint;
  try {
    mnt = reader.pointerField(pathAt, 'path', 'mnt');
    dentry = reader.pointerField(pathAt, 'path', 'dentry');
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return unreadablePath(`file ${hex(file)} is unreadable: ${error.message}`);
  }
  return dentryPath(reader, mnt, dentry);
}

/**
 * d_path() of (vfsmount, dentry): a dentry with a d_dname callback (socket, pipe, anonymous
 * inode, memfd) is named by it; any other is rebuilt from its d_parent chain, crossing each
 * mount root to the mountpoint in the parent mount, up to a mount with no parent (the root of
 * its namespace, or a detached mount). An unhashed, non-root dentry gets " (deleted)", as the
 * kernel's d_unlinked() test. Bounded by PATH_MAX and cycle-checked: a forged chain yields the
 * part rebuilt so far and a problem.
 */
export function dentryPath(reader: KernelReader, vfsmount: bigint, dentry: bigint): ResolvedPath {
  const problems: string[] = [];
  try {
    const parent = reader.pointerField(dentry, 'dentry', 'd_parent');
    const mountRoot = reader.pointerField(vfsmount, 'vfsmount', 'mnt_root');
    const dynamic = dynamicName(reader, dentry, parent === dentry && dentry === mountRoot, problems);
    if (dynamic !== undefined) return { ...dynamic, problems };
    const path = prependPath(reader, vfsmount, dentry, problems);
    const deleted = isUnlinked(reader, dentry, parent);
    return { path: deleted ? `${path} (deleted)` : path, kind: 'filesystem', deleted, problems };
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    return unreadablePath(...problems, `dentry ${hex(dentry)} is unreadable: ${error.message}`);
  }
}

function unreadablePath(...problems: string[]): ResolvedPath {
  return { path: '', kind: 'unknown', deleted: false, problems };
}

/** The name a d_op->d_dname callback would print, or undefined when the dentry has none. */
function dynamicName(
  reader: KernelReader,
  dentry: bigint,
  isMountRoot: boolean,
  problems: string[],
): Omit<ResolvedPath, 'problems'> | undefined {
  const operations = reader.pointerField(dentry, 'dentry', 'd_op');
  if (operations === 0n || isMountRoot) return undefined;
  const callback = reader.pointerField(operations, 'dentry_operations', 'd_dname');
  if (callback === 0n) return undefined;
  const name = componentName(reader, dentry);
  const inode = dentryInode(reader, dentry);
  const symbol = reader.profile.symbolAt(callback);
  const known = symbol && symbol.offset === 0n ? DYNAMIC_NAMES[symbol.symbol.name] : undefined;
  if (known) return { path: known.format(name, inode), kind: known.kind, deleted: known.deleted };
  problems.push(
    `dentry ${hex(dentry)} is named by ${symbol ? `${symbol.symbol.name}+${hex(symbol.offset)}` : hex(callback)}, which is not decoded: showing its d_name`,
  );
  return { path: name, kind: 'unknown', deleted: false };
}

function prependPath(reader: KernelReader, vfsmount: bigint, start: bigint, problems: string[]): string {
  const mountOfVfsmount = reader.offset('mount', 'mnt');
  let mount = vfsmount - mountOfVfsmount;
  let dentry = start;
  const components: string[] = [];
  let length = 0;
  const seen = new Set<string>();
  for (let step = 0; ; step++) {
    const key = `${mount}:${dentry}`;
    if (seen.has(key)) {
      problems.push(`dentry chain loops back to ${hex(dentry)}: path rebuilt only up to there`);
      break;
    }
    if (step >= MAX_PATH_STEPS) {
      problems.push(`dentry chain longer than ${MAX_PATH_STEPS} steps: path rebuilt only up to there`);
      break;
    }
    seen.add(key);
    const parent = reader.pointerField(dentry, 'dentry', 'd_parent');
    const mountRoot = reader.pointerField(mount + mountOfVfsmount, 'vfsmount', 'mnt_root');
    if (dentry === mountRoot || dentry === parent) {
      if (dentry !== mountRoot) {
        problems.push(
          `dentry ${hex(dentry)} is a root but not its mount's root ${hex(mountRoot)}: path escaped its mount`,
        );
        break;
      }
      const parentMount = reader.pointerField(mount, 'mount', 'mnt_parent');
      if (parentMount === mount) break;
      dentry = reader.pointerField(mount, 'mount', 'mnt_mountpoint');
      mount = parentMount;
      continue;
    }
    const name = componentName(reader, dentry);
    length += name.length + 1;
    if (length > PATH_MAX) {
      problems.push(`path longer than PATH_MAX (${PATH_MAX}): rebuilt only up to there`);
      break;
    }
    components.push(name);
    dentry = parent;
  }
  return '/' + components.reverse().join('/');
}

/** d_unlinked(): unhashed (no d_hash.pprev) and not a root of its own. */
function isUnlinked(reader: KernelReader, dentry: bigint, parent: bigint): boolean {
  const pprev = reader.u64(dentry + reader.offset('dentry', 'd_hash') + reader.offset('hlist_bl_node', 'pprev'));
  return pprev === 0n && parent !== dentry;
}

/** d_name of a dentry, at most NAME_MAX bytes, decoded as UTF-8 (what a terminal shows for file names). */
function componentName(reader: KernelReader, dentry: bigint): string {
  const qstr = dentry + reader.offset('dentry', 'd_name');
  const length = Math.min(reader.u32(qstr + reader.offset('qstr', 'len')), NAME_MAX);
  const name = reader.pointerField(qstr, 'qstr', 'name');
  return utf8.decode(reader.bytes(name, length));
}

function dentryInode(reader: KernelReader, dentry: bigint): number {
  const inode = reader.pointerField(dentry, 'dentry', 'd_inode');
  return inode === 0n ? 0 : Number(reader.pointerField(inode, 'inode', 'i_ino'));
}

/** The inode number and device of `inode`, as show_map_vma() prints them (`i_sb->s_dev` split 12:20). */
export function inodeIdentity(reader: KernelReader, inode: bigint): FileIdentity {
  const number = Number(reader.pointerField(inode, 'inode', 'i_ino'));
  const device = reader.u32(reader.pointerField(inode, 'inode', 'i_sb') + reader.offset('super_block', 's_dev'));
  const major = device >>> 20;
  const minor = device & 0xfffff;
  return { inode: number, dev: `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}` };
}
