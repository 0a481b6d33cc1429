import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { LinuxKernel } from '../os/linux/discovery.js';
import type { KernelReader } from '../os/linux/kernelReader.js';
import { processAddressSpace } from '../os/linux/processSpace.js';
import { buildReverseMap, type Attribution, type ReverseMap } from '../os/linux/reverseMap.js';
import type { TaskInfo } from '../os/linux/tasks.js';
import { processStreams } from '../os/linux/virtualScan.js';
import { compileSource } from '../rules/compile.js';
import type { RuleMatch } from '../rules/evaluate.js';
import { RuleScanner, type RuleScanResult } from '../rules/scanner.js';
import { imageUnit } from '../rules/unit.js';
import type { X86AddressSpace } from '../space/x86.js';
import { VmscopeError } from '../util/errors.js';
import { hex } from '../util/hex.js';
import type { DumpContext } from './context.js';
import { processList } from './pslist.js';
import { carvedTasks } from './psscan.js';
import type { Analysis, AnalysisResult, Column, Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'rule', kind: 'text', title: 'Rule' },
  { key: 'string', kind: 'text', title: 'String' },
  { key: 'physical', kind: 'address', title: 'Physical' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'virtual', kind: 'address', title: 'Virtual' },
  { key: 'length', kind: 'int', title: 'Length' },
  { key: 'data', kind: 'text', title: 'Data' },
];

/** Bytes of each match shown, as hex and as text. */
const SHOWN_BYTES = 32;

export interface YarascanOptions {
  /** Path of the rule file. */
  rules: string;
  /** Scan this process's virtual memory instead of physical memory. */
  pid?: number;
  /** Scan every process's virtual memory instead of physical memory. */
  allProcesses?: boolean;
  /** Threads for the physical scan (default: the available parallelism). */
  threads?: number;
}

/**
 * Every match of a YARA rule file in the dump. Physically by default: the whole dump streamed
 * through the scan kernels (on several threads when the context has a pool), each match then
 * attributed to whoever maps its page — every process mapping it (one row each, at its own
 * virtual address), or `kernel` (image and module memory) or `unowned` (page cache, slab, free
 * pages). With a pid or all processes: each process's user memory in virtual order, which also
 * finds strings whose pages are not physically adjacent.
 */
export async function yarascan(context: DumpContext, options: YarascanOptions): Promise<AnalysisResult> {
  const source = readRulesFile(options.rules);
  const scanner = RuleScanner.create(compileSource(source, options.rules));
  // As yara's "string may slow down scanning": such a string is tried at every offset of the dump.
  const warnings = scanner.strings.flatMap(({ compiled }, index) =>
    compiled.scanEverywhere
      ? [`${scanner.describe(index)}: no fixed byte to search for, so it is tried at every offset (slow)`]
      : [],
  );
  const rows =
    options.pid !== undefined || options.allProcesses
      ? await scanProcesses(context, scanner, options, warnings)
      : await scanPhysical(context, scanner, source, options, warnings);
  return { columns, rows, single: false, partial: false, warnings, exitCode: rows.length > 0 ? 1 : 0 };
}

function readRulesFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new VmscopeError('USAGE', `cannot read the rule file: ${(error as Error).message}`, path);
  }
}

