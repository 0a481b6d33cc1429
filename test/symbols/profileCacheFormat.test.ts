import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { pslistAnalysis } from '../../src/analyses/pslist.js';
import type { IsfTypes } from '../../src/symbols/isf.js';
import { Profile } from '../../src/symbols/profile.js';
import { encodeProfile, loadProfile, saveProfile } from '../../src/symbols/profileCache.js';
import { decodePayload, encodePayload } from '../../src/symbols/profileCacheFormat.js';
import { isVmscopeError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';

/** Cache files are attacker-reachable: whatever their bytes, a load is a profile or a typed refusal. */
const work = mkdtempSync(join(tmpdir(), 'vmscope-cache-format-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const SLIDE = 0x1a000000n;
const types: IsfTypes = {
  base_types: { int: { kind: 'int', size: 4, signed: true, endian: 'little' } },
  user_types: {
    task_struct: {
      kind: 'struct',
      size: 64,
      fields: {
        pid: { type: { kind: 'base', name: 'int' }, offset: 8 },
        tasks: { type: { kind: 'struct', name: 'list_head' }, offset: 16 },
      },
    },
    list_head: {
      kind: 'struct',
      size: 16,
      fields: { next: { type: { kind: 'pointer', subtype: { kind: 'struct', name: 'list_head' } }, offset: 0 } },
    },
  },
  enums: {
    pid_type: { size: 4, base: 'int', constants: { PIDTYPE_PID: 0, PIDTYPE_MAX: 4 } },
    wide: { size: 8, base: 'long unsigned int', constants: { HUGE: 0xffffffffffffff00n, SMALL: 1 } },
  },
};
// A type named __proto__ (a literal key would set the prototype instead): the cache keeps it as a name like any other.
Object.defineProperty(types.user_types, '__proto__', {
  value: { kind: 'union', size: 8, fields: {} },
  enumerable: true,
  writable: true,
  configurable: true,
});
const symbols = [
  { name: 'init_task', address: 0xffffffff82a0c940n + SLIDE, type: 'D', absolute: false },
  { name: 'fixed_percpu_data', address: 0n, type: 'A', absolute: true },
  { name: 'café_é', address: 0xffffffff81000000n + SLIDE, type: undefined, absolute: false },
  { name: '', address: 0xffffffff81000010n + SLIDE, type: 't', absolute: false },
];
const small = new Profile(types, symbols, SLIDE, 'derived', 'small.elf', 'Linux version 6.1.0-test', {
  symbolTypes: new Map([['init_task', { type: { kind: 'struct', name: 'task_struct' }, source: 'btf-datasec' }]]),
  sources: { kallsyms: 'vmcoreinfo', btf: { sha256: '00'.repeat(32), bytes: 1234 } },
});
const encoded = encodePayload(
  small.symbolList,
  SLIDE,
  small.types,
  [['init_task', { kind: 'struct', name: 'task_struct' }, 'btf-datasec']],
  null,
);

/** Reads every value a profile user could reach. */
function touchEverything(payload: ReturnType<typeof decodePayload>): void {
  for (const { name } of payload.symbols.list) payload.symbols.named(name);
  for (let rank = 0; rank < payload.symbols.relocatableCount; rank++) payload.symbols.relocatableAt(rank);
  for (const record of [payload.types.user_types, payload.types.enums]) {
    for (const name of Object.keys(record)) expect(typeof record[name]).toBe('object');
    JSON.stringify(Object.values(record), (_key, value: unknown) =>
      typeof value === 'bigint' ? String(value) : value,
    );
  }
}

describe('profile cache format', () => {
  it('gives back the symbols and types it was given, bigints, odd names and all', () => {
    const decoded = decodePayload(encoded, 'small.profile', SLIDE);
    expect(decoded.symbols.list).toEqual(symbols);
    for (const symbol of symbols) expect(decoded.symbols.named(symbol.name)).toEqual(symbol);
    expect(decoded.symbols.named('café')).toBeUndefined();
    expect(decoded.types).toEqual(types);
    expect(Object.hasOwn(decoded.types.user_types, '__proto__')).toBe(true);
    expect(decoded.types.user_types.__proto__).toEqual({ kind: 'union', size: 8, fields: {} });
    expect(Object.hasOwn(decoded.types.user_types, 'toString')).toBe(false);
    expect(decoded.types.enums.wide!.constants.HUGE).toBe(0xffffffffffffff00n);
    expect(() => {
      (decoded.types.user_types as Record<string, unknown>).task_struct = {};
    }).toThrow(TypeError);
  });

  it('finds every name of an all-ASCII table as the list does, and no name it lacks (ASCII or not)', () => {
    // All-ASCII names are searched as strings: their order must be the byte order the file is sorted in.
    const letters = fc.constantFrom(...'AZ_az09.$ ~\x01\x7f'.split(''));
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ name: fc.string({ unit: letters, maxLength: 6 }), local: fc.boolean(), at: fc.nat(1 << 20) }),
          { minLength: 1, maxLength: 40 },
        ),
        fc.array(fc.string({ unit: fc.constantFrom(...'AZ_az09.é'.split('')), maxLength: 6 }), { maxLength: 10 }),
        (entries, probes) => {
          const list = entries.map(({ name, local, at }) => ({
            name,
            address: 0xffffffff81000000n + BigInt(at) + SLIDE,
            type: local ? 't' : 'T',
            absolute: false,
          }));
          const fromList = new Profile(types, list, SLIDE, 'derived', 'ascii.elf', undefined);
          const decoded = decodePayload(encodePayload(list, SLIDE, types, [], null), 'ascii.profile', SLIDE);
          for (const name of [...list.map((symbol) => symbol.name), ...probes]) {
            const address = fromList.symbol(name);
            expect(decoded.symbols.named(name)?.address).toBe(address);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('any change to the payload decodes to a payload or a typed refusal, never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat()),
        (flips, cut) => {
          const mutated = Buffer.from(encoded);
          for (const [at, byte] of flips) mutated[at % mutated.length] = byte;
          const bytes = cut === null ? mutated : mutated.subarray(0, cut % mutated.length);
          try {
            touchEverything(decodePayload(bytes, 'mutated.profile', SLIDE));
          } catch (error) {
            if (!isVmscopeError(error)) throw error;
            expect(error.describe()).toContain('mutated.profile');
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('a changed file that keeps a valid checksum is still refused or decoded, through loadProfile', () => {
    const cacheDir = join(work, 'crafted');
    const fingerprint = { btfSha256: 'b'.repeat(64), kallsymsSha256: 'k'.repeat(64) };
    expect(saveProfile(cacheDir, small.banner!, encodeProfile(small), undefined, fingerprint)).toBeUndefined();
    const [name] = readdirSync(cacheDir);
    const path = join(cacheDir, name!);
    const original = readFileSync(path);
    const newline = original.indexOf(0x0a);
    const header = JSON.parse(original.toString('utf8', 0, newline)) as { payload_sha256: string };
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (flips) => {
          const payload = Buffer.from(original.subarray(newline + 1));
          for (const [at, byte] of flips) payload[at % payload.length] = byte;
          header.payload_sha256 = createHash('sha256').update(payload).digest('hex');
          writeFileSync(path, Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), payload]));
          const found = loadProfile(cacheDir, small.banner!, undefined, SLIDE, 'crafted.elf', () => fingerprint);
          if (found.profile) {
            for (const record of [found.profile.types.user_types, found.profile.types.enums]) {
              try {
                Object.values(record);
              } catch (error) {
                if (!isVmscopeError(error)) throw error;
              }
            }
          } else expect(found.warnings).toHaveLength(1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a corrupt cache file is reported, passed over, and replaced by the derivation', async () => {
    const cacheDir = join(work, 'corrupt');
    const dump = fixturePath('linux61-clean', 'elf');
    const first = new DumpContext(dump, { cacheDir });
    const expected = (await pslistAnalysis.run(first)).rows;
    first.close();
    const [name] = readdirSync(cacheDir);
    const path = join(cacheDir, name!);
    const file = readFileSync(path);
    file[file.length - 1000]! ^= 0x20;
    writeFileSync(path, file);

    const second = new DumpContext(dump, { cacheDir });
    try {
      expect((await second.profile()).origin).toBe('derived');
      expect(second.kernel.warnings).toContainEqual(
        expect.stringMatching(/^profile cache: ignored .*CORRUPT_STRUCTURE: the payload does not match its checksum/),
      );
      expect((await pslistAnalysis.run(second)).rows).toEqual(expected);
    } finally {
      second.close();
    }

    const third = new DumpContext(dump, { cacheDir });
    try {
      expect((await third.profile()).origin).toBe('cache');
      expect(third.kernel.warnings.filter((warning) => warning.startsWith('profile cache'))).toEqual([]);
      expect((await pslistAnalysis.run(third)).rows).toEqual(expected);
    } finally {
      third.close();
    }
  });
});
