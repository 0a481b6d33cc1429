import { hex } from '../../util/hex.js';
import type { KernelReader } from './kernelReader.js';
import { isModuleName, moduleAt, moduleSymbolAt, type ModuleInfo } from './modules.js';

/** Where a code (or data) pointer leads: who owns the memory, and the symbol it lands on. */
export interface CodeLocation {
  /** `kernel` (inside kernel text), the name of the module whose memory holds it, or `unknown`. */
  readonly owner: string;
  /** `name` or `name+0xoff` (as the kernel's %pS prints it, less the size); undefined when none is known. */
  readonly symbol: string | undefined;
}

/** A module as an owner: its name, or its struct's address when the name was blanked or garbled (never "unknown"). */
export function moduleOwnerName(module: ModuleInfo): string {
  return isModuleName(module.name) ? module.name : `module@${hex(module.address)}`;
}

/** `name`, or `name+0xoff` past its start. */
export function symbolText(name: string, offset: bigint): string {
  return offset === 0n ? name : `${name}+${hex(offset)}`;
}

/**
 * Resolves pointers found in kernel objects (hook targets, handlers, callbacks) to their owner:
 * kernel text (`_stext`..`_etext`), a module (listed or hidden: pass both) by the module's own
 * kallsyms, or `unknown` for memory no module owns. Hooks are judged by this, so it trusts only
 * the kernel's symbols and the modules' recorded extents, never names found next to the pointer.
 */
export class CodeOwners {
  private readonly textStart: bigint;
  private readonly textEnd: bigint;
  private readonly imageEnd: bigint;

  constructor(
    private readonly reader: KernelReader,
    private readonly modules: readonly ModuleInfo[],
  ) {
    const { profile } = reader;
    this.textStart = profile.requireSymbol('_stext');
    this.textEnd = profile.requireSymbol('_etext');
    this.imageEnd = profile.symbol('_end') ?? this.textEnd;
  }

  inKernelText(address: bigint): boolean {
    return address >= this.textStart && address < this.textEnd;
  }

  inKernelImage(address: bigint): boolean {
    return address >= this.textStart && address < this.imageEnd;
  }

  /** The module whose memory holds `address`, listed or hidden. */
  moduleAt(address: bigint): ModuleInfo | undefined {
    return moduleAt(this.modules, address);
  }

  /**
   * Owner and symbol of `address`. Inside the kernel image several names may share an address:
   * `preferName` picks one of them (e.g. a syscall handler over its alias), else the first.
   */
  resolve(address: bigint, preferName?: (names: readonly string[]) => string | undefined): CodeLocation {
    const module = this.moduleAt(address);
    if (module) {
      const found = moduleSymbolAt(this.reader, module, address);
      return { owner: moduleOwnerName(module), symbol: found && symbolText(found.name, found.offset) };
    }
    return { owner: this.inKernelText(address) ? 'kernel' : 'unknown', symbol: this.kernelSymbol(address, preferName) };
  }

  /** The kernel image's symbol at or below `address`, or undefined outside the image. */
  kernelSymbol(address: bigint, preferName?: (names: readonly string[]) => string | undefined): string | undefined {
    if (!this.inKernelImage(address)) return undefined;
    const { profile } = this.reader;
    const exact = preferName?.(profile.symbolsAt(address).map((symbol) => symbol.name));
    if (exact) return exact;
    const found = profile.symbolAt(address);
    return found && symbolText(found.symbol.name, found.offset);
  }
}
