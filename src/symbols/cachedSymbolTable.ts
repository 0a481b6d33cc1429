import { isAscii } from 'node:buffer';
import type { ProfileSymbol } from './profile.js';
import { relocatableOrder, type SymbolTable } from './symbolTable.js';

const U64 = (1n << 64n) - 1n;

const isAsciiString = (text: string) => /^[\x00-\x7f]*$/.test(text);
const compareStrings = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The symbol columns of a profile cache file (profileCacheFormat.ts), already bounds-checked by
 * the decoder: every name end within the names, every index of the two orders below `count`.
 */
export interface SymbolColumns {
  readonly count: number;
  /** Link-time addresses (plain values for absolute symbols). */
  readonly addresses: DataView;
  /** UTF-8 end of each name in `names` (names are concatenated in list order). */
  readonly nameEnds: Uint32Array;
  /** The kallsyms letter's code per symbol, 0 when unknown. */
  readonly letters: Uint8Array;
  readonly absolute: Uint8Array;
  readonly names: Buffer;
  /** The symbol each distinct name stands for (see SymbolTable.named), ordered by the name's UTF-8 bytes. */
  readonly byName: Uint32Array;
  /** The relocatable symbols by link-time address, equal addresses in list order. */
  readonly byAddress: Uint32Array;
}

/**
 * Symbols read from the cache file's columns as they are asked for: a name is found by binary
 * search over the names in byte order, an address over the link-time order. Only the symbols
 * asked for are built, and the whole list only when a caller wants it (kallsyms, ISF export).
 */
export function cachedSymbolTable(columns: SymbolColumns, slide: bigint): SymbolTable {
  const { count, addresses, nameEnds, letters, absolute, names, byName } = columns;
  const built: Array<ProfileSymbol | undefined> = new Array<ProfileSymbol | undefined>(count);
  let list: ProfileSymbol[] | undefined;

  const nameStart = (index: number) => (index === 0 ? 0 : nameEnds[index - 1]!);
  // Kernel symbol names are ASCII: then one string of all names is cut where the byte offsets say, which is far
  // cheaper than decoding each name on its own (tens of thousands when a command walks every function).
  const asciiNames = isAscii(names) ? names.toString('latin1') : undefined;
  const nameOf = (index: number) =>
    asciiNames !== undefined
      ? asciiNames.slice(nameStart(index), nameEnds[index])
      : names.toString('utf8', nameStart(index), nameEnds[index]);
  const address = (index: number) => {
    const linkAddress = addresses.getBigUint64(index * 8, true);
    return absolute[index] === 1 ? linkAddress : (linkAddress + slide) & U64;
  };
  const symbol = (index: number): ProfileSymbol =>
    (built[index] ??= {
      name: nameOf(index),
      address: address(index),
      type: letters[index] === 0 ? undefined : String.fromCharCode(letters[index]!),
      absolute: absolute[index] === 1,
    });

  // A slide that carries some addresses past 2^64 (and not others) reorders them: sort again then.
  const crossesWrap = () => {
    if (columns.byAddress.length === 0) return false;
    const lowest = addresses.getBigUint64(columns.byAddress[0]! * 8, true) + slide;
    const highest = addresses.getBigUint64(columns.byAddress[columns.byAddress.length - 1]! * 8, true) + slide;
    return lowest >> 64n !== highest >> 64n;
  };
  const byAddress = crossesWrap()
    ? Uint32Array.from(relocatableOrder(count, (index) => absolute[index] === 1, address))
    : columns.byAddress;

  return {
    get list() {
      list ??= Array.from({ length: count }, (_, index) => symbol(index));
      return list;
    },
    named(name) {
      // With ASCII names on both sides, string order is byte order: no buffer per lookup, no native call per step.
      const ascii = asciiNames !== undefined && isAsciiString(name);
      if (asciiNames !== undefined && !ascii) return undefined; // no ASCII name equals it
      const wanted = ascii ? undefined : Buffer.from(name, 'utf8');
      let low = 0;
      let high = byName.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        const index = byName[middle]!;
        // Below 0: the symbol's name sorts before the one wanted.
        const order = wanted
          ? names.compare(wanted, 0, wanted.length, nameStart(index), nameEnds[index])
          : compareStrings(nameOf(index), name);
        if (order === 0) return symbol(index);
        if (order < 0) low = middle + 1;
        else high = middle;
      }
      return undefined;
    },
    relocatableCount: byAddress.length,
    relocatableAt: (rank) => symbol(byAddress[rank]!),
    relocatableAddress: (rank) => address(byAddress[rank]!),
  };
}
