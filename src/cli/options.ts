import { InvalidArgumentError } from 'commander';

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** `2G`, `512M`, `1.5GiB`, `1048576`: binary units, as sizes of memory and of RAM dumps are. */
export function parseByteSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  const multiplier = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || multiplier === undefined)
    throw new InvalidArgumentError('expected a size such as 2G, 512M or a number of bytes');
  return Math.floor(Number(match[1]) * multiplier);
}
