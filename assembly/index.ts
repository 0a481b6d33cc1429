export { findNeedles } from './multiNeedle';
export { filterAtoms } from './atomFilter';
export { decodeTable } from './pageTables';
export { findWordsInRange } from './alignedWords';
