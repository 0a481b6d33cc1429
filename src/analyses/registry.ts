import { bpfAnalysis } from './bpf.js';
import { checkAnalysis } from './check.js';
import { envarsAnalysis } from './envars.js';
import { lsofAnalysis } from './lsof.js';
import { malfindAnalysis } from './malfind.js';
import { mapsAnalysis } from './maps.js';
import { sockstatAnalysis } from './sockstat.js';
import { credsAnalysis } from './creds.js';
import { dmesgAnalysis } from './dmesg.js';
import { ftraceAnalysis } from './ftrace.js';
import { hiddenModulesAnalysis } from './hiddenModules.js';
import { idtAnalysis } from './idt.js';
import { infoAnalysis } from './info.js';
import { kallsymsAnalysis } from './kallsyms.js';
import { kernelTextAnalysis } from './kernelText.js';
import { kprobesAnalysis } from './kprobes.js';
import { lsmodAnalysis } from './lsmod.js';
import { netfilterAnalysis } from './netfilter.js';
import { procHooksAnalysis } from './procHooks.js';
import { psauxAnalysis } from './psaux.js';
import { psscanAnalysis } from './psscan.js';
import { pslistAnalysis } from './pslist.js';
import { pstreeAnalysis } from './pstree.js';
import { psxviewAnalysis } from './psxview.js';
import { syscallsAnalysis } from './syscalls.js';
import { typesAnalysis } from './typeLayout.js';
import { yarascanAnalysis } from './yarascan.js';
import { VmscopeError } from '../util/errors.js';
import type { Analysis } from './types.js';

/** Every analysis, in the order `--help` lists them; registerAnalysis adds more. */
const registered: Analysis[] = [
  infoAnalysis,
  pslistAnalysis,
  pstreeAnalysis,
  psauxAnalysis,
  psscanAnalysis,
  psxviewAnalysis,
  lsmodAnalysis,
  hiddenModulesAnalysis,
  syscallsAnalysis,
  sockstatAnalysis,
  mapsAnalysis,
  malfindAnalysis,
  envarsAnalysis,
  lsofAnalysis,
  ftraceAnalysis,
  kprobesAnalysis,
  bpfAnalysis,
  netfilterAnalysis,
  kernelTextAnalysis,
  idtAnalysis,
  procHooksAnalysis,
  credsAnalysis,
  dmesgAnalysis,
  checkAnalysis,
  yarascanAnalysis,
  kallsymsAnalysis,
  typesAnalysis,
];

export const analyses: readonly Analysis[] = registered;

export function findAnalysis(name: string): Analysis | undefined {
  return registered.find((analysis) => analysis.name === name);
}

/**
 * Adds an analysis (a library user's, a plugin's) to every place that lists them: the CLI
 * built afterwards, `batch --run`, and queue workers that register it too.
 */
export function registerAnalysis(analysis: Analysis): void {
  if (findAnalysis(analysis.name))
    throw new VmscopeError('USAGE', `an analysis named "${analysis.name}" is registered already`);
  registered.push(analysis);
}
