import { checkAnalysis } from './check.js';
import { hiddenModulesAnalysis } from './hiddenModules.js';
import { infoAnalysis } from './info.js';
import { kallsymsAnalysis } from './kallsyms.js';
import { lsmodAnalysis } from './lsmod.js';
import { psauxAnalysis } from './psaux.js';
import { psscanAnalysis } from './psscan.js';
import { pslistAnalysis } from './pslist.js';
import { pstreeAnalysis } from './pstree.js';
import { psxviewAnalysis } from './psxview.js';
import { syscallsAnalysis } from './syscalls.js';
import { typesAnalysis } from './typeLayout.js';
import { yarascanAnalysis } from './yarascan.js';
import type { Analysis } from './types.js';

/** Every analysis, in the order `--help` lists them. */
export const analyses: readonly Analysis[] = [
  infoAnalysis,
  pslistAnalysis,
  pstreeAnalysis,
  psauxAnalysis,
  psscanAnalysis,
  psxviewAnalysis,
  lsmodAnalysis,
  hiddenModulesAnalysis,
  syscallsAnalysis,
  checkAnalysis,
  yarascanAnalysis,
  kallsymsAnalysis,
  typesAnalysis,
];

export function findAnalysis(name: string): Analysis | undefined {
  return analyses.find((analysis) => analysis.name === name);
}
