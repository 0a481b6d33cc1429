/** Output contract: addresses are lowercase `0x…` strings of the unsigned 64-bit value. */
export function hex(value: number | bigint): string {
  const unsigned = typeof value === 'bigint' ? BigInt.asUintN(64, value) : value;
  return '0x' + unsigned.toString(16);
}

export function parseHex(text: string): bigint {
  return BigInt.asUintN(64, BigInt(text.startsWith('0x') || text.startsWith('0X') ? text : '0x' + text));
}
