import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { processAddressSpace } from '../os/linux/processSpace.js';
import type { Attribution, ReverseMap } from '../os/linux/reverseMap.js';
import type { TaskInfo } from '../os/linux/tasks.js';
import { processStreams, regionUnits } from '../os/linux/virtualScan.js';
import { compileSource } from '../rules/compile.js';
import type { RuleMatch } from '../rules/evaluate.js';
import { RuleScanner, type RuleScanResult } from '../rules/scanner.js';
import { imageUnit } from '../rules/unit.js';
import type { X86AddressSpace } from '../space/x86.js';
import { VmscopeError } from '../util/errors.js';
import { readInputFile } from '../util/files.js';
import { hex } from '../util/hex.js';
import type { DumpContext } from './context.js';
import { GeneratedRows } from './generatedRows.js';
import { imageProvider, kernelProvider, readerProvider } from './providers/kernel.js';
import { memoryRegionsProvider } from './providers/processContext.js';
import { everyProcessProvider, reverseMapProvider } from './providers/processes.js';
import {
  defineAnalysis,
  option,
  type AnalysisInputs,
  type AnalysisResult,
  type Column,
  type Row,
  type RowSet,
} from './types.js';

const columns: readonly Column[] = [
  { key: 'rule', kind: 'text', title: 'Rule' },
  { key: 'string', kind: 'text', title: 'String' },
  { key: 'physical', kind: 'address', title: 'Physical' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'pid', kind: 'int', title: 'PID' },
  { key: 'comm', kind: 'text', title: 'Command' },
  { key: 'virtual', kind: 'address', title: 'Virtual' },
  { key: 'regionStart', kind: 'address', title: 'Region start' },
  { key: 'regionEnd', kind: 'address', title: 'Region end' },
  { key: 'offset', kind: 'address', title: 'Offset' },
  { key: 'length', kind: 'int', title: 'Length' },
  { key: 'data', kind: 'text', title: 'Data' },
];
/** Where a hit lies inside its memory region: only --per-region scans have regions as units. */
const REGION_COLUMNS = new Set(['regionStart', 'regionEnd', 'offset']);
const unitColumns = columns.filter((column) => !REGION_COLUMNS.has(column.key));

/** Bytes of each match shown, as hex and as text. */
const SHOWN_BYTES = 32;

/** Far more threads than any machine this runs on has cores; each holds a WASM instance and a scan window. */
export const MAX_SCAN_THREADS = 256;

const optionsSchema = z
  .object({
    rules: option(z.string().min(1), { description: 'YARA rule file (required)', placeholder: 'file', file: true }),
    pid: option(z.coerce.number().int().min(0).optional(), {
      description: "scan this process's virtual memory instead of physical memory",
      placeholder: 'pid',
    }),
    allProcesses: option(z.boolean().optional(), {
      description: "scan every process's virtual memory instead of physical memory",
    }),
    perRegion: option(z.boolean().optional(), {
      description: "scan each memory region of every process (or of --pid's) as a unit of its own",
    }),
    threads: option(z.coerce.number().int().min(1).max(MAX_SCAN_THREADS).optional(), {
      description: 'threads for the physical scan (default: the available parallelism)',
      placeholder: 'n',
    }),
  })
  .refine((options) => options.pid === undefined || !options.allProcesses, {
    message: '--pid and --all-processes exclude each other',
  });

export type YarascanOptions = z.output<typeof optionsSchema>;

/**
 * Every match of a YARA rule file in the dump. Physically by default: the whole dump streamed
 * through the scan kernels (on several threads when the context has a pool), each match then
 * attributed to whoever maps its page — every process mapping it (one row each, at its own
 * virtual address), or `kernel` (image and module memory) or `unowned` (page cache, slab, free
 * pages). With a pid or all processes: each process's user memory in virtual order, which also
 * finds strings whose pages are not physically adjacent.
 */
