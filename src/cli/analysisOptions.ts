import { Option, type Command } from 'commander';
import type { z } from 'zod';
import { flagName, optionMeta, type Analysis } from '../analyses/types.js';

/** The option schema under optional/default wrappers: what kind of value the flag takes. */
function valueType(schema: z.ZodType): string {
  const def = (schema as unknown as { def: { type: string; innerType?: z.ZodType } }).def;
  return def.innerType && (def.type === 'optional' || def.type === 'default' || def.type === 'nullable')
    ? valueType(def.innerType)
    : def.type;
}

/** One commander option from one schema field: booleans are switches, everything else takes a value. */
export function commanderOption(key: string, schema: z.ZodType): Option {
  const meta = optionMeta(schema);
  const takesValue = valueType(schema) !== 'boolean';
  return new Option(takesValue ? `${flagName(key)} <${meta.placeholder ?? 'value'}>` : flagName(key), meta.description);
}

/** The analysis's options that are flags (not positional arguments), by key. */
export function flagOptions(analysis: Analysis): Array<[string, z.ZodType]> {
  return Object.entries(analysis.options.shape as Record<string, z.ZodType>).filter(
    ([key]) => !analysis.arguments.includes(key),
  );
}

/** Adds the analysis's positional arguments and flags to its command, generated from its declarations. */
export function addAnalysisOptions(command: Command, analysis: Analysis): Command {
  const shape = analysis.options.shape as Record<string, z.ZodType>;
  for (const key of analysis.arguments) command.argument(`<${key}>`, optionMeta(shape[key]!).description);
  for (const [key, schema] of flagOptions(analysis)) command.addOption(commanderOption(key, schema));
  return command;
}

/** What the user gave for the analysis: positional arguments and flags by key (unset flags left out). */
export function givenOptions(
  analysis: Analysis,
  positional: readonly unknown[],
  flags: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  analysis.arguments.forEach((key, index) => (given[key] = positional[index]));
  for (const [key] of flagOptions(analysis)) if (flags[key] !== undefined) given[key] = flags[key];
  return given;
}

/** Each flag key of any of the analyses, once, with the first analysis declaring it. */
function sharedFlags(analyses: readonly Analysis[]): Map<string, { analysis: Analysis; schema: z.ZodType }> {
  const flags = new Map<string, { analysis: Analysis; schema: z.ZodType }>();
  for (const analysis of analyses)
    for (const [key, schema] of flagOptions(analysis)) if (!flags.has(key)) flags.set(key, { analysis, schema });
  return flags;
}

/** The keys of every analysis's flags: what `batch` collects for the analyses it runs. */
export function sharedOptionKeys(analyses: readonly Analysis[]): string[] {
  return [...sharedFlags(analyses).keys()];
}

/** Every analysis's flags on one command (`batch`): each analysis later takes the ones it declares. */
export function addSharedAnalysisOptions(command: Command, analyses: readonly Analysis[]): void {
  for (const [key, { analysis, schema }] of sharedFlags(analyses)) {
    const option = commanderOption(key, schema);
    command.addOption(new Option(option.flags, `${option.description} (${analysis.name})`));
  }
}
