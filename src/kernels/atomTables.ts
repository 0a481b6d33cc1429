import {
  ATOM_ENTRIES_OFFSET,
  ATOM_ENTRY_BYTES,
  ATOM_ENTRY_ID_FIELD,
  ATOM_ENTRY_LENGTH_FIELD,
  ATOM_ENTRY_MASK_FIELD,
  ATOM_ENTRY_VALUE_FIELD,
  ATOM_PAIR_TABLE_OFFSET,
  ATOM_PREFIX_STARTS_OFFSET,
  ATOM_SINGLE_IDS_OFFSET,
  ATOM_SINGLE_STARTS_OFFSET,
  ATOM_TABLES_BYTES,
  MAX_ATOMS,
  MAX_ATOM_LENGTH,
} from './memoryMap.js';

const PAIR_COUNT = 0x10000;

/** The kernel's tables for `atoms` (layout in memoryMap.ts), ids being indices into `atoms`. */
export function buildAtomTables(atoms: readonly Uint8Array[]): Uint8Array {
  if (atoms.length > MAX_ATOMS) throw new RangeError(`${atoms.length} atoms; at most ${MAX_ATOMS} fit the atom tables`);
  atoms.forEach((atom, index) => {
    if (atom.length === 0 || atom.length > MAX_ATOM_LENGTH) {
      throw new RangeError(`atom ${index} is ${atom.length} bytes; atoms must be 1 to ${MAX_ATOM_LENGTH} bytes`);
    }
  });
  const tables = new Uint8Array(ATOM_TABLES_BYTES);
  const view = new DataView(tables.buffer);
  const setPair = (pair: number) => (tables[ATOM_PAIR_TABLE_OFFSET + pair] = 1);

  // Single-byte atoms: one id list per byte value, and every pair starting with that byte screened in.
  const singles = atoms.flatMap((atom, id) => (atom.length === 1 ? [{ byte: atom[0]!, id }] : []));
  singles.sort((a, b) => a.byte - b.byte || a.id - b.id);
  singles.forEach(({ id }, i) => view.setUint32(ATOM_SINGLE_IDS_OFFSET + 4 * i, id, true));
  writeStarts(
    view,
    ATOM_SINGLE_STARTS_OFFSET,
    256,
    singles.map(({ byte }) => byte),
  );
  for (const { byte } of singles) for (let second = 0; second < 256; second++) setPair(byte | (second << 8));

  // Longer atoms: entries grouped by their first two bytes (the u16 the kernel loads), ascending by id within a group.
  const entries = atoms.flatMap((atom, id) =>
    atom.length > 1 ? [{ pair: atom[0]! | (atom[1]! << 8), atom, id }] : [],
  );
  entries.sort((a, b) => a.pair - b.pair || a.id - b.id);
  entries.forEach(({ pair, atom, id }, i) => {
    setPair(pair);
    const entry = ATOM_ENTRIES_OFFSET + i * ATOM_ENTRY_BYTES;
    view.setUint32(
      entry + ATOM_ENTRY_VALUE_FIELD,
      atom.reduce((value, byte, at) => value + byte * 2 ** (8 * at), 0),
      true,
    );
    view.setUint32(entry + ATOM_ENTRY_MASK_FIELD, 2 ** (8 * atom.length) - 1, true);
    view.setUint32(entry + ATOM_ENTRY_LENGTH_FIELD, atom.length, true);
    view.setUint32(entry + ATOM_ENTRY_ID_FIELD, id, true);
  });
  writeStarts(
    view,
    ATOM_PREFIX_STARTS_OFFSET,
    PAIR_COUNT,
    entries.map(({ pair }) => pair),
  );
  return tables;
}

/** starts[k] = how many of the sorted `keys` are below k, for k in 0..keyCount: key k's items are [starts[k], starts[k + 1]). */
function writeStarts(view: DataView, offset: number, keyCount: number, sortedKeys: readonly number[]): void {
  let index = 0;
  for (let key = 0; key <= keyCount; key++) {
    while (index < sortedKeys.length && sortedKeys[index]! < key) index++;
    view.setUint32(offset + 4 * key, index, true);
  }
}
