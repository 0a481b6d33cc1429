/**
 * A read-only record whose values are decoded on first access: a cached profile holds ten
 * thousand types of which a command reads a few dozen, and decoding them all is most of a
 * command's start-up. It behaves as a plain object for `in`, Object.hasOwn, Object.keys/values/
 * entries and JSON.stringify; names are kept in a Map, so "__proto__" or "toString" is just a
 * name. A value that fails to decode throws from `decode` (a typed error naming the file).
 */
export function lazyRecord<T>(names: readonly string[], decode: (index: number, name: string) => T): Record<string, T> {
  const indexOf = new Map<string, number>(names.map((name, index) => [name, index]));
  const decoded = new Map<string, T>();
  const value = (name: string): T => {
    let found = decoded.get(name);
    if (found === undefined) {
      found = decode(indexOf.get(name)!, name);
      decoded.set(name, found);
    }
    return found;
  };
  const known = (key: string | symbol): key is string => typeof key === 'string' && indexOf.has(key);
  return new Proxy(
    {},
    {
      get: (target, key, receiver) => (known(key) ? value(key) : Reflect.get(target, key, receiver)),
      has: (target, key) => known(key) || Reflect.has(target, key),
      ownKeys: () => [...indexOf.keys()],
      getOwnPropertyDescriptor: (_target, key) =>
        known(key) ? { value: value(key), writable: false, enumerable: true, configurable: true } : undefined,
      set: () => false,
      defineProperty: () => false,
      deleteProperty: () => false,
    },
  );
}
