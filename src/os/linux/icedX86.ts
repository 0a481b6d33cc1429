import type * as IcedX86 from 'iced-x86';
import { lazyRequire } from '../../util/lazyRequire.js';

/**
 * The iced-x86 disassembler: 0.9 MB of JavaScript and 0.8 MB of WASM, a few hundred
 * milliseconds of every command's start-up when imported, needed only by the commands that
 * disassemble (check's inline-hook judge, malfind).
 */
export const icedX86 = lazyRequire<typeof IcedX86>('iced-x86');
