/**
 * A small flag parser shared by every subcommand: `--flag=value`,
 * `--flag value`, boolean `--flag` / `--flag=false`, short aliases, repeated
 * list flags, `--` ending flags. It only parses; meaning belongs to the
 * command modules.
 */
import { GantryError } from '../errors.js';

export type FlagType = 'string' | 'boolean' | 'list';

export interface FlagSpec {
  type: FlagType;
  short?: string;
  description: string;
  /** Placeholder shown in help, e.g. "DIR". */
  value?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface ParsedArgs {
  flags: Map<string, string | boolean | string[]>;
  positionals: string[];
  /** Everything after a literal `--`, untouched. */
  rest: string[];
  /** Whether a literal `--` was present. */
  sawDoubleDash: boolean;
}

export interface ParseOptions {
  /** Stop at the first positional: the remaining args belong to something else (e.g. an app's argv). */
  stopAtPositional?: boolean;
  /** Leave unknown flags in positionals instead of failing (used for the global pass). */
  allowUnknown?: boolean;
}

export function parseArgs(argv: string[], specs: FlagSpecs, options: ParseOptions = {}): ParsedArgs {
  const flags = new Map<string, string | boolean | string[]>();
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) if (spec.short) byShort.set(spec.short, name);

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      return { flags, positionals, rest: argv.slice(i + 1), sawDoubleDash: true };
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
    } else if (arg.startsWith('-') && arg.length === 2 && arg !== '-') {
      name = byShort.get(arg.slice(1));
      if (name === undefined && !options.allowUnknown) {
        throw new GantryError('USAGE', `unknown flag ${arg}`, { hint: 'see --help for the flags this command takes' });
      }
    }
    if (name === undefined) {
      positionals.push(arg);
      if (options.stopAtPositional) {
        return { flags, positionals: positionals.concat(argv.slice(i + 1)), rest: [], sawDoubleDash: false };
      }
      continue;
    }
    const spec = specs[name];
    if (!spec) {
      if (options.allowUnknown) {
        positionals.push(arg);
        continue;
      }
      throw new GantryError('USAGE', `unknown flag --${name}`, { hint: 'see --help for the flags this command takes' });
    }
    if (spec.type === 'boolean') {
      if (inline === undefined) flags.set(name, true);
      else if (inline === 'true' || inline === 'false') flags.set(name, inline === 'true');
      else throw new GantryError('USAGE', `flag --${name} takes true or false, not "${inline}"`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new GantryError('USAGE', `flag --${name} needs a value`);
      value = argv[++i]!;
    }
    if (spec.type === 'list') {
      const list = (flags.get(name) as string[] | undefined) ?? [];
      list.push(value);
      flags.set(name, list);
    } else {
      flags.set(name, value);
    }
  }
  return { flags, positionals, rest: [], sawDoubleDash: false };
}

export function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function boolFlag(args: ParsedArgs, name: string): boolean {
  return args.flags.get(name) === true;
}

export function listFlag(args: ParsedArgs, name: string): string[] {
  const v = args.flags.get(name);
  return Array.isArray(v) ? v : [];
}

/** Parses durations like "24h", "30m", "90s", "1h30m", "0". */
export function parseDuration(text: string, flag: string): number {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * units[m[2]!]!;
    consumed = re.lastIndex;
  }
  if (consumed !== text.length || consumed === 0) {
    throw new GantryError('USAGE', `--${flag}: "${text}" is not a duration`, { hint: 'use e.g. 30s, 10m, 24h, 1h30m' });
  }
  return total;
}

export function formatHelp(usage: string, summary: string, specs: FlagSpecs): string {
  const lines = [`Usage: ${usage}`, '', summary, ''];
  const entries = Object.entries(specs);
  if (entries.length) {
    lines.push('Flags:');
    for (const [name, spec] of entries) {
      const short = spec.short ? `-${spec.short}, ` : '    ';
      const value = spec.type === 'boolean' ? '' : `=${spec.value ?? 'VALUE'}`;
      lines.push(`  ${short}--${name}${value}`.padEnd(38) + spec.description);
    }
  }
  return lines.join('\n');
}
