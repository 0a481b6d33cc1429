import { compileProgram, PikeVm } from './pikeVm.js';
import { parseRegex } from './regex.js';

/** A regular expression that finds a match anywhere in a text, in time linear in the text whatever the pattern. */
export interface SearchRegex {
  readonly source: string;
  test(text: string): boolean;
  toString(): string;
}

export class SearchRegexError extends Error {}

/**
 * For patterns written by an operator and run against text an attacker controls (a policy's
 * regexes against a guest's argv): the rules' regex dialect (classes, quantifiers, anchors,
 * alternation; no backreferences or lookaround) on the Pike VM, which cannot backtrack, where a
 * JavaScript RegExp like /^(\w+\s?)*$/ could be made to run for hours by a crafted argv. The
 * text is matched as latin1 bytes, as the guest's strings are read.
 */
export function compileSearchRegex(source: string): SearchRegex {
  const fail = (offset: number, message: string): never => {
    throw new SearchRegexError(`${message} (at ${offset})`);
  };
  let vm: PikeVm;
  try {
    vm = new PikeVm(compileProgram(parseRegex(source, { caseInsensitive: false, dotAll: false }, fail)));
  } catch (error) {
    if (error instanceof RangeError) throw new SearchRegexError(error.message);
    throw error;
  }
  return {
    source,
    test: (text) => vm.matchEnds(Buffer.from(text, 'latin1')).includes(1),
    toString: () => `/${source}/`,
  };
}
