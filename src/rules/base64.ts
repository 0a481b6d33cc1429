/**
 * What yara searches for a `base64` string: the text encoded at each of the three alignments it
 * can have in a longer encoded stream, keeping only the characters that do not depend on the
 * bytes around it (yara's base64.c). For "This program cannot": `VGhpcyBwcm9ncmFtIGNhbm5vd`,
 * `RoaXMgcHJvZ3JhbSBjYW5ub3`, `UaGlzIHByb2dyYW0gY2Fubm90`.
 */
export function base64Forms(text: Uint8Array, alphabet: Uint8Array): Uint8Array[] {
  return [0, 1, 2].map((shift) => {
    const bytes = new Uint8Array(shift + text.length);
    bytes.set(text, shift);
    const encoded: number[] = [];
    for (let bit = 0; bit + 6 <= bytes.length * 8; bit += 6) {
      let sextet = 0;
      for (let i = 0; i < 6; i++) sextet = (sextet << 1) | ((bytes[(bit + i) >> 3]! >> (7 - ((bit + i) & 7))) & 1);
      encoded.push(alphabet[sextet]!);
    }
    // Characters holding bits of the shift's leading bytes depend on what precedes the text.
    return Uint8Array.from(encoded.slice([0, 2, 3][shift]));
  });
}
