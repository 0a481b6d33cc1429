import { VmscopeError } from '../../util/errors.js';
import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { CodeOwners } from './codeOwners.js';
import type { ModuleInfo } from './modules.js';
import type { Profile } from '../../symbols/profile.js';
import { followSwitch, type SwitchExit, type SwitchMap } from './x86Switch.js';

/**
 * One syscall ABI: its table (x86-64 kernels since the 2024 BHI fix keep only the native one),
 * its dispatcher function (the BHI fix's `switch`; absent before) and the symbol prefixes of its
 * handlers, e.g. `__x64_sys_getdents64` for getdents64.
 */
interface SyscallAbi {
  readonly table: string;
  readonly dispatcher: string;
  readonly handlerPrefixes: readonly string[];
}

const NATIVE_TABLE = 'sys_call_table';
const SYSCALL_ABIS: readonly SyscallAbi[] = [
  { table: NATIVE_TABLE, dispatcher: 'x64_sys_call', handlerPrefixes: ['__x64_sys_'] },
  { table: 'ia32_sys_call_table', dispatcher: 'ia32_sys_call', handlerPrefixes: ['__ia32_sys_', '__ia32_compat_sys_'] },
  // x32 shares the native handlers; its compat ones are __x64_compat_sys_* since 5.x, __x32_compat_sys_* before.
  {
    table: 'x32_sys_call_table',
    dispatcher: 'x32_sys_call',
    handlerPrefixes: ['__x64_sys_', '__x64_compat_sys_', '__x32_compat_sys_'],
  },
];
/** What unimplemented numbers point to in every ABI (besides its `__<abi>_sys_ni_syscall` stub). */
const NI_SYSCALL = 'sys_ni_syscall';
/** Far more than any x86 ABI's NR_syscalls (about 460 in 2025): the bound on a table's length. */
const MAX_TABLE_ENTRIES = 1024;
/** A dispatcher is a few KiB of compares and jumps; its symbol's extent is bounded by this. */
const MAX_DISPATCHER_BYTES = 64 << 10;

export interface SyscallCheck {
  /** The table's symbol for a table entry; the dispatcher function for a jump in its code. */
  readonly table: string;
  readonly kind: 'entry' | 'dispatcher';
  /** The table index; for a dispatcher jump, the lowest syscall number that takes it. */
  readonly index: number;
  /** The syscall's name, from the kernel's own handler for that number, when known. */
  readonly name: string | undefined;
  readonly address: bigint;
  readonly symbol: string | undefined;
  /** `kernel` (inside kernel text), the name of the module whose memory holds it, or `unknown`. */
  readonly owner: string;
  /** The entry (or jump) does not lead to the kernel's own handler. */
  readonly hooked: boolean;
}

export interface SyscallReport {
  readonly checks: SyscallCheck[];
  /** What could not be checked (an unreadable table, dispatcher code the decoder does not follow). */
  readonly problems: string[];
}

/** The kernel's symbols by address: the ABI's handler names, and where the next symbol starts. */
class KernelSymbols {
  /** Handler names by ABI and address: each table entry and dispatcher exit is asked about several times. */
  private readonly handlers = new Map<SyscallAbi, Map<bigint, string | undefined>>();

  constructor(private readonly reader: KernelReader) {}

  /** Where the symbol after `address` starts: the extent of an object whose size kallsyms does not record. */
  nextAfter(address: bigint): bigint | undefined {
    return this.reader.profile.symbolAfter(address)?.address;
  }

  /** The name of the ABI's syscall handler that starts exactly at `address`, if one does. */
  handlerAt(address: bigint, abi: SyscallAbi): string | undefined {
    let known = this.handlers.get(abi);
    if (!known) this.handlers.set(abi, (known = new Map()));
    if (!known.has(address))
      known.set(
        address,
        handlerName(
          this.reader.profile.symbolsAt(address).map((symbol) => symbol.name),
          abi,
        ),
      );
    return known.get(address);
  }
}

/** The ABI's handler among the names at one address. */
function handlerName(names: readonly string[], abi: SyscallAbi): string | undefined {
  return names.find((name) => name === NI_SYSCALL || abi.handlerPrefixes.some((prefix) => name.startsWith(prefix)));
}

/** `getdents64` from `__x64_sys_getdents64`, `ni_syscall` from `sys_ni_syscall`. */
function syscallName(handler: string, abi: SyscallAbi): string {
  const prefix = [...abi.handlerPrefixes, 'sys_'].find((candidate) => handler.startsWith(candidate))!;
  return handler.slice(prefix.length);
}

/**
 * The table's entries: its extent is up to the next symbol (kallsyms records no sizes), bounded,
 * less the trailing alignment padding (entries that are not kernel pointers).
 */
function readTable(reader: KernelReader, symbols: KernelSymbols, start: bigint): bigint[] {
  const extent = (symbols.nextAfter(start) ?? start) - start;
  const count = Math.min(MAX_TABLE_ENTRIES, Number(extent / 8n));
  const bytes = reader.bytes(start, count * 8);
  const view = new DataView(bytes.buffer);
  const entries = Array.from({ length: count }, (_, index) => view.getBigUint64(index * 8, true));
  while (entries.length > 0 && !reader.space.isKernelAddress(entries[entries.length - 1]!)) entries.pop();
  return entries;
}

