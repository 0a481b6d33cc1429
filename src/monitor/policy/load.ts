import { dirname, resolve } from 'node:path';
import type * as Yaml from 'yaml';
import type { Document } from 'yaml';
import { type z } from 'zod';
import { readInputFile } from '../../util/files.js';
import { lazyRequire } from '../../util/lazyRequire.js';
import { PolicyError, type Policy, type PolicyProblem } from './model.js';
import { policySchema } from './schema.js';

// Loading: YAML (JSON is YAML) → document with positions → zod → located problems.

/** The YAML parser, loaded by the commands that read a policy only. */
const yaml = lazyRequire<typeof Yaml>('yaml');

export interface ParseOptions {
  /** Where `signatures.rules_file` paths are relative to (default: the policy file's folder). */
  readonly baseDir?: string;
}

/** A policy is a page or two of YAML: a larger file is refused before YAML parses (and expands) it. */
export const MAX_POLICY_BYTES = 1 << 20;

/** Reads and validates a policy file; throws PolicyError (or VmscopeError when unreadable). */
export function loadPolicy(path: string): Policy {
  return parsePolicy(readInputFile(path, 'policy', MAX_POLICY_BYTES).toString('utf8'), path);
}

/** Validates policy text; `file` names it in errors. Throws PolicyError, and nothing else, on bad input. */
export function parsePolicy(text: string, file = '<policy>', options: ParseOptions = {}): Policy {
  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };

  if (document.errors.length > 0) {
    // yaml's own messages already say what is wrong; its position is the offending token.
    throw new PolicyError(
      file,
      document.errors.map((error) => ({
        ...at(error.pos[0]),
        path: '',
        message: `YAML: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
      })),
    );
  }

  let value: unknown;
  try {
    value = document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // toJS refuses alias bombs (ReferenceError) and the like: still the user's input.
    throw new PolicyError(file, [
      { ...at(0), path: '', message: `YAML: ${error instanceof Error ? error.message : String(error)}` },
    ]);
  }

  const result = policySchema(options.baseDir ?? dirname(resolve(file))).safeParse(value);
  if (!result.success) throw new PolicyError(file, problemsOf(result.error.issues, value, document, at));
  return { file, version: result.data.version, rules: result.data.rules };
}

/** The absolute paths of every rules file the policy's `signatures` rules use, each once. */
/** The plugins a policy's `plugin_findings` rules name: what the summary must run. */
export function policyPluginNames(policy: Policy): string[] {
  return [
    ...new Set(policy.rules.flatMap((rule) => (rule.check.kind === 'plugin_findings' ? rule.check.plugins : []))),
  ];
}

export function policyRulesFiles(policy: Policy): string[] {
  const files = policy.rules.flatMap((rule) => (rule.check.kind === 'signatures' ? [rule.check.rulesFile] : []));
  return [...new Set(files)];
}

type Segment = PropertyKey;

function problemsOf(
  issues: readonly z.core.$ZodIssue[],
  value: unknown,
  document: Document,
  at: (offset: number) => { line: number; column: number },
): PolicyProblem[] {
  // A typo'd key shows up twice — unknown, and the required key it was meant to be missing — so
  // missing-key issues in an object that also has unknown keys are left out: one problem, one error.
  const withUnknownKeys = new Set(
    issues.filter((issue) => issue.code === 'unrecognized_keys').map((issue) => pathKey(issue.path)),
  );
  const located: Array<PolicyProblem & { offset: number }> = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        located.push({
          offset: locate(document, path, true),
          path: pathText(path),
          message: `unknown key "${key}" ${issue.message.replace(/^unknown key /, '')}`,
          line: 0,
          column: 0,
        });
      }
      continue;
    }
    const missing = isMissingKey(value, issue.path);
    if (missing && withUnknownKeys.has(pathKey(issue.path.slice(0, -1)))) continue;
    // Likewise a whole-object refinement ("names at least one of …") of an object with a typo'd key.
    if (issue.code === 'custom' && withUnknownKeys.has(pathKey(issue.path))) continue;
    const message = missing ? 'required key is missing' : lowerFirst(issue.message);
    located.push({
      offset: locate(document, issue.path, false),
      path: pathText(issue.path),
      message,
      line: 0,
      column: 0,
    });
  }
  return located
    .sort((a, b) => a.offset - b.offset)
    .map(({ offset, path, message }) => ({ ...at(offset), path, message }));
}

/** Whether `path` names a key its object lacks (zod words that per type: "expected string", "expected one of"). */
function isMissingKey(value: unknown, path: readonly Segment[]): boolean {
  if (path.length === 0 || typeof path[path.length - 1] !== 'string') return false;
  let parent: unknown = value;
  for (const segment of path.slice(0, -1)) {
    if (parent === null || typeof parent !== 'object') return false;
    parent = (parent as Record<PropertyKey, unknown>)[segment];
  }
  return (
    parent !== null &&
    typeof parent === 'object' &&
    !Array.isArray(parent) &&
    !Object.hasOwn(parent, path[path.length - 1]!)
  );
}

/**
 * The source offset of the node at `path`, or of its nearest existing ancestor (a missing key
 * is reported at the map that lacks it). `atKey` points at the key itself (unknown keys).
 */
function locate(document: Document, path: readonly Segment[], atKey: boolean): number {
  const { isAlias, isMap, isNode, isSeq } = yaml();
  let node: unknown = document.contents;
  let offset = startOf(node) ?? 0;
  for (const [index, segment] of path.entries()) {
    // Below an alias the nodes are the anchor's, elsewhere in the file: the alias is the spot that put them here.
    if (isAlias(node)) break;
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((item) => keyText(item.key) === String(segment));
      if (!pair) break;
      if (atKey && index === path.length - 1) return startOf(pair.key) ?? offset;
      // `key:` with no value still has a position: its key's.
      next = isNode(pair.value) ? pair.value : pair.key;
    } else if (isSeq(node) && typeof segment === 'number') {
      next = node.items[segment];
    }
    const start = startOf(next);
    if (start === undefined) break;
    node = next;
    offset = start;
  }
  return offset;
}

function startOf(node: unknown): number | undefined {
  return yaml().isNode(node) && node.range ? node.range[0] : undefined;
}

function keyText(key: unknown): string {
  return yaml().isScalar(key) ? String(key.value) : String(key);
}

function pathText(path: readonly Segment[]): string {
  return path
    .map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : `${i === 0 ? '' : '.'}${String(segment)}`))
    .join('');
}

function pathKey(path: readonly Segment[]): string {
  return JSON.stringify(path.map(String));
}

function lowerFirst(text: string): string {
  // zod's "Invalid input: expected string, received number" reads better after a path as "expected string, received number".
  return text.replace(/^Invalid (input|option): /, '').replace(/^./, (c) => c.toLowerCase());
}
