import { VmscopeError } from '../util/errors.js';
import type { IsfDocument, IsfMetadataItem, IsfSymbol, IsfTypeDescriptor, IsfTypes, IsfUserType } from './isf.js';
import { listSymbolTable, type SymbolTable } from './symbolTable.js';
import type { SymbolTypeEntry, SymbolTypeSource } from './symbolTypes.js';

export interface ProfileSymbol {
  readonly name: string;
  /** Where the symbol is in this dump (KASLR applied), or the plain value of an absolute symbol. */
  readonly address: bigint;
  /** The /proc/kallsyms type letter, when the source knows it (kallsyms does, an ISF does not). */
  readonly type: string | undefined;
  /** Absolute values (per-CPU offsets and the like) do not move with KASLR. */
  readonly absolute: boolean;
}

/** Where a profile came from: a user's ISF file, the dump itself, or the on-disk cache of a derived one. */
export type ProfileOrigin = 'isf' | 'derived' | 'cache';

/** What a profile derived from a dump was built from: named in its ISF metadata, kept in the cache with it. */
export interface ProfileSources {
  /** How the kallsyms tables were located in memory. */
  readonly kallsyms: 'vmcoreinfo' | 'scan';
  readonly btf: { readonly sha256: string; readonly bytes: number };
}

/** What a profile knows beyond types and symbols. */
export interface ProfileDetails {
  /** Data symbols' types, by name (functions are typed from their kallsyms letter). */
  readonly symbolTypes?: ReadonlyMap<string, SymbolTypeEntry>;
  readonly sources?: ProfileSources;
  /** Names of the enums whose stored text holds a string, when the types are stored as text (the cache). */
  readonly enumsMentioning?: (text: string) => readonly string[];
}

export interface ResolvedField {
  readonly offset: number;
  readonly type: IsfTypeDescriptor;
}

/** Kernel-half addresses move with KASLR; anything below is an absolute value. */
const KERNEL_HALF = 0xffff800000000000n;
const U64 = (1n << 64n) - 1n;
/** Anonymous members nest a few levels in real kernels; a bound keeps a hostile ISF from recursing forever. */
const MAX_ANONYMOUS_DEPTH = 16;

/**
 * Symbols and type layouts of one kernel build, whatever their source. Addresses are kept as
 * this dump sees them; `slide` converts to and from link-time addresses (what ISF stores).
 */
export class Profile {
  private readonly symbols: SymbolTable;
  private readonly enumConstantsByPrefix = new Map<string, ReadonlyMap<string, bigint>>();
  /**
   * Fields found, by type and path: readers ask for the same few (a task's pid, a list's next)
   * thousands of times, and each search goes through the types' records. The types are not
   * edited once a profile is made (a changed layout is a new profile).
   */
  private readonly fields = new Map<string, Map<string, ResolvedField>>();

  constructor(
    readonly types: IsfTypes,
    /** A list (derived, ISF) or a table read on demand (cache). */
    symbols: readonly ProfileSymbol[] | SymbolTable,
    readonly slide: bigint,
    readonly origin: ProfileOrigin,
    /** Named in errors: the ISF file or the dump the profile was derived from. */
    readonly source: string,
    readonly banner: string | undefined,
    readonly details: ProfileDetails = {},
  ) {
    this.symbols = Array.isArray(symbols) ? listSymbolTable(symbols) : (symbols as SymbolTable);
  }

  /** Every symbol, in the order of its source. */
  get symbolList(): readonly ProfileSymbol[] {
    return this.symbols.list;
  }

  symbol(name: string): bigint | undefined {
    return this.symbols.named(name)?.address;
  }

  requireSymbol(name: string): bigint {
    const address = this.symbol(name);
    if (address === undefined) throw new VmscopeError('NO_PROFILE', `the profile has no symbol "${name}"`, this.source);
    return address;
  }

  /** Rank, in address order, of the first relocatable symbol above `address`. */
  private firstAbove(address: bigint): number {
    let low = 0;
    let high = this.symbols.relocatableCount;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.symbols.relocatableAddress(middle) <= address) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The nearest symbol at or below `address`, and how far past it the address is. */
  symbolAt(address: bigint): { symbol: ProfileSymbol; offset: bigint } | undefined {
    const rank = this.firstAbove(address) - 1;
    if (rank < 0) return undefined;
    const symbol = this.symbols.relocatableAt(rank);
    return { symbol, offset: address - symbol.address };
  }

  /** The first symbol above `address`: where an object ends whose size kallsyms does not record. */
  symbolAfter(address: bigint): ProfileSymbol | undefined {
    const rank = this.firstAbove(address);
    return rank < this.symbols.relocatableCount ? this.symbols.relocatableAt(rank) : undefined;
  }

