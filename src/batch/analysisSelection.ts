import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { findAnalysis } from '../analyses/registry.js';
import { optionMeta, type Analysis } from '../analyses/types.js';
import { VmscopeError } from '../util/errors.js';
import { loadPortableAnalyses, type PortableAnalysis } from './portableAnalyses.js';

/**
 * What a batch runs on every dump: analyses by name and the options given for them. Nothing
 * here knows an analysis: what each takes, which options name files (whose contents matter to
 * a rerun and travel with queued jobs) and what its rows are, all come from its declaration.
 */
export interface AnalysisSelection {
  readonly analyses: readonly string[];
  /** Options by key (`rules`, `threads`, ...); each analysis gets those it declares. */
  readonly options: Readonly<Record<string, unknown>>;
  /** Analyses carried as data (WASI plugins), run by name like the others. */
  readonly portable?: readonly PortableAnalysis[];
}

/** The analyses of a selection, each with its validated options; usage errors before any work. */
export function resolveSelection(
  selection: AnalysisSelection,
): Array<{ analysis: Analysis; options: Record<string, unknown> }> {
  if (selection.analyses.length === 0) throw new VmscopeError('USAGE', 'no analysis to run (--run check,pslist,...)');
  const carried = loadPortableAnalyses(selection.portable);
  return [...new Set(selection.analyses)].map((name) => {
    const analysis = carried.find((candidate) => candidate.name === name) ?? findAnalysis(name);
    if (!analysis) throw new VmscopeError('USAGE', `unknown analysis "${name}"`);
    if (analysis.arguments.length > 0)
      throw new VmscopeError('USAGE', `${name} needs arguments and cannot run in a batch`);
    return { analysis, options: analysis.parseOptions(ownOptions(analysis, selection.options)) };
  });
}

/** The options the analysis declares, out of all given. */
function ownOptions(analysis: Analysis, options: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).filter(([key, value]) => value !== undefined && key in analysis.options.shape),
  );
}

/** The keys of options that name files, among the selected analyses' declarations. */
function fileOptionKeys(selection: AnalysisSelection): Set<string> {
  const keys = new Set<string>();
  for (const { analysis } of resolveSelection(selection)) {
    for (const [key, schema] of Object.entries(analysis.options.shape))
      if (optionMeta(schema as never).file) keys.add(key);
  }
  return keys;
}

/**
 * The options that matter to the selected analyses (others dropped, so an unused `--rules`
 * does not make a rerun other work), file paths made absolute.
 */
export function relevantOptions(selection: AnalysisSelection): Record<string, unknown> {
  const files = fileOptionKeys(selection);
  const relevant: Record<string, unknown> = {};
  for (const { options } of resolveSelection(selection)) {
    for (const [key, value] of Object.entries(options))
      relevant[key] = files.has(key) && typeof value === 'string' ? resolve(value) : value;
  }
  return relevant;
}

/** The contents of every file option, by key: what a queued job carries, since workers elsewhere have no copy. */
export function fileOptionContents(selection: AnalysisSelection): Record<string, { name: string; text: string }> {
  const files = fileOptionKeys(selection);
  const relevant = relevantOptions(selection);
  const contents: Record<string, { name: string; text: string }> = {};
  for (const key of files) {
    const path = relevant[key];
    if (typeof path !== 'string') continue;
    try {
      contents[key] = { name: path, text: readFileSync(path, 'utf8') };
    } catch (error) {
      throw new VmscopeError('USAGE', `cannot read ${key} file: ${(error as Error).message}`, path);
    }
  }
  return contents;
}

/**
 * What determines the results besides the dump: the analyses, their options and the content
 * of the files they name (edited rules are other work; a moved rule file is not).
 */
export function selectionKey(selection: AnalysisSelection): string {
  const files = fileOptionContents(selection);
  const options = Object.fromEntries(
    Object.entries(relevantOptions(selection))
      .filter(([key]) => !(key in files))
      .sort(([a], [b]) => a.localeCompare(b)),
  );
  const contents = Object.fromEntries(
    Object.entries(files).map(([key, file]) => [key, createHash('sha256').update(file.text).digest('hex')]),
  );
  return createHash('sha256')
    .update(
      JSON.stringify({
        analyses: [...new Set(selection.analyses)].sort(),
        options,
        files: contents,
        // Only when there are any: keys of batches without plugins stay what they were.
        ...(selection.portable?.length
          ? { plugins: selection.portable.map(({ name, sha256 }) => [name, sha256]) }
          : {}),
      }),
    )
    .digest('hex');
}