async function scanPhysical(
  context: DumpContext,
  scanner: RuleScanner,
  source: string,
  options: YarascanOptions,
  warnings: string[],
): Promise<Row[]> {
  const threads = options.threads ?? availableParallelism();
  const onProgress = context.progress('scanning with rules');
  const parallel = context.parallelRuleScan;
  const result =
    threads > 1 && parallel
      ? await parallel({ path: context.path, scanner, source, file: options.rules, threads, onProgress })
      : scanner.scanImage(context.image, { onProgress });
  warnTruncated(scanner, result, warnings);
  const matches = scanner.evaluate(result.hits, context.image.totalBytes, imageUnit(context.image));
  if (matches.length === 0) return [];
  const reverseMap = await ownersOrWarn(context, warnings);
  return matchRows(matches).flatMap(({ rule, string, offset, length }) => {
    const data = new Uint8Array(Math.min(length, SHOWN_BYTES));
    context.image.read(offset, data);
    const owners: ReadonlyArray<Attribution | { readonly owner: 'unknown' }> = reverseMap?.attribute(offset) ?? [
      { owner: 'unknown' },
    ];
    return owners.map((owner) => ({
      rule,
      string,
      physical: hex(offset),
      owner: owner.owner,
      pid: owner.owner === 'process' ? owner.pid : null,
      comm: owner.owner === 'process' ? owner.comm : null,
      virtual: owner.owner === 'process' ? hex(owner.virtual) : null,
      length,
      data: showBytes(data),
    }));
  });
}

/** The reverse map over every live process, hidden ones included; without a kernel, a warning and no owners. */
async function ownersOrWarn(context: DumpContext, warnings: string[]): Promise<ReverseMap | undefined> {
  try {
    const { kernel, reader, processes } = await everyProcess(context, warnings);
    const reverseMap = buildReverseMap(kernel, reader, processes);
    warnings.push(...reverseMap.problems);
    return reverseMap;
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    warnings.push(`hits are not attributed to processes: ${error.message}`);
    return undefined;
  }
}

/**
 * Thread-group leaders on the task list, then those carved from memory but missing from it
 * (hidden by DKOM): a hidden process's pages must not show as unowned.
 */
async function everyProcess(
  context: DumpContext,
  warnings: string[],
): Promise<{ kernel: LinuxKernel; reader: KernelReader; processes: TaskInfo[] }> {
  const list = await processList(context);
  warnings.push(...list.warnings);
  const listed = new Set(list.tasks.map((task) => task.task));
  const hidden = (await carvedTasks(context))
    .filter(({ info, life }) => life === 'alive' && info.pid === info.tgid && !listed.has(info.task))
    .map(({ info }) => info);
  return { kernel: context.kernel, reader: list.reader, processes: [...list.tasks, ...hidden] };
}

async function scanProcesses(
  context: DumpContext,
  scanner: RuleScanner,
  options: YarascanOptions,
  warnings: string[],
): Promise<Row[]> {
  const { kernel, reader, processes } = await everyProcess(context, warnings);
  const users = processes.filter((task) => !task.kernelThread && task.mm !== 0n);
  const selected = options.pid === undefined ? users : users.filter((task) => task.pid === options.pid);
  if (selected.length === 0) {
    throw new VmscopeError(
      'USAGE',
      `no user process with pid ${options.pid} (on the task list or carved from memory)`,
      context.path,
    );
  }
  const rows: Row[] = [];
  for (const task of selected) {
    let space: X86AddressSpace;
    try {
      space = processAddressSpace(kernel, reader, task.mm);
    } catch (error) {
      if (!(error instanceof VmscopeError)) throw error;
      warnings.push(`pid ${task.pid} ${task.comm}: no address space: ${error.message}`);
      continue;
    }
    const { streams, totalBytes, unreachableBytes } = processStreams(space);
    if (unreachableBytes > 0)
      warnings.push(`pid ${task.pid} ${task.comm}: ${unreachableBytes} bytes mapped above 2^53 were not scanned`);
    const result = scanner.scanStreams(streams);
    warnTruncated(scanner, result, warnings, `pid ${task.pid}: `);
    // As `yara -p`: conditions see the process's memory, offsets are virtual addresses.
    for (const { rule, string, offset, length } of matchRows(scanner.evaluate(result.hits, totalBytes))) {
      const virtual = BigInt(offset);
      const data = new Uint8Array(Math.min(length, SHOWN_BYTES));
      space.read(virtual, data);
      const physical = space.tryTranslate(virtual)?.physical;
      rows.push({
        rule,
        string,
        physical: physical === undefined ? null : hex(physical),
        owner: 'process',
        pid: task.pid,
        comm: task.comm,
        virtual: hex(virtual),
        length,
        data: showBytes(data),
      });
    }
  }
  return rows;
}

