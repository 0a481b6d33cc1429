import fc from 'fast-check';

/** Memory-like bytes: runs of zeros, repeated words, and noise, so every snappy element kind appears. */
export const memoryLike = fc
  .array(
    fc.oneof(
      fc.integer({ min: 1, max: 3000 }).map((length) => new Uint8Array(length)),
      fc
        .tuple(fc.uint8Array({ minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 400 }))
        .map(([word, times]) => {
          const out = new Uint8Array(word.length * times);
          for (let i = 0; i < times; i++) out.set(word, i * word.length);
          return out;
        }),
      fc.uint8Array({ minLength: 1, maxLength: 2000 }),
    ),
    { maxLength: 40 },
  )
  .map((parts) => {
    const out = new Uint8Array(
      Math.min(
        65536,
        parts.reduce((sum, part) => sum + part.length, 0),
      ),
    );
    let at = 0;
    for (const part of parts) {
      if (at >= out.length) break;
      out.set(part.subarray(0, out.length - at), at);
      at += part.length;
    }
    return out;
  });