  /** The relocatable symbols in [start, end), in address order (aliases in list order): only those are built. */
  symbolsBetween(start: bigint, end: bigint): ProfileSymbol[] {
    const found: ProfileSymbol[] = [];
    for (let rank = this.firstAbove(start - 1n); rank < this.symbols.relocatableCount; rank++) {
      // Built before it is compared (one past the range is built for nothing): asking for the address
      // first would compute it twice, and a whole kernel's worth of bigint arithmetic shows.
      const symbol = this.symbols.relocatableAt(rank);
      if (symbol.address >= end) break;
      found.push(symbol);
    }
    return found;
  }

  /** Every symbol starting exactly at `address` (aliases share addresses). */
  symbolsAt(address: bigint): ProfileSymbol[] {
    const found: ProfileSymbol[] = [];
    for (
      let rank = this.firstAbove(address) - 1;
      rank >= 0 && this.symbols.relocatableAddress(rank) === address;
      rank--
    )
      found.push(this.symbols.relocatableAt(rank));
    return found.reverse();
  }

  /** The type of a data symbol, and where it came from, when the profile knows it. */
  symbolType(name: string): SymbolTypeEntry | undefined {
    return this.details.symbolTypes?.get(name);
  }

  /**
   * Every enum constant whose name starts with `prefix`, across all enums (a later enum's value
   * wins). A cached profile decodes only the enums whose text holds the prefix, not all of them;
   * each prefix is looked up once per profile (a live monitor asks at every check).
   */
  enumConstants(prefix: string): ReadonlyMap<string, bigint> {
    let found = this.enumConstantsByPrefix.get(prefix);
    if (!found) this.enumConstantsByPrefix.set(prefix, (found = this.findEnumConstants(prefix)));
    return found;
  }

  private findEnumConstants(prefix: string): Map<string, bigint> {
    const { enumsMentioning } = this.details;
    const candidates =
      enumsMentioning && /^\w+$/.test(prefix) ? enumsMentioning(prefix) : Object.keys(this.types.enums);
    const found = new Map<string, bigint>();
    for (const name of candidates) {
      for (const [constant, value] of Object.entries(this.types.enums[name]!.constants))
        if (constant.startsWith(prefix)) found.set(constant, BigInt(value));
    }
    return found;
  }

  /** A struct or union by name. Names are looked up as own keys only: `__proto__` or `toString` name no type. */
  type(name: string): IsfUserType | undefined {
    return ownEntry(this.types.user_types, name);
  }

  /** Size of a struct/union, base type or enum. */
  sizeOf(name: string): number {
    const size =
      ownEntry(this.types.user_types, name)?.size ??
      ownEntry(this.types.base_types, name)?.size ??
      ownEntry(this.types.enums, name)?.size;
    if (size === undefined) throw new VmscopeError('NO_PROFILE', `the profile has no type "${name}"`, this.source);
    return size;
  }

  /**
   * A field by name, looking through anonymous members (as C does), or a dotted path
   * ("mm.pgd" is not a path: pointers are not followed; "se.vruntime" is).
   */
  field(typeName: string, path: string): ResolvedField {
    let known = this.fields.get(typeName);
    if (!known) this.fields.set(typeName, (known = new Map()));
    let found = known.get(path);
    if (!found) known.set(path, (found = this.resolveField(typeName, path)));
    return found;
  }

  private resolveField(typeName: string, path: string): ResolvedField {
    let current: ResolvedField = { offset: 0, type: { kind: 'struct', name: typeName } };
    for (const part of path.split('.')) {
      const container = current.type;
      if (container.kind !== 'struct' && container.kind !== 'union' && container.kind !== 'class') {
        throw new VmscopeError(
          'NO_PROFILE',
          `"${path}" of ${typeName}: "${part}" is not inside a struct or union`,
          this.source,
        );
      }
      const found = this.memberOf(container.name, part, 0);
      if (!found)
        throw new VmscopeError('NO_PROFILE', `${container.kind} ${container.name} has no field "${part}"`, this.source);
      current = { offset: current.offset + found.offset, type: found.type };
    }
    return current;
  }

  offsetOf(typeName: string, path: string): number {
    return this.field(typeName, path).offset;
  }

  hasField(typeName: string, path: string): boolean {
    try {
      this.field(typeName, path);
      return true;
    } catch (error) {
      if (error instanceof VmscopeError) return false;
      throw error;
    }
  }

  private memberOf(typeName: string, name: string, depth: number): ResolvedField | undefined {
    const type = ownEntry(this.types.user_types, typeName);
    if (!type) throw new VmscopeError('NO_PROFILE', `the profile has no type "${typeName}"`, this.source);
    const direct = ownEntry(type.fields, name);
    if (direct) return direct;
    if (depth >= MAX_ANONYMOUS_DEPTH) return undefined;
    for (const member of Object.values(type.fields)) {
      if (!member.anonymous || (member.type.kind !== 'struct' && member.type.kind !== 'union')) continue;
      const inner = this.memberOf(member.type.name, name, depth + 1);
      if (inner) return { offset: member.offset + inner.offset, type: inner.type };
    }
    return undefined;
  }

