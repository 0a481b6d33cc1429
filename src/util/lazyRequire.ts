import { createRequire } from 'node:module';

/**
 * A CommonJS package loaded on first use instead of at start-up: every command pays for what
 * the bundle imports, and a package only a few commands need should cost only those. require()
 * loads it synchronously, so its callers stay synchronous (and skip the ESM loader's scan of a
 * CommonJS module's exports, which is slow on large files).
 */
export function lazyRequire<T>(specifier: string): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= createRequire(import.meta.url)(specifier) as T;
    return loaded;
  };
}
