/** One `yara -s` report: the matching rules in output order, each with its string lines. */
export interface YaraRuleReport {
  readonly rule: string;
  readonly strings: ReadonlyArray<{ readonly string: string; readonly offset: number; readonly data: string }>;
}

/**
 * Parses `yara -s` output: a `rule_name input` line per matching rule, then one
 * `0xOFFSET:$id: data` line per string match, data as yara prints it (printable ASCII as is,
 * other bytes as `\xNN`; hex strings as spaced uppercase hex pairs).
 */
export function parseYaraOutput(text: string): YaraRuleReport[] {
  const reports: Array<{ rule: string; strings: Array<{ string: string; offset: number; data: string }> }> = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const stringLine = /^0x([0-9a-f]+):(\$[A-Za-z0-9_]*): (.*)$/.exec(line);
    const current = reports[reports.length - 1];
    if (stringLine) {
      if (!current) throw new Error(`string line before any rule line: ${line}`);
      current.strings.push({ string: stringLine[2]!, offset: parseInt(stringLine[1]!, 16), data: stringLine[3]! });
      continue;
    }
    const ruleLine = /^([A-Za-z_][A-Za-z0-9_]*) \S/.exec(line);
    if (!ruleLine) throw new Error(`unrecognised yara output line: ${line}`);
    reports.push({ rule: ruleLine[1]!, strings: [] });
  }
  return reports;
}

/** Bytes as yara -s prints a text or regex string's match. */
export function yaraTextData(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) =>
    byte >= 32 && byte <= 126 ? String.fromCharCode(byte) : `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`,
  ).join('');
}

/** yara -s prints at most this many bytes of a hex string's match, then "...". */
const MAX_PRINTED_HEX_BYTES = 64;

/** Bytes as yara -s prints a hex string's match. */
export function yaraHexData(bytes: Uint8Array): string {
  const printed = Array.from(bytes.subarray(0, MAX_PRINTED_HEX_BYTES), (byte) =>
    byte.toString(16).toUpperCase().padStart(2, '0'),
  ).join(' ');
  return bytes.length > MAX_PRINTED_HEX_BYTES ? `${printed} ...` : printed;
}