/**
 * The switch last followed in each dispatcher, per profile: a live monitor checks the same
 * kernel every few seconds, and the same code (compared byte for byte) takes the same jumps.
 */
const followedSwitches = new WeakMap<Profile, Map<string, { readonly code: Uint8Array; readonly map: SwitchMap }>>();

function followDispatcherSwitch(profile: Profile, dispatcher: string, code: Uint8Array, start: bigint): SwitchMap {
  let followed = followedSwitches.get(profile);
  if (!followed) followedSwitches.set(profile, (followed = new Map()));
  const last = followed.get(dispatcher);
  if (last && Buffer.from(last.code.buffer, last.code.byteOffset, last.code.length).equals(code)) return last.map;
  const map = followSwitch(code, start);
  followed.set(dispatcher, { code, map });
  return map;
}

/** The dispatcher's jumps out of its switch, or undefined when this kernel has none. */
function followDispatcher(
  reader: KernelReader,
  symbols: KernelSymbols,
  abi: SyscallAbi,
  problems: string[],
): SwitchExit[] | undefined {
  const start = reader.profile.symbol(abi.dispatcher);
  if (start === undefined) return undefined;
  const end = symbols.nextAfter(start) ?? start + BigInt(MAX_DISPATCHER_BYTES);
  const code = reader.bytes(start, Math.min(MAX_DISPATCHER_BYTES, Number(end - start)));
  const { exits, stops } = followDispatcherSwitch(reader.profile, abi.dispatcher, code, start);
  for (const stop of stops) {
    problems.push(
      `${abi.dispatcher}: syscalls ${stop.first}-${stop.last} not checked: ${stop.reason} at ${hex(stop.at)}`,
    );
  }
  return exits;
}

function checkAbi(
  reader: KernelReader,
  symbols: KernelSymbols,
  owners: CodeOwners,
  abi: SyscallAbi,
  problems: string[],
): SyscallCheck[] {
  const resolve = (address: bigint) => owners.resolve(address, (names) => handlerName(names, abi));
  const exits = withProblem(problems, abi.dispatcher, () => followDispatcher(reader, symbols, abi, problems));
  const tableStart = reader.profile.symbol(abi.table);
  const table =
    tableStart === undefined
      ? []
      : (withProblem(problems, abi.table, () => readTable(reader, symbols, tableStart)) ?? []);
  /** The kernel's own handler for `nr`: where its dispatcher sends it, when that is a handler. Asked twice per entry. */
  const kernelHandlers = new Map<number, bigint | undefined>();
  const kernelHandler = (nr: number) => {
    if (kernelHandlers.has(nr)) return kernelHandlers.get(nr);
    const target = exits?.find((exit) => exit.first <= nr && nr <= exit.last)?.target;
    const handler = target !== undefined && symbols.handlerAt(target, abi) ? target : undefined;
    kernelHandlers.set(nr, handler);
    return handler;
  };
  /** The name of the kernel's handler for `nr`, else of the table's when that is a handler. */
  const nameOf = (nr: number) => {
    for (const address of [kernelHandler(nr), table[nr]]) {
      const handler = address === undefined ? undefined : symbols.handlerAt(address, abi);
      if (handler) return syscallName(handler, abi);
    }
    return undefined;
  };

  const checks: SyscallCheck[] = table.map((address, index) => {
    const expected = kernelHandler(index);
    const { owner, symbol } = resolve(address);
    const hooked =
      expected !== undefined ? address !== expected : owner !== 'kernel' || !symbols.handlerAt(address, abi);
    return { table: abi.table, kind: 'entry', index, name: nameOf(index), address, symbol, owner, hooked };
  });
  for (const exit of exits ?? []) {
    if (symbols.handlerAt(exit.target, abi)) continue;
    checks.push({
      table: abi.dispatcher,
      kind: 'dispatcher',
      index: exit.first,
      name: nameOf(exit.first),
      address: exit.target,
      ...resolve(exit.target),
      hooked: true,
    });
  }
  return checks;
}

/** A read that may fail on damaged memory: the failure becomes a problem naming what was being read. */
function withProblem<T>(problems: string[], what: string, read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    if (!(error instanceof VmscopeError)) throw error;
    problems.push(`${what}: ${error.message}`);
    return undefined;
  }
}

/**
 * Every syscall table entry, resolved to a symbol and an owner, and checked against the kernel's
 * own handler: where the ABI's dispatcher sends that number when the kernel has one (so even a
 * swap of two real handlers shows), else any handler symbol of the ABI inside kernel text. Jumps
 * of a dispatcher that lead to anything but a handler are reported as `dispatcher` checks.
 * `modules` (listed and hidden) name the owners of addresses outside the kernel.
 */
export function checkSyscalls(reader: KernelReader, modules: readonly ModuleInfo[]): SyscallReport {
  const symbols = new KernelSymbols(reader);
  const owners = new CodeOwners(reader, modules);
  const problems: string[] = [];
  if (reader.profile.symbol(NATIVE_TABLE) === undefined) problems.push(`the profile has no ${NATIVE_TABLE}`);
  return { checks: SYSCALL_ABIS.flatMap((abi) => checkAbi(reader, symbols, owners, abi, problems)), problems };
}
