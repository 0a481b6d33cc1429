import { AlignedWordSearcher, WORD_BYTES } from './alignedWords.js';
import { MultiNeedleSearcher, type NeedleHit, type SearcherOptions } from './multiNeedle.js';
import type { StreamedSearch } from './streaming.js';

/** A physical or buffer search for needles, by byte strings or by aligned words: what a scan thread runs. */
export type NeedleSearcher = StreamedSearch<NeedleHit>;

export interface NeedleSearcherOptions extends SearcherOptions {
  /**
   * The needles are 8-byte little-endian words wanted only at offsets that are multiples of 8
   * (pointers a structure holds): AlignedWordSearcher finds them in one pass at memory speed.
   */
  wordAligned?: boolean;
}

export function needleSearcher(needles: readonly Uint8Array[], options: NeedleSearcherOptions = {}): NeedleSearcher {
  if (!options.wordAligned) return MultiNeedleSearcher.create(needles, options);
  const words = needles.map((needle, index) => {
    if (needle.length !== WORD_BYTES) throw new RangeError(`needle ${index} has ${needle.length} bytes, not a word`);
    return new DataView(needle.buffer, needle.byteOffset, WORD_BYTES).getBigUint64(0, true);
  });
  return AlignedWordSearcher.create(words, options);
}
