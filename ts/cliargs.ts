/** The command line as the official entrypoint reads it: `yolo26 [TASK] MODE key=value ...`. */
import fs from 'node:fs';
import YAML from 'yaml';
import type { z } from 'zod';
import { OptionError } from './errors.js';
import { exportSchema, predictSchema, suggest, trackSchema, trainSchema, valSchema } from './options.js';

export const TASKS = ['detect', 'segment', 'classify', 'pose', 'obb'] as const;
export type Task = (typeof TASKS)[number];
/** Modes that run work (with their option schema) and the utility modes. */
export const MODES = ['train', 'val', 'predict', 'track', 'export', 'info', 'demo', 'doctor', 'version', 'help'] as const;
export type Mode = (typeof MODES)[number];

/** The model YAML a TASK positional picks for training when no model= is given (the official TASK2MODEL, unweighted). */
export const TASK_MODEL: Record<Task, string> = {
  detect: 'yolo26n.yaml',
  segment: 'yolo26n-seg.yaml',
  classify: 'yolo26n-cls.yaml',
  pose: 'yolo26n-pose.yaml',
  obb: 'yolo26n-obb.yaml',
};

/** Flags this CLI knows besides the help ones (--json: machine-readable doctor/info output). */
const FLAGS = new Set(['json', 'version']);
const HELP_WORDS = new Set(['help', '-h', '--help']);

type Schema = z.ZodObject<z.ZodRawShape>;
const SCHEMAS: Partial<Record<Mode, Schema>> = {
  train: trainSchema as unknown as Schema,
  demo: trainSchema as unknown as Schema,
  val: valSchema as unknown as Schema,
  predict: predictSchema as unknown as Schema,
  track: trackSchema as unknown as Schema,
  export: exportSchema as unknown as Schema,
};

/** The option schema of a mode (null for the utility modes). */
export function modeSchema(mode: string): Schema | null {
  return SCHEMAS[mode as Mode] ?? null;
}

/**
 * Converts one CLI value as the official CLI does: None/null, true/false (any case), numbers, [lists] and
 * comma-separated numbers, else the string (quotes removed).
 */
