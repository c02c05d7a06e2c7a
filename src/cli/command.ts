/**
 * What a subcommand module exports, and the environment it runs in. Command
 * modules parse flags and print; the work happens in the library.
 */
import type { Context } from '../context.js';
import { isGantryError, type GantryError } from '../errors.js';
import type { FlagSpecs, ParsedArgs, ParseOptions } from './args.js';

export type OutputFormat = 'text' | 'json';

export interface CliEnv {
  ctx: Context;
  format: OutputFormat;
  debug: boolean;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** stdout is a terminal: progress and tables for humans. */
  interactive: boolean;
}

export interface Command {
  name: string;
  usage: string;
  summary: string;
  flags: FlagSpecs;
  parseOptions?: ParseOptions;
  /** Returns the process exit code. */
  run(args: ParsedArgs, env: CliEnv): Promise<number>;
}

/** A command with subcommands (`gantry image list`). */
export interface CommandGroup {
  name: string;
  summary: string;
  subcommands: Record<string, () => Promise<Command>>;
}

export function writeJson(env: CliEnv, value: unknown): void {
  env.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** A GantryError on stderr, as main reports one (JSON with --format json). */
/** How a GantryError is shown on stderr: a JSON object with --format json, else message and hint. */
export function errorText(err: GantryError, json: boolean): string {
  if (json) return JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint } }) + '\n';
  return `gantry: error: ${err.message}\n${err.hint ? `  hint: ${err.hint}\n` : ''}`;
}

export function writeError(env: CliEnv, err: GantryError): void {
  env.stderr.write(errorText(err, env.format === 'json'));
}

/**
 * Runs `fn` for each argument in turn (rm, stop of several pods): a
 * GantryError for one is reported and the others still run. Returns the
 * first failure's exit code, else 0; any other error stops at once.
 */
export async function forEachArg(env: CliEnv, items: string[], fn: (item: string) => Promise<void>): Promise<number> {
  let first: GantryError | undefined;
  for (const item of items) {
    try {
      await fn(item);
    } catch (err) {
      if (!isGantryError(err)) throw err;
      writeError(env, err);
      first ??= err;
    }
  }
  return first ? first.exitCode : 0;
}

/** Prints rows as an aligned table with a header. */
export function writeTable(env: CliEnv, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  env.stdout.write([line(header), ...rows.map(line)].join('\n') + '\n');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/** "sha256:0123456789abcdef..." -> "0123456789ab" (the short ID shown in listings). */
export function shortId(digest: string): string {
  const hex = digest.slice(digest.indexOf(':') + 1);
  return hex.slice(0, 12);
}