  /**
   * Volatility ISF for this profile: link-time addresses, linux_banner's bytes as constant_data,
   * each data symbol's type where known, and metadata naming where symbols and types came from.
   */
  toIsf(producerVersion: string): IsfDocument {
    const symbols: Record<string, IsfSymbol> = {};
    // Names in the order they first appear, each with the symbol it stands for.
    const seen = new Set<string>();
    for (const { name } of this.symbols.list) {
      if (seen.has(name)) continue;
      seen.add(name);
      const symbol = this.symbols.named(name)!;
      const entry: IsfSymbol = { address: symbol.absolute ? symbol.address : (symbol.address - this.slide) & U64 };
      if (symbol.type === 't' || symbol.type === 'T') entry.type = { kind: 'function' };
      else {
        const typed = this.symbolType(name);
        if (typed) entry.type = typed.type;
      }
      if (name === 'linux_banner' && this.banner !== undefined)
        entry.constant_data = Buffer.from(this.banner, 'latin1').toString('base64');
      symbols[name] = entry;
    }
    return {
      metadata: {
        format: '6.2.0',
        producer: { name: 'vmscope', version: producerVersion, datetime: new Date().toISOString() },
        linux: this.isfMetadata(),
      },
      base_types: this.types.base_types,
      user_types: this.types.user_types,
      enums: this.types.enums,
      symbols,
    };
  }

  /** Sources as ISF metadata items (schema 6 allows only kind, name and hash): the names say the rest. */
  private isfMetadata(): { symbols: IsfMetadataItem[]; types: IsfMetadataItem[] } {
    const { sources } = this.details;
    const symbols: IsfMetadataItem[] = [];
    const types: IsfMetadataItem[] = [];
    if (sources) {
      const located = sources.kallsyms === 'vmcoreinfo' ? 'located by VMCOREINFO' : 'located by a structural scan';
      symbols.push({ kind: 'symtab', name: `kallsyms from memory (${located})` });
      types.push({
        kind: 'dwarf',
        name: `vmlinux BTF from memory (${sources.btf.bytes} bytes)`,
        hash_type: 'sha256',
        hash_value: sources.btf.sha256,
      });
    } else if (this.origin === 'isf') {
      symbols.push({ kind: 'symtab', name: `ISF ${this.source}` });
      types.push({ kind: 'dwarf', name: `ISF ${this.source}` });
    }
    const bySource = new Map<SymbolTypeSource, string[]>();
    for (const [name, { source }] of this.details.symbolTypes ?? []) {
      if (!bySource.has(source)) bySource.set(source, []);
      bySource.get(source)!.push(name);
    }
    for (const [source, names] of bySource) {
      // Hundreds of variables come from BTF: a count says enough; the declared few are each named.
      const which =
        source === 'btf-datasec' || source === 'code-use' ? `${names.length} variables` : names.sort().join(' ');
      types.push({ kind: 'dwarf', name: `${SOURCE_NAMES[source]}: ${which}` });
    }
    return { symbols, types };
  }

  /** A profile from an ISF document; `slide` moves its link-time addresses to this dump's. */
  static fromIsf(document: IsfDocument, slide: bigint, origin: ProfileOrigin, source: string): Profile {
    const symbols: ProfileSymbol[] = [];
    const symbolTypes = new Map<string, SymbolTypeEntry>();
    for (const [name, entry] of Object.entries(document.symbols)) {
      if (entry.type !== undefined && entry.type.kind !== 'function')
        symbolTypes.set(name, { type: entry.type, source: 'isf' });
      const linkAddress = BigInt.asUintN(64, BigInt(entry.address));
      const absolute = linkAddress < KERNEL_HALF;
      symbols.push({
        name,
        address: absolute ? linkAddress : (linkAddress + slide) & U64,
        type: entry.type?.kind === 'function' ? 'T' : undefined,
        absolute,
      });
    }
    const bannerData = document.symbols.linux_banner?.constant_data;
    const banner =
      bannerData === undefined ? undefined : Buffer.from(bannerData, 'base64').toString('latin1').replace(/\0+$/, '');
    const types: IsfTypes = { base_types: document.base_types, user_types: document.user_types, enums: document.enums };
    return new Profile(types, symbols, slide, origin, source, banner, { symbolTypes });
  }
}

const SOURCE_NAMES: Record<SymbolTypeSource, string> = {
  'btf-datasec': 'symbol types from BTF DATASEC variables placed where kallsyms puts them',
  'code-use':
    "symbol types from kernel code passing the symbol's address to a function whose BTF prototype types that parameter, fitting the kallsyms extent",
  declared: "symbol types from kernel declarations (vmscope's table) resolved in BTF, each fitting its kallsyms extent",
  'declared-extent': 'symbol types from kernel declarations resolved in BTF, array length from the kallsyms extent',
  isf: 'symbol types from the ISF read',
};

/** `record[key]` when it is the record's own entry: names typed by a user or read from an ISF must not reach Object.prototype. */
function ownEntry<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
