import { elfModule } from './elf.js';
import { hashModule } from './hash.js';
import { mathModule } from './math.js';
import type { Module } from './types.js';

/** The modules rules may import: pure functions of the scanned bytes. */
export const MODULES: ReadonlyMap<string, Module> = new Map(
  [mathModule, hashModule, elfModule].map((module) => [module.name, module]),
);
