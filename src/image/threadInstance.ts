/**
 * This thread's instance of a decoding kernel with room for `needed` bytes: `current` when it has
 * that room, else a new one (`make`) whose room doubles from the current one's (or `initial`)
 * until it does. Instances are made again rarely: a dump's pages or chunks are all one size.
 */
export function instanceWithRoom<T extends { readonly capacity: number }>(
  current: T | undefined,
  needed: number,
  initial: number,
  make: (capacity: number) => T,
): T {
  if (current && current.capacity >= needed) return current;
  let capacity = Math.max(initial, current?.capacity ?? 0);
  while (capacity < needed) capacity *= 2;
  return make(capacity);
}
