/**
 * A C string from a byte field: up to the first NUL, or all `max` bytes when there is none.
 * Decoded as latin1: kernel strings are bytes, and every byte must survive to the output.
 */
export function cString(bytes: Uint8Array, from = 0, max = bytes.length - from): string {
  const field = bytes.subarray(from, from + max);
  const end = field.indexOf(0);
  return new TextDecoder('latin1').decode(end < 0 ? field : field.subarray(0, end));
}
