// Process masquerading: a user process (it has an mm) named like a kernel thread, or whose
// name (task_struct.comm) is none of its argv[0], its script (argv[1], for `sh /init`) and its
// executable. comm holds at most 15 bytes, so names compare by that prefix.
import { JSON } from 'assemblyscript-json/assembly';
import { baseName, emitFinding, flag, integer, objects, readInput, strings, text } from '../shared/plugin';

const KERNEL_THREAD_PREFIXES: string[] = [
  'kworker/',
  'ksoftirqd/',
  'migration/',
  'kthreadd',
  'rcu_',
  'cpuhp/',
  'watchdog/',
  'kswapd',
  'khugepaged',
  'jbd2/',
  'kdevtmpfs',
  'kblockd',
  'irq/',
];
const COMM_BYTES = 15;

function looksLikeKernelThread(name: string): bool {
  const bare = name.startsWith('[') && name.endsWith(']') ? name.substring(1, name.length - 1) : name;
  for (let index = 0; index < KERNEL_THREAD_PREFIXES.length; index++) {
    if (bare.startsWith(KERNEL_THREAD_PREFIXES[index])) return true;
  }
  return false;
}

function sameName(comm: string, path: string): bool {
  const name = baseName(path);
  return name.length > 0 && (name == comm || (comm.length == COMM_BYTES && name.startsWith(comm)));
}

function subject(candidate: JSON.Obj): string {
  return 'pid ' + integer(candidate, 'pid').toString() + ' (' + text(candidate, 'comm') + ')';
}

const processes = objects(readInput(), 'processes');
for (let index = 0; index < processes.length; index++) {
  const candidate = processes[index];
  if (flag(candidate, 'kernel_thread') || !flag(candidate, 'has_mm')) continue;
  const comm = text(candidate, 'comm');
  const argv = strings(candidate, 'argv');
  const exe = text(candidate, 'exe');
  const argv0 = argv.length > 0 ? argv[0] : '';
  const pid = integer(candidate, 'pid');
  if (looksLikeKernelThread(comm) || looksLikeKernelThread(argv0)) {
    emitFinding(
      'kernel_thread_masquerade',
      'high',
      subject(candidate),
      'a user process (it has an mm, exe "' +
        exe +
        '") named like a kernel thread: comm "' +
        comm +
        '", argv[0] "' +
        argv0 +
        '"',
      pid,
    );
    continue;
  }
  if (sameName(comm, argv0) || sameName(comm, exe) || (argv.length > 1 && sameName(comm, argv[1]))) continue;
  emitFinding(
    'name_mismatch',
    'medium',
    subject(candidate),
    'comm "' + comm + '" is neither argv[0] "' + argv0 + '" nor the executable "' + exe + '"',
    pid,
  );
}
