/**
 * A C string from a byte field: up to the first NUL, or all `max` bytes when there is none.
 * Decoded as latin1: kernel strings are bytes, and every byte must survive to the output.
 */
export function cString(bytes: Uint8Array, from = 0, max = bytes.length - from): string {
  const field = bytes.subarray(from, from + max);
  const end = field.indexOf(0);
  return new TextDecoder('latin1').decode(end < 0 ? field : field.subarray(0, end));
}

/** C0 controls, DEL and the C1 controls (latin1-decoded guest bytes 0x80-0x9f: a terminal may act on them too). */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Text for a person's terminal: every control character as `\xNN`. Guest strings are the
 * attacker's: a newline in a comm would forge a table row, an ESC sequence would drive the
 * analyst's terminal. Machine output (JSON) keeps the exact bytes, escaped by JSON itself.
 */
export function escapeControl(text: string): string {
  // Nearly every cell has nothing to escape: a test is far cheaper than a replace.
  if (!CONTROL_CHARACTER.test(text)) return text;
  return text.replace(CONTROL_CHARACTERS, (character) => `\\x${character.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
