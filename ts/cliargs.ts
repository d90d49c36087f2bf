/** Parsing of Ultralytics-style `key=value` command-line arguments. */
import { OptionError } from './errors.js';

/** Converts one CLI value the way the official CLI does: numbers, booleans, None, lists, else strings. */
export function parseValue(raw: string): unknown {
  const v = raw.trim();
  if (/^(true|True)$/.test(v)) return true;
  if (/^(false|False)$/.test(v)) return false;
  if (/^(none|None|null)$/.test(v)) return null;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) return Number(v);
  if (/^\[.*\]$/.test(v)) {
    const inner = v.slice(1, -1).trim();
    return inner === '' ? [] : inner.split(',').map((p) => parseValue(p.replace(/^['"]|['"]$/g, '')));
  }
  return v.replace(/^['"]|['"]$/g, '');
}

export interface ParsedArgs {
  mode: string;
  options: Record<string, unknown>;
  flags: Set<string>;
}

/** Splits argv into the mode, key=value options and --flags. */
export function parseArgs(argv: string[]): ParsedArgs {
  const [mode = 'help', ...rest] = argv;
  const options: Record<string, unknown> = {};
  const flags = new Set<string>();
  for (const arg of rest) {
    if (arg.startsWith('--')) {
      flags.add(arg.slice(2));
      continue;
    }
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new OptionError(`argument '${arg}' is not key=value (example: yolo26 train data=data.yaml epochs=10)`, arg);
    options[arg.slice(0, eq)] = parseValue(arg.slice(eq + 1));
  }
  return { mode, options, flags };
}