async function scanWithRules(inputs: AnalysisInputs, options: YarascanOptions): Promise<AnalysisResult<RowSet>> {
  const source = readRulesFile(options.rules);
  const scanner = RuleScanner.create(compileSource(source, options.rules));
  // As yara's "string may slow down scanning": such a string is tried at every offset of the dump.
  const warnings = scanner.strings.flatMap(({ compiled }, index) =>
    compiled.scanEverywhere
      ? [`${scanner.describe(index)}: no fixed byte to search for, so it is tried at every offset (slow)`]
      : [],
  );
  // A string keeps up to a million matches and a rule set has many strings: rows are made as they are written.
  const rows = new GeneratedRows();
  if (options.perRegion) await scanRegions(inputs, scanner, options, warnings, rows);
  else if (options.pid !== undefined || options.allProcesses)
    await scanProcesses(inputs, scanner, options, warnings, rows);
  else await scanPhysical(inputs, scanner, options, warnings, rows);
  return {
    columns: options.perRegion ? columns : unitColumns,
    rows,
    single: false,
    partial: false,
    warnings,
    exitCode: rows.length > 0 ? 1 : 0,
  };
}

/** Far larger than any real rule set (a 2,500-rule community set is ~1 MiB): anything bigger is refused, not parsed. */
export const MAX_RULES_FILE_BYTES = 64 << 20;

function readRulesFile(path: string): string {
  return readInputFile(path, 'rule file', MAX_RULES_FILE_BYTES).toString('utf8');
}

async function scanPhysical(
  inputs: AnalysisInputs,
  scanner: RuleScanner,
  options: YarascanOptions,
  warnings: string[],
  rows: GeneratedRows,
): Promise<void> {
  const image = await inputs.get(imageProvider);
  const threads = options.threads ?? inputs.defaultThreads ?? availableParallelism();
  const onProgress = inputs.progress('scanning with rules');
  const parallel = inputs.parallelRuleScan;
  // Who owns each hit (the kernel, its profile, every process: carved ones too) is found while the
  // scan threads go on, from the first part of the dump with hits; a scan without any pays nothing.
  const ownerWarnings: string[] = [];
  let owners: Promise<ReverseMap | undefined> | undefined;
  const findOwners = () => {
    if (!owners) {
      owners = ownersOrWarn(inputs, ownerWarnings);
      owners.catch(() => {}); // awaited once the scan is done
    }
    return owners;
  };
  const result =
    threads > 1 && parallel
      ? await parallel({
          path: inputs.path,
          identity: inputs.identity,
          scanner,
          threads,
          onProgress,
          onHits: () => void findOwners(),
        })
      : scanner.scanImage(image, { onProgress });
  warnTruncated(scanner, result, warnings);
  const matches = scanner.evaluate(result.hits, image.totalBytes, imageUnit(image));
  const stringless = stringlessRows(matches, { owner: 'dump', pid: null, comm: null });
  rows.add(stringless.length, () => stringless);
  if (stringless.length === matches.length) {
    // No rule shows a string: owners found meanwhile (the scan had hits) are not needed, nor their warnings.
    await owners?.catch(() => undefined);
    return;
  }
  const reverseMap = await findOwners();
  warnings.push(...ownerWarnings);
  const ownersOf = (offset: number): ReadonlyArray<Attribution | { readonly owner: 'unknown' }> =>
    reverseMap?.attribute(offset) ?? UNKNOWN_OWNER;
  for (const { rule, reported } of matches)
    for (const { id: string, matches: list } of reported) {
      // One row per owner of each match: counted now, made (bytes read, owners looked up again) as they are written.
      let count = 0;
      for (let i = 0; i < list.count; i++) count += reverseMap?.attributionCount(list.offsetAt(i)) ?? 1;
      rows.add(count, function* () {
        const data = new Uint8Array(SHOWN_BYTES);
        for (let i = 0; i < list.count; i++) {
          const [offset, length] = [list.offsetAt(i), list.lengthAt(i)];
          const shown = data.subarray(0, Math.min(length, SHOWN_BYTES));
          image.read(offset, shown);
          const shownBytes = showBytes(shown);
          const physical = hex(offset);
          for (const owner of ownersOf(offset))
            yield {
              rule,
              string,
              physical,
              owner: owner.owner,
              pid: owner.owner === 'process' ? owner.pid : null,
              comm: owner.owner === 'process' ? owner.comm : null,
              virtual: owner.owner === 'process' ? hex(owner.virtual) : null,
              length,
              data: shownBytes,
            };
        }
      });
    }
}

const UNKNOWN_OWNER = [{ owner: 'unknown' } as const];

/**
 * Rules that match with no string of theirs to show (`condition: filesize > 0`, `not $absent`):
 * one row each, as yara prints the rule, owned by the unit it judged (the dump, or a process).
 */