function matchRows(
  matches: readonly RuleMatch[],
): Array<{ rule: string; string: string; offset: number; length: number }> {
  return matches.flatMap((match) => match.strings);
}

function warnTruncated(scanner: RuleScanner, result: RuleScanResult, warnings: string[], prefix = ''): void {
  for (const string of result.truncated)
    warnings.push(`${prefix}${scanner.describe(string)}: too many matches, only the first ones by offset are kept`);
}

/** The bytes as text with anything unprintable as a dot (a hex dump's right column; read first in a table), then as hex. */
function showBytes(bytes: Uint8Array): string {
  const text = Array.from(bytes, (byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '.')).join('');
  return `|${text}| ${Buffer.from(bytes).toString('hex')}`;
}

const parseInteger = (name: string) => (value: string) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0)
    throw new VmscopeError('USAGE', `${name} must be a non-negative integer, not "${value}"`);
  return number;
};

export const yarascanAnalysis: Analysis = {
  name: 'yarascan',
  description: 'scan the dump with YARA rules and say which process holds every hit',
  columns,
  requires: ['image'],
  options: [
    { flags: '--rules <file>', key: 'rules', description: 'YARA rule file (required)' },
    {
      flags: '--pid <pid>',
      key: 'pid',
      description: "scan this process's virtual memory instead of physical memory",
      parse: parseInteger('--pid'),
    },
    {
      flags: '--all-processes',
      key: 'allProcesses',
      description: "scan every process's virtual memory instead of physical memory",
    },
    {
      flags: '--threads <n>',
      key: 'threads',
      description: 'threads for the physical scan (default: the available parallelism)',
      parse: parseInteger('--threads'),
    },
  ],
  help: `Rules follow YARA's syntax (strings with nocase/wide/ascii/fullword/private/xor, hex strings
with wildcards, jumps and alternations, regular expressions; conditions with counts, offsets,
ranges, "N of", "for ... of", filesize, private and global rules). Modules (import "pe", ...)
and anything else unsupported are refused with the rule, line and column.

Physical scan (default): every byte of the dump once, in physical address order, as yara
would scan a flat file of the guest's RAM (offsets and "at"/"in" conditions are physical
addresses; filesize is the memory present). Each match is then attributed through the page
tables of every process, hidden ones included: one row per process mapping the page (owner
"process", with that process's virtual address), else "kernel" (kernel image, modules) or
"unowned" (page cache, slab, free memory). A string split over two pages that are not
physically adjacent cannot be seen this way.

--pid N / --all-processes: each process's user memory in virtual order, pages joined as the
process sees them, so split strings are found; conditions are evaluated per process
(offsets are virtual addresses, filesize the process's mapped memory present in the dump).

"data" shows the first ${SHOWN_BYTES} bytes of each match as hex and as text. A string matching
more than a million times keeps its first million matches (as yara) and says so.
Exit code 1 when any rule matched, 0 when none did.

Examples:
  vmscope yarascan --rules malware.yar guest.elf
  vmscope yarascan --rules markers.yar --pid 4242 guest.lime --json
  vmscope yarascan --rules c2.yar --all-processes guest.raw --ndjson | jq -r .comm | sort -u`,
  run: (context, args) => {
    if (typeof args.rules !== 'string') throw new VmscopeError('USAGE', 'yarascan needs --rules <file>');
    if (args.pid !== undefined && args.allProcesses)
      throw new VmscopeError('USAGE', '--pid and --all-processes exclude each other');
    return yarascan(context, {
      rules: args.rules,
      ...(args.pid !== undefined ? { pid: args.pid as number } : {}),
      ...(args.allProcesses ? { allProcesses: true } : {}),
      ...(args.threads !== undefined ? { threads: args.threads as number } : {}),
    });
  },
};
