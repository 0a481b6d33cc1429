import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { readRange, type ScannedUnit } from '../unit.js';
import { fn, type Module, type ModuleType, type Value } from './types.js';

/**
 * yara's `hash` module: digests as lowercase hex text and the crc32/checksum32 integers, over a
 * range of the unit (clipped at its end, undefined when it starts outside) or over a string.
 */

interface Digest {
  update(bytes: Uint8Array): void;
  result(): Value;
}

const hexDigest = (algorithm: string) => (): Digest => {
  const hash = createHash(algorithm);
  return { update: (bytes) => hash.update(bytes), result: () => hash.digest('hex') };
};

function crc32Digest(): Digest {
  let value = 0;
  return { update: (bytes) => (value = crc32(bytes, value)), result: () => BigInt(value >>> 0) };
}

/** The sum of the bytes as a uint32. */
function checksum32Digest(): Digest {
  let value = 0;
  return {
    update: (bytes) => {
      for (const byte of bytes) value = (value + byte) >>> 0;
    },
    result: () => BigInt(value),
  };
}

function digestFunction(make: () => Digest, returns: 'string' | 'integer'): ModuleType {
  return fn(
    {
      args: ['integer', 'integer'],
      returns,
      run: ([offset, size], unit: ScannedUnit) => {
        const digest = make();
        return readRange(unit, offset as bigint, size as bigint, (chunk) => digest.update(chunk))
          ? digest.result()
          : undefined;
      },
    },
    {
      args: ['string'],
      returns,
      run: ([text]) => {
        const digest = make();
        digest.update(Buffer.from(text as string, 'latin1'));
        return digest.result();
      },
    },
  );
}

export const hashModule: Module = {
  name: 'hash',
  load: () => ({}),
  type: {
    kind: 'struct',
    fields: {
      md5: digestFunction(hexDigest('md5'), 'string'),
      sha1: digestFunction(hexDigest('sha1'), 'string'),
      sha256: digestFunction(hexDigest('sha256'), 'string'),
      crc32: digestFunction(crc32Digest, 'integer'),
      checksum32: digestFunction(checksum32Digest, 'integer'),
    },
  },
};