function stringlessRows(
  matches: readonly RuleMatch[],
  unit: { owner: string; pid: number | null; comm: string | null },
): Row[] {
  return matches
    .filter((match) => match.reported.every(({ matches }) => matches.count === 0))
    .map((match) => ({
      rule: match.rule,
      string: null,
      physical: null,
      ...unit,
      virtual: null,
      length: null,
      data: null,
    }));
}

/** The reverse map over every live process, hidden ones included; without a kernel, a warning and no owners. */
async function ownersOrWarn(inputs: AnalysisInputs, warnings: string[]): Promise<ReverseMap | undefined> {
  try {
    warnings.push(...(await inputs.get(everyProcessProvider)).warnings);
    const reverseMap = await inputs.get(reverseMapProvider);
    warnings.push(...reverseMap.problems);
    return reverseMap;
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    warnings.push(`hits are not attributed to processes: ${error.message}`);
    return undefined;
  }
}

/** The user processes a virtual scan covers: the one --pid names, else all of them. */
async function selectedProcesses(
  inputs: AnalysisInputs,
  options: YarascanOptions,
  warnings: string[],
): Promise<TaskInfo[]> {
  const { processes, warnings: listWarnings } = await inputs.get(everyProcessProvider);
  warnings.push(...listWarnings);
  const users = processes.filter((task) => !task.kernelThread && task.mm !== 0n);
  const selected = options.pid === undefined ? users : users.filter((task) => task.pid === options.pid);
  if (selected.length === 0) {
    throw new VmscopeError(
      'USAGE',
      `no user process with pid ${options.pid} (on the task list or carved from memory)`,
      inputs.path,
    );
  }
  return selected;
}

/** The process's address space, or a warning naming it and undefined. */
async function addressSpaceOrWarn(
  inputs: AnalysisInputs,
  task: TaskInfo,
  warnings: string[],
): Promise<X86AddressSpace | undefined> {
  try {
    return processAddressSpace(await inputs.get(kernelProvider), await inputs.get(readerProvider), task.mm);
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    warnings.push(`pid ${task.pid} ${task.comm}: no address space: ${error.message}`);
    return undefined;
  }
}

async function scanProcesses(
  inputs: AnalysisInputs,
  scanner: RuleScanner,
  options: YarascanOptions,
  warnings: string[],
  rows: GeneratedRows,
): Promise<void> {
  for (const task of await selectedProcesses(inputs, options, warnings)) {
    const space = await addressSpaceOrWarn(inputs, task, warnings);
    if (!space) continue;
    const { streams, totalBytes, unreachableBytes } = processStreams(space);
    if (unreachableBytes > 0)
      warnings.push(`pid ${task.pid} ${task.comm}: ${unreachableBytes} bytes mapped above 2^53 were not scanned`);
    const result = scanner.scanStreams(streams);
    warnTruncated(scanner, result, warnings, `pid ${task.pid}: `);
    // As `yara -p`: conditions see the process's memory, offsets are virtual addresses.
    const matches = scanner.evaluate(result.hits, totalBytes);
    addProcessUnitRows(rows, matches, task, {}, (rule, string, offset, length) =>
      virtualRow(space, task, BigInt(offset), { rule, string, length }),
    );
  }
}

/**
 * --per-region: each memory region (VMA) of each selected process is a unit of its own, as
 * yara's process scan and Volatility's vmayarascan judge them: offsets count from the region's
 * start, filesize is its size, `uint32(0)` and the modules read its first bytes, so header rules
 * and elf.* see the images mapped there.
 */
async function scanRegions(
  inputs: AnalysisInputs,
  scanner: RuleScanner,
  options: YarascanOptions,
  warnings: string[],
  rows: GeneratedRows,
): Promise<void> {
  const regionsByTask = await inputs.get(memoryRegionsProvider);
  warnings.push(...regionsByTask.warnings);
  for (const task of await selectedProcesses(inputs, options, warnings)) {
    const regions = regionsByTask.byTask.get(task.task)?.regions ?? [];
    const space = regions.length > 0 ? await addressSpaceOrWarn(inputs, task, warnings) : undefined;
    if (!space) continue;
    regionUnits(space, regions).forEach((unit, i) => {
      const { start, end } = regions[i]!;
      const where = { regionStart: hex(start), regionEnd: hex(end) };
      const result = scanner.scanStreams(unit.streams);
      warnTruncated(scanner, result, warnings, `pid ${task.pid} region ${hex(start)}: `);
      const matches = scanner.evaluate(result.hits, unit.size, unit);
      addProcessUnitRows(rows, matches, task, { ...where, offset: null }, (rule, string, offset, length) => ({
        ...virtualRow(space, task, start + BigInt(offset), { rule, string, length }),
        ...where,
        offset: hex(offset),
      }));
    });
  }
}