export function parseValue(raw: string): unknown {
  const v = raw.trim();
  const lower = v.toLowerCase();
  if (lower === 'none' || lower === 'null') return null;
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) return Number(v);
  if (/^[[(].*[\])]$/.test(v)) {
    const inner = v.slice(1, -1).trim();
    return inner === '' ? [] : inner.split(',').map((p) => parseValue(p.trim().replace(/^['"]|['"]$/g, '')));
  }
  if (/^[-+\d.eE]+(,[-+\d.eE]+)+$/.test(v)) {
    const parts = v.split(',').map(parseValue);
    if (parts.every((p) => typeof p === 'number')) return parts;
  }
  return v.replace(/^['"]|['"]$/g, '');
}

/**
 * A parsed value made to fit the option's schema where the text allows it, as upstream: `name=123` stays the
 * string '123' for a string option (also from a cfg file), a single number for a list option becomes [n]. Values that fit stay as they are
 * (validation and its messages happen in the mode).
 */
function fitToSchema(field: z.ZodType | undefined, raw: string | null, value: unknown): unknown {
  if (!field || field.safeParse(value).success) return value;
  const text = raw !== null ? raw.trim().replace(/^['"]|['"]$/g, '') : typeof value === 'number' ? String(value) : null;
  if (text !== null && field.safeParse(text).success) return text;
  if (!Array.isArray(value) && field.safeParse([value]).success) return [value];
  return value;
}

function isBooleanOption(field: z.ZodType | undefined): boolean {
  return !!field && field.safeParse(true).success && !field.safeParse('x').success && !field.safeParse(1).success;
}

export interface ParsedArgs {
  mode: string;
  /** The TASK positional (or task=), when given. */
  task: Task | null;
  options: Record<string, unknown>;
  flags: Set<string>;
  /** help, -h or --help was given: print help for `mode` and do nothing else. */
  help: boolean;
  /** Notes for the user (the mode defaulted, cfg= keys this mode ignores). */
  notes: string[];
}

/** Reads cfg=custom.yaml: a map of option overrides, as the official `cfg` argument. */
function loadCfg(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new OptionError(`cfg=${file}: cannot read the file (${(e as Error).message})`, 'cfg');
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new OptionError(`cfg=${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`, 'cfg');
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new OptionError(`cfg=${file} must be a map of option: value lines`, 'cfg');
  return doc as Record<string, unknown>;
}

/**
 * Splits argv into TASK, MODE, key=value options (typed as upstream), bare booleans and --flags. Words may come in
 * any order; MODE defaults to predict (as upstream, with a note). `cfg=file.yaml` replaces the options given before
 * it with the file's, later ones override it. Throws OptionError for anything it cannot place.
 */
export function parseArgs(argv: string[]): ParsedArgs {
  // key, how it was given, its text (key=value only), value
  const raw: Array<{ key: string; from: 'kv' | 'bare' | 'flag' | 'cfg'; text: string | null; value: unknown }> = [];
  const flags = new Set<string>();
  const notes: string[] = [];
  let mode: string | null = null;
  let task: string | null = null;
  const help = argv.some((a) => HELP_WORDS.has(a));
  for (const arg of argv) {
    if (HELP_WORDS.has(arg)) continue;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--')) {
      const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
      if (eq < 0 && FLAGS.has(name)) {
        flags.add(name);
        continue;
      }
      // --key=value and --key are read as key=value and key (as upstream) when key is an option; others are errors.
      if (eq > 0) raw.push({ key: name, from: 'kv', text: arg.slice(eq + 1), value: parseValue(arg.slice(eq + 1)) });
      else raw.push({ key: name, from: 'flag', text: null, value: true });
      continue;
    }
    if (eq > 0) {
      const key = arg.slice(0, eq).trim();
      const text = arg.slice(eq + 1);
      if (text.trim() === '') throw new OptionError(`argument '${arg}' has no value after '=' (example: ${key}=...)`, key);
      if (key === 'cfg') {
        if (help) continue; // help does no work, reading files included
        raw.length = 0;
        for (const [k, v] of Object.entries(loadCfg(text.trim()))) if (k !== 'cfg') raw.push({ key: k, from: 'cfg', text: null, value: v });
      } else {
        raw.push({ key, from: 'kv', text, value: parseValue(text) });
      }
      continue;
    }
    if (eq === 0) throw new OptionError(`argument '${arg}' has no key before '=' (example: epochs=10)`, arg);
    if ((TASKS as readonly string[]).includes(arg)) task = arg;
    else if ((MODES as readonly string[]).includes(arg)) mode = arg;
    else raw.push({ key: arg, from: 'bare', text: null, value: true }); // true for boolean options, checked below
  }

  const options: Record<string, unknown> = {};
  for (const { key, value } of raw) {
    if (key === 'task') task = String(value);
    else if (key === 'mode') mode = String(value);
    else options[key] = value;
  }
  if (task !== null && !(TASKS as readonly string[]).includes(task))
    throw new OptionError(`unknown task '${task}': use one of ${TASKS.join(', ')}`, 'task');
  if (mode === null) {
    mode = help ? 'help' : Object.keys(options).length === 0 && flags.size === 0 ? 'help' : 'predict';
    if (mode === 'predict') notes.push(`no mode given: running 'predict' (modes: ${MODES.join(', ')})`);
  } else if (!(MODES as readonly string[]).includes(mode)) {
    throw new OptionError(`unknown mode '${mode}': use one of ${MODES.join(', ')}`, 'mode');
  }
  if (help) return { mode, task: task as Task | null, options, flags, help, notes };

  const schema = modeSchema(mode);
  const shape = (schema?.shape ?? {}) as Record<string, z.ZodType>;
  const accepted = Object.keys(shape);
  const ignored: string[] = [];
  for (const { key, from, text, value } of raw) {
    if (key === 'task' || key === 'mode') continue;
    const field = shape[key];
    if (!field && schema && from === 'cfg') {
      ignored.push(key); // a copied full default.yaml holds every mode's keys
      delete options[key];
      continue;
    }
    if (from === 'bare' || from === 'flag') {
      const given = from === 'flag' ? `flag '--${key}'` : `argument '${key}'`;
      if (!field) {
        const hint = suggest(key, accepted);
        throw new OptionError(
          `unknown ${given}${hint ? `: did you mean '${hint}'?` : ''} (options are key=value; run 'yolo26 ${mode} --help' for the list)`,
          key,
        );
      }
      if (!isBooleanOption(field)) {
        const d = field.safeParse(undefined);
        throw new OptionError(`${given} is missing '=' and a value (example: ${key}=${d.success && d.data != null ? String(d.data) : '...'})`, key);
      }
    }
    if (from === 'kv' || from === 'cfg') options[key] = fitToSchema(field, text, value);
  }
  if (ignored.length) notes.push(`cfg: ${mode} does not use ${ignored.join(', ')}; ignored`);
  if (task && mode === 'train' && options.model === undefined) options.model = TASK_MODEL[task as Task];
  return { mode, task: task as Task | null, options, flags, help, notes };
}

/** `yolo26 MODE --help`: the mode's options with their defaults, from its schema. */
export function optionsHelp(mode: string): string {
  const schema = modeSchema(mode);
  if (!schema) return '';
  const shape = schema.shape as Record<string, z.ZodType>;
  const rows = Object.keys(shape).map((k) => {
    const d = shape[k].safeParse(undefined);
    const def = d.success ? (d.data === undefined ? '' : JSON.stringify(d.data)) : '(required)';
    return `  ${k.padEnd(18)} ${def}`;
  });
  return `Options for ${mode} (key=value; bare key = true for booleans; cfg=file.yaml loads overrides):\n${rows.join('\n')}`;
}
