#!/usr/bin/env node
/**
 * stage0 entry point: global flags, subcommand dispatch, error reporting.
 * Subcommand modules are imported only when used, so `gantry run` does not
 * pay for the code of `gantry image export`.
 */
import { createContext, parseInsecureOptions } from '../context.js';
import { EXIT_CODES, GantryError, isGantryError } from '../errors.js';
import { formatHelp, parseArgs, boolFlag, type FlagSpecs } from './args.js';
import { errorText, type CliEnv, type Command, type CommandGroup, type OutputFormat } from './command.js';
import { createProgressRenderer } from './progress.js';

export const GLOBAL_FLAGS: FlagSpecs = {
  dir: { type: 'string', value: 'DIR', description: 'state directory (default /var/lib/gantry)' },
  'local-config': { type: 'string', value: 'DIR', description: 'configuration directory: trust keys, networks, policy (default /etc/gantry)' },
  debug: { type: 'boolean', description: 'explain what happens on stderr' },
  'insecure-options': { type: 'string', value: 'LIST', description: 'checks to switch off: none,http,tls,image,pubkey,capabilities,paths,seccomp,all-fetch,all-run,all' },
  format: { type: 'string', value: 'text|json', description: 'output format of listings' },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

type Loader = () => Promise<Command | CommandGroup>;

const COMMANDS: Record<string, { summary: string; load: Loader }> = {
  fetch: { summary: 'fetch images into the store and print their IDs', load: async () => (await import('./fetch.js')).fetchCommand },
  image: { summary: 'manage images in the store (list, rm, gc, render, export, verify, ...)', load: async () => (await import('./image.js')).imageGroup },
  run: { summary: 'run a pod from one or more images', load: async () => (await import('./run.js')).runCommand },
  prepare: { summary: 'prepare a pod without running it; prints its UUID', load: async () => (await import('./prepare.js')).prepareCommand },
  'run-prepared': { summary: 'run a prepared pod', load: async () => (await import('./run-prepared.js')).runPreparedCommand },
  enter: { summary: 'run a command inside a running app', load: async () => (await import('./enter.js')).enterCommand },
  stop: { summary: 'stop running pods', load: async () => (await import('./stop.js')).stopCommand },
  list: { summary: 'list pods', load: async () => (await import('./list.js')).listCommand },
  status: { summary: 'show the status of a pod', load: async () => (await import('./status.js')).statusCommand },
  logs: { summary: 'show the output of a pod\'s apps', load: async () => (await import('./logs.js')).logsCommand },
  'cat-manifest': { summary: 'print a pod\'s manifest', load: async () => (await import('./cat-manifest.js')).catManifestCommand },
  rm: { summary: 'remove exited pods', load: async () => (await import('./rm.js')).rmCommand },
  gc: { summary: 'garbage-collect exited pods', load: async () => (await import('./gc.js')).gcCommand },
  app: { summary: 'add, start, stop or remove apps of a running pod', load: async () => (await import('./app.js')).appGroup },
  trust: { summary: 'manage the keys trusted to sign images', load: async () => (await import('./trust.js')).trustGroup },
  audit: { summary: 'show and verify the tamper-evident audit log', load: async () => (await import('./audit.js')).auditGroup },
  version: { summary: 'print the version', load: async () => (await import('./version.js')).versionCommand },
};

function isGroup(c: Command | CommandGroup): c is CommandGroup {
  return 'subcommands' in c;
}

function topHelp(): string {
  const lines = ['Usage: gantry [global flags] COMMAND [flags] [args]', '', 'gantry: a daemonless, secure, composable container runtime.', '', 'Commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(14)}${c.summary}`);
  lines.push('', formatHelp('gantry ...', 'Global flags (accepted before or after the command):', GLOBAL_FLAGS).split('\n').slice(2).join('\n'));
  return lines.join('\n') + '\n';
}

export async function main(argv: string[]): Promise<number> {
  // First pass: global flags up to the command word.
  const first = parseArgs(argv, GLOBAL_FLAGS, { stopAtPositional: true });
  const [commandName, ...commandArgv] = first.positionals;
  if (!commandName) {
    process.stdout.write(topHelp());
    return boolFlag(first, 'help') ? 0 : EXIT_CODES.USAGE;
  }
  const entry = COMMANDS[commandName];
  if (!entry) throw new GantryError('USAGE', `unknown command "${commandName}"`, { hint: 'run gantry --help for the list of commands' });

  let loaded = await entry.load();
  let rest = commandArgv;
  if (isGroup(loaded)) {
    const group = loaded;
    const [sub, ...subArgv] = commandArgv;
    const subLoader = sub === undefined ? undefined : group.subcommands[sub];
    if (!subLoader) {
      const names = Object.keys(group.subcommands).join(', ');
      if (sub === undefined || sub === '--help' || sub === '-h') {
        process.stdout.write(`Usage: gantry ${group.name} SUBCOMMAND\n\n${group.summary}\n\nSubcommands: ${names}\n`);
        return sub === undefined ? EXIT_CODES.USAGE : 0;
      }
      throw new GantryError('USAGE', `unknown subcommand "${group.name} ${sub}"`, { hint: `use one of: ${names}` });
    }
    loaded = await subLoader();
    rest = subArgv;
  }
  const command = loaded as Command;
  const specs = { ...GLOBAL_FLAGS, ...command.flags };
  const args = parseArgs(rest, specs, command.parseOptions);
  // Global flags given before the command word count too.
  for (const [k, v] of first.flags) if (!args.flags.has(k)) args.flags.set(k, v);

  if (boolFlag(args, 'help')) {
    process.stdout.write(formatHelp(command.usage, command.summary, command.flags) + '\n');
    return 0;
  }
  // A command may give --format its own meaning (image export --format aci).
  const envFlags = new Map(args.flags);
  if ('format' in command.flags) envFlags.delete('format');
  const env = makeEnv(envFlags);
  return command.run(args, env);
}

function makeEnv(flags: Map<string, string | boolean | string[]>): CliEnv {
  const get = (name: string) => {
    const v = flags.get(name);
    return typeof v === 'string' ? v : undefined;
  };
  const format = get('format') ?? 'text';
  if (format !== 'text' && format !== 'json') {
    throw new GantryError('USAGE', `--format must be text or json, not "${format}"`);
  }
  const debug = flags.get('debug') === true;
  const interactive = process.stdout.isTTY === true && format === 'text';
  const ctx = createContext({
    dir: get('dir'),
    localConfig: get('local-config'),
    insecure: parseInsecureOptions(get('insecure-options') ?? 'none'),
    debug: debug ? (m) => process.stderr.write(`gantry: debug: +${Math.round(performance.now())}ms ${m}\n`) : undefined,
    warn: (m) => process.stderr.write(`gantry: warning: ${m}\n`),
    progress: interactive && process.stderr.isTTY ? createProgressRenderer(process.stderr) : undefined,
  });
  return { ctx, format: format as OutputFormat, debug, stdout: process.stdout, stderr: process.stderr, interactive };
}

function reportError(err: unknown, json: boolean, debug: boolean): number {
  if (isGantryError(err)) {
    process.stderr.write(errorText(err, json));
    if (debug && err.cause) process.stderr.write(`gantry: debug: caused by: ${String((err.cause as Error)?.stack ?? err.cause)}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`gantry: internal error: ${e?.message ?? String(err)}\n`);
  if (debug && e?.stack) process.stderr.write(e.stack + '\n');
  else process.stderr.write('  hint: run again with --debug for details, and report it if it persists\n');
  return EXIT_CODES.INTERNAL;
}

const argv = process.argv.slice(2);
let settled = false;
// If the event loop drains while main() is still pending, some await can never
// finish: a bug, and it must not look like success.
process.on('beforeExit', () => {
  if (!settled) {
    settled = true;
    process.stderr.write('gantry: internal error: stopped with work unfinished (a promise never settled)\n');
    process.exitCode = EXIT_CODES.INTERNAL;
  }
});
main(argv).then(
  (code) => {
    settled = true;
    process.exitCode = code;
  },
  (err: unknown) => {
    settled = true;
    const json = argv.some((a, i) => a === '--format=json' || (a === '--format' && argv[i + 1] === 'json'));
    process.exitCode = reportError(err, json, argv.includes('--debug'));
  },
);