/** The row of a match at `virtual` in a process's memory, with its bytes and where they lie physically. */
function virtualRow(
  space: X86AddressSpace,
  task: TaskInfo,
  virtual: bigint,
  { rule, string, length }: { rule: string; string: string; length: number },
): Row {
  const data = new Uint8Array(Math.min(length, SHOWN_BYTES));
  space.read(virtual, data);
  const physical = space.tryTranslate(virtual)?.physical;
  return {
    rule,
    string,
    physical: physical === undefined ? null : hex(physical),
    owner: 'process',
    pid: task.pid,
    comm: task.comm,
    virtual: hex(virtual),
    length,
    data: showBytes(data),
  };
}

/**
 * The rows of one process unit's matching rules (its memory, or one region): the stringless
 * rules' rows with `unitCells` added, then a row per match of each reported string, made by
 * `matchRow` as it is read.
 */
function addProcessUnitRows(
  rows: GeneratedRows,
  matches: readonly RuleMatch[],
  task: TaskInfo,
  unitCells: Row,
  matchRow: (rule: string, string: string, offset: number, length: number) => Row,
): void {
  const stringless = stringlessRows(matches, { owner: 'process', pid: task.pid, comm: task.comm }).map((row) => ({
    ...row,
    ...unitCells,
  }));
  rows.add(stringless.length, () => stringless);
  for (const { rule, reported } of matches)
    for (const { id, matches: list } of reported)
      rows.add(list.count, function* () {
        for (let i = 0; i < list.count; i++) yield matchRow(rule, id, list.offsetAt(i), list.lengthAt(i));
      });
}

function warnTruncated(scanner: RuleScanner, result: RuleScanResult, warnings: string[], prefix = ''): void {
  for (const string of result.truncated)
    warnings.push(`${prefix}${scanner.describe(string)}: too many matches, only the first ones by offset are kept`);
}

/** The bytes as text with anything unprintable as a dot (a hex dump's right column; read first in a table), then as hex. */
function showBytes(bytes: Uint8Array): string {
  const printable = Buffer.from(bytes.map((byte) => (byte >= 0x20 && byte < 0x7f ? byte : 0x2e)));
  return `|${printable.toString('latin1')}| ${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex')}`;
}

/** The library's yarascan: `yarascanAnalysis.run` with typed options. */
export function yarascan(
  context: DumpContext,
  options: z.input<typeof optionsSchema>,
): Promise<AnalysisResult<RowSet>> {
  return yarascanAnalysis.run(context, options);
}

export const yarascanAnalysis = defineAnalysis<typeof optionsSchema, RowSet>({
  name: 'yarascan',
  description: 'scan the dump with YARA rules and say which process holds every hit',
  columns,
  uses: [
    imageProvider,
    kernelProvider,
    readerProvider,
    everyProcessProvider,
    reverseMapProvider,
    memoryRegionsProvider,
  ],
  options: optionsSchema,
  rows: 'hits',
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

--per-region (with or without --pid): each memory region (VMA) of each process is a unit of its
own, as yara's process scan and Volatility's vmayarascan see them: offsets and "at"/"in" count
from the region's start, filesize is the region's size, and uint32(0), elf.* and the other
modules read the region's first bytes, so header rules match the images mapped in memory. Rows
name the process, the region (start, end) and the offset inside it, with the virtual address.

"data" shows the first ${SHOWN_BYTES} bytes of each match as hex and as text. A string matching
more than a million times keeps its first million matches by offset (as yara) and says so; a
rule's strings keep two million together and a whole scan three million, so rules matching
everywhere cannot exhaust memory (each string that lost matches is named).
Exit code 1 when any rule matched, 0 when none did.

Examples:
  vmscope yarascan --rules malware.yar guest.elf
  vmscope yarascan --rules markers.yar --pid 4242 guest.lime --json
  vmscope yarascan --rules c2.yar --all-processes guest.raw --ndjson | jq -r .comm | sort -u
  vmscope yarascan --rules elf-headers.yar --per-region guest.elf`,
  compute: scanWithRules,
});
