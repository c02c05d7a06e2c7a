/**
 * The context every library call receives: where state lives, which security
 * checks the user switched off, and where diagnostics and progress go. The
 * library never prints; it reports through `debug` and `progress`, which the
 * CLI wires to stderr and a TTY display.
 */
import { GantryError } from './errors.js';

/** rkt's --insecure-options vocabulary. */
export const INSECURE_OPTIONS = [
  'none', 'http', 'tls', 'image', 'pubkey', 'capabilities', 'paths', 'seccomp',
  'ondisk', 'all-fetch', 'all-run', 'all',
] as const;
export type InsecureOption = (typeof INSECURE_OPTIONS)[number];
/** The individual checks an insecure option can switch off. */
export type InsecureCheck = 'http' | 'tls' | 'image' | 'pubkey' | 'capabilities' | 'paths' | 'seccomp' | 'ondisk';

const FETCH_CHECKS: InsecureCheck[] = ['http', 'tls', 'image', 'pubkey'];
const RUN_CHECKS: InsecureCheck[] = ['capabilities', 'paths', 'seccomp'];

/** Parses `--insecure-options=a,b` into the set of disabled checks. */
export function parseInsecureOptions(value: string): Set<InsecureCheck> {
  const checks = new Set<InsecureCheck>();
  for (const raw of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(INSECURE_OPTIONS as readonly string[]).includes(raw)) {
      throw new GantryError('USAGE', `unknown --insecure-options value "${raw}"`, {
        hint: `use a comma-separated list of: ${INSECURE_OPTIONS.join(', ')}`,
      });
    }
    const option = raw as InsecureOption;
    if (option === 'none') continue;
    if (option === 'all-fetch') FETCH_CHECKS.forEach((c) => checks.add(c));
    else if (option === 'all-run') RUN_CHECKS.forEach((c) => checks.add(c));
    else if (option === 'all') [...FETCH_CHECKS, ...RUN_CHECKS, 'ondisk' as const].forEach((c) => checks.add(c));
    else checks.add(option);
  }
  return checks;
}

/** Progress events for long work; the CLI renders them on a TTY. */
export type ProgressEvent =
  | { kind: 'start'; id: string; label: string; total?: number }
  | { kind: 'advance'; id: string; bytes: number }
  | { kind: 'phase'; id: string; phase: 'downloading' | 'verifying' | 'unpacking' | 'done' | 'cached' }
  | { kind: 'message'; text: string };

export type ProgressSink = (event: ProgressEvent) => void;

export interface Context {
  /** State directory (--dir), default /var/lib/gantry. */
  readonly dir: string;
  /** Local configuration directory (--local-config), default /etc/gantry. */
  readonly localConfig: string;
  /** Directory holding registries.conf etc., default /etc/containers (tests override it). */
  readonly containersConfig: string;
  /** Checks switched off by --insecure-options. */
  readonly insecure: ReadonlySet<InsecureCheck>;
  /** Diagnostics for --debug; a no-op otherwise. */
  readonly debug: (message: string) => void;
  /** Warnings the user must see even without --debug (e.g. an unverified image). */
  readonly warn: (message: string) => void;
  readonly progress: ProgressSink;
}

export interface ContextOptions {
  dir?: string;
  localConfig?: string;
  containersConfig?: string;
  insecure?: Iterable<InsecureCheck>;
  debug?: (message: string) => void;
  warn?: (message: string) => void;
  progress?: ProgressSink;
}

/** Builds a context with gantry's defaults; the library's entry point for embedders. */
export function createContext(options: ContextOptions = {}): Context {
  return {
    dir: options.dir ?? '/var/lib/gantry',
    localConfig: options.localConfig ?? '/etc/gantry',
    containersConfig: options.containersConfig ?? process.env.GANTRY_CONTAINERS_CONFIG ?? '/etc/containers',
    insecure: new Set(options.insecure ?? []),
    debug: options.debug ?? (() => {}),
    warn: options.warn ?? (() => {}),
    progress: options.progress ?? (() => {}),
  };
}
