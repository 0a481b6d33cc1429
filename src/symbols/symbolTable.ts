import type { ProfileSymbol } from './profile.js';

/**
 * A profile's symbols, looked up by name and by address. A profile derived from a dump or read
 * from an ISF holds them as a list (listSymbolTable); one loaded from the cache reads them from
 * the file's columns on demand (cachedSymbolTable.ts), so that a command which looks up a few
 * hundred of a hundred thousand symbols does not build them all first.
 */
export interface SymbolTable {
  /** Every symbol, in the order of its source (kallsyms order for a derived profile). */
  readonly list: readonly ProfileSymbol[];
  /** The symbol a name stands for: the first global definition, else the first of its local ones. */
  named(name: string): ProfileSymbol | undefined;
  /** How many symbols move with KASLR (all but the absolute ones). */
  readonly relocatableCount: number;
  /** The rank-th relocatable symbol in address order (equal addresses in list order). */
  relocatableAt(rank: number): ProfileSymbol;
  /** Its address, without building the symbol. */
  relocatableAddress(rank: number): bigint;
}

/** A file-local symbol (lowercase kallsyms letter): a global of the same name takes precedence. */
export function isLocalSymbol(symbol: Pick<ProfileSymbol, 'type'>): boolean {
  return symbol.type !== undefined && symbol.type === symbol.type.toLowerCase();
}

/** Each name's symbol (see SymbolTable.named), in the order names first appear. */
export function symbolsByName(symbols: readonly ProfileSymbol[]): Map<string, ProfileSymbol> {
  const byName = new Map<string, ProfileSymbol>();
  for (const symbol of symbols) {
    const known = byName.get(symbol.name);
    // Local names repeat (static functions in several files); a global definition wins.
    if (!known || (isLocalSymbol(known) && !isLocalSymbol(symbol))) byName.set(symbol.name, symbol);
  }
  return byName;
}

/** Indices of the relocatable symbols of `addresses`, in address order (equal addresses in index order). */
export function relocatableOrder(
  count: number,
  absolute: (index: number) => boolean,
  address: (index: number) => bigint,
) {
  const order: number[] = [];
  for (let index = 0; index < count; index++) if (!absolute(index)) order.push(index);
  // Array.prototype.sort is stable: equal addresses keep index order.
  return order.sort((a, b) => {
    const [left, right] = [address(a), address(b)];
    return left < right ? -1 : left > right ? 1 : 0;
  });
}

/** The symbols of a list, indexed by name at once and by address on first use. */
export function listSymbolTable(list: readonly ProfileSymbol[]): SymbolTable {
  const byName = symbolsByName(list);
  let sorted: ProfileSymbol[] | undefined;
  const byAddress = () =>
    (sorted ??= relocatableOrder(
      list.length,
      (index) => list[index]!.absolute,
      (index) => list[index]!.address,
    ).map((index) => list[index]!));
  return {
    list,
    named: (name) => byName.get(name),
    get relocatableCount() {
      return byAddress().length;
    },
    relocatableAt: (rank) => byAddress()[rank]!,
    relocatableAddress: (rank) => byAddress()[rank]!.address,
  };
}
