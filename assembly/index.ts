export { findNeedles } from './multiNeedle';
export { filterAtoms } from './atomFilter';
