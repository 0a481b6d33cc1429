// A cryptominer heuristic: a process whose writable memory holds a mining pool address
// (a stratum URL, or a well-known pool's host name) and that also looks like a miner: its
// name, executable or arguments name a miner or its flags, or it runs many threads.
import { JSON } from 'assemblyscript-json/assembly';
import {
  baseName,
  emitFinding,
  flag,
  integer,
  MAX_READ_BYTES,
  objects,
  parseAddress,
  readInput,
  readVirtual,
  strings,
  text,
} from '../shared/plugin';

const POOL_MARKERS: string[] = [
  'stratum+tcp://',
  'stratum+ssl://',
  'stratum2+tcp://',
  'supportxmr.com',
  'minexmr.com',
  'nanopool.org',
  'moneroocean.stream',
  '2miners.com',
  'f2pool.com',
  'hashvault.pro',
  'c3pool.com',
];
const MINER_WORDS: string[] = [
  'xmrig',
  'minerd',
  'cpuminer',
  'xmr-stak',
  'ethminer',
  'nbminer',
  '--donate-level',
  '--coin',
  'randomx',
  'rx/0',
  'cryptonight',
  'stratum',
];
/** Miners run a thread per core: a user process with this many is worth the memory hit. */
const MINER_THREADS: i64 = 4;
/** The most bytes read per process: enough for heap, stack and data of a miner. */
const MAX_BYTES_PER_PROCESS: u64 = 32 * 1024 * 1024;

/** The first pool marker in `bytes`, or "" (bytes are compared as Latin-1: markers are ASCII). */
function poolMarkerIn(bytes: Uint8Array): string {
  const haystack = String.UTF8.decode(bytes.buffer);
  for (let index = 0; index < POOL_MARKERS.length; index++) {
    if (haystack.includes(POOL_MARKERS[index])) return POOL_MARKERS[index];
  }
  return '';
}

/** Where in the process's writable regions a pool marker is, or "" (reads overlap so a marker across chunks is seen). */
function findPoolMarker(pid: i64, regions: JSON.Obj[]): string {
  let budget = MAX_BYTES_PER_PROCESS;
  const overlap: u64 = 64;
  for (let index = 0; index < regions.length; index++) {
    const region = regions[index];
    if (integer(region, 'pid') != pid) continue;
    const perms = text(region, 'perms');
    if (perms.length < 2 || perms.charAt(1) != 'w') continue;
    const start = parseAddress(text(region, 'start'));
    const end = parseAddress(text(region, 'end'));
    let at = start;
    while (at < end && budget > 0) {
      const length = <i32>min<u64>(<u64>MAX_READ_BYTES, end - at);
      const bytes = readVirtual(<i32>pid, at, length);
      budget -= <u64>length;
      const marker = poolMarkerIn(bytes);
      if (marker.length > 0)
        return marker + ' in ' + (text(region, 'path').length > 0 ? text(region, 'path') : 'anonymous memory');
      if (<u64>length <= overlap) break;
      at += <u64>length - overlap;
    }
  }
  return '';
}

/** Why the process looks like a miner, or "". */
function minerTraits(process_: JSON.Obj): string {
  const names = strings(process_, 'argv');
  names.push(text(process_, 'comm'));
  names.push(baseName(text(process_, 'exe')));
  for (let index = 0; index < names.length; index++) {
    const lower = names[index].toLowerCase();
    for (let word = 0; word < MINER_WORDS.length; word++) {
      if (lower.includes(MINER_WORDS[word])) return 'names "' + MINER_WORDS[word] + '"';
    }
  }
  const threads = integer(process_, 'threads');
  if (threads >= MINER_THREADS) return 'runs ' + threads.toString() + ' threads';
  return '';
}

const input = readInput();
const regions = objects(input, 'regions');
const processes = objects(input, 'processes');
for (let index = 0; index < processes.length; index++) {
  const candidate = processes[index];
  if (flag(candidate, 'kernel_thread') || !flag(candidate, 'has_mm')) continue;
  const pid = integer(candidate, 'pid');
  const marker = findPoolMarker(pid, regions);
  if (marker.length == 0) continue;
  const traits = minerTraits(candidate);
  if (traits.length == 0) continue;
  emitFinding(
    'cryptominer',
    'high',
    'pid ' + pid.toString() + ' (' + text(candidate, 'comm') + ')',
    'memory holds ' + marker + '; it ' + traits,
    pid,
  );
}
