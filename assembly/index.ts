export { findNeedles } from './multiNeedle';
