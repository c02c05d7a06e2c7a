/**
 * `gantry trust`: the keys trusted to sign appc images (rkt's `rkt trust`).
 *
 *   gantry trust [--prefix PREFIX | --root] [--skip-fingerprint-review] [KEYFILE|URL...]
 *   gantry trust list [--format json]
 *   gantry trust rm FINGERPRINT...
 *
 * `trust` takes flags and key arguments directly (as rkt's did), so it is a
 * single command that dispatches on its first word rather than a group: a
 * key file literally named "list" or "rm" is given as ./list.
 */
import fsp from 'node:fs/promises';
import readline from 'node:readline';
import { GantryError } from '../errors.js';
import { boolFlag, stringFlag } from './args.js';
import { writeJson, writeTable, type CliEnv, type Command } from './command.js';

async function confirm(env: CliEnv, question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: env.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(question, resolve));
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

async function readKeyArgument(env: CliEnv, arg: string): Promise<Buffer> {
  if (/^https?:\/\//i.test(arg)) {
    const { fetchPublicKey } = await import('../trust/keyring.js');
    return fetchPublicKey(env.ctx, arg);
  }
  try {
    return await fsp.readFile(arg);
  } catch (err) {
    throw new GantryError('USAGE', `cannot read key file ${arg}: ${(err as Error).message}`, { hint: 'give an exported public key (gpg --armor --export) or an https URL' });
  }
}

async function trustAdd(args: import('./args.js').ParsedArgs, positionals: string[], env: CliEnv): Promise<number> {
  const { checkPrefix, addTrustedKey, scopeText } = await import('../trust/keyring.js');
  const { readPublicKeys } = await import('../trust/pgp.js');
  const prefix = stringFlag(args, 'prefix');
  const root = boolFlag(args, 'root');
  if ((prefix === undefined) === !root) {
    throw new GantryError('USAGE', 'say which images the key may sign: --prefix PREFIX or --root (all images)', { hint: 'e.g. gantry trust --prefix example.com/app key.asc' });
  }
  if (prefix !== undefined) checkPrefix(prefix);
  const scope = prefix !== undefined ? { kind: 'prefix' as const, prefix } : { kind: 'root' as const };
  let sources = positionals;
  if (sources.length === 0) {
    if (prefix === undefined) throw new GantryError('USAGE', 'gantry trust --root needs a key file or URL');
    const { discoverPubkeys } = await import('../image/appc/discovery.js');
    sources = (await discoverPubkeys(env.ctx, prefix)).map((k) => k.url);
    env.stderr.write(`Discovered keys for ${prefix}: ${sources.join(', ')}\n`);
  }
  const skipReview = boolFlag(args, 'skip-fingerprint-review');
  const added = [];
  for (const source of sources) {
    for (const key of await readPublicKeys(await readKeyArgument(env, source), source)) {
      env.stderr.write(`Key from ${source}:\n  fingerprint: ${key.info.fingerprint}\n${key.info.userIds.map((u) => `  user ID:     ${u}\n`).join('')}` +
        `  created:     ${key.info.created}${key.info.expires ? `\n  expires:     ${key.info.expires}` : ''}\n`);
      if (!skipReview) {
        if (process.stdin.isTTY !== true) {
          throw new GantryError('USAGE', `cannot ask whether to trust key ${key.info.fingerprint}: stdin is not a terminal`, {
            hint: 'check the fingerprint with the publisher, then run again with --skip-fingerprint-review',
          });
        }
        if (!(await confirm(env, `Trust this key ${scopeText(scope)}? [y/N] `))) {
          env.stderr.write(`Not trusting ${key.info.fingerprint}.\n`);
          continue;
        }
      }
      const stored = await addTrustedKey(env.ctx, key, scope, source);
      env.stderr.write(`Trusted key ${stored.fingerprint} ${scopeText(scope)} (${stored.path})\n`);
      added.push(stored);
    }
  }
  if (env.format === 'json') writeJson(env, added);
  else for (const k of added) env.stdout.write(`${k.fingerprint}\n`);
  return added.length > 0 ? 0 : 1;
}

async function trustList(env: CliEnv): Promise<number> {
  const { listTrustedKeys } = await import('../trust/keyring.js');
  const keys = await listTrustedKeys(env.ctx);
  if (env.format === 'json') {
    writeJson(env, keys.map((k) => ({ ...k, scope: k.scope.kind === 'root' ? 'root' : k.scope.prefix })));
    return 0;
  }
  writeTable(env, ['FINGERPRINT', 'PREFIX', 'ORIGIN', 'STATUS', 'USER IDS'], keys.map((k) => [
    k.fingerprint, k.scope.kind === 'root' ? '(root)' : k.scope.prefix, k.origin,
    k.revoked ? 'revoked' : k.problem !== undefined ? 'expired' : k.expires ? `expires ${k.expires.slice(0, 10)}` : 'valid',
    k.userIds.join(', '),
  ]));
  return 0;
}

async function trustRm(positionals: string[], env: CliEnv): Promise<number> {
  const { removeTrustedKey } = await import('../trust/keyring.js');
  const { recordAudit } = await import('../audit/log.js');
  if (positionals.length === 0) throw new GantryError('USAGE', 'gantry trust rm needs a key fingerprint', { hint: 'gantry trust list shows them' });
  for (const fp of positionals) {
    for (const removed of await removeTrustedKey(env.ctx, fp)) {
      await recordAudit(env.ctx, 'trust-rm', removed.fingerprint, { scope: removed.scope.kind === 'root' ? 'root' : removed.scope.prefix, userIds: removed.userIds });
      env.stderr.write(`Removed key ${removed.fingerprint} (${removed.path})\n`);
    }
  }
  return 0;
}

export const trustGroup: Command = {
  name: 'trust',
  usage: 'gantry trust [--prefix PREFIX | --root] [--skip-fingerprint-review] [KEYFILE|URL...] | gantry trust list | gantry trust rm FINGERPRINT',
  summary:
    'Trust an OpenPGP public key to sign appc images whose names start with PREFIX (or all images with --root). The key\'s ' +
    'fingerprint is shown and must be confirmed on a terminal. Without a key, --prefix discovers the keys through appc discovery. ' +
    '"trust list" shows the trusted keys, "trust rm" removes one.',
  flags: {
    prefix: { type: 'string', value: 'PREFIX', description: 'image name prefix the key may sign, e.g. example.com/app' },
    root: { type: 'boolean', description: 'trust the key for every image (a root key)' },
    'skip-fingerprint-review': { type: 'boolean', description: 'do not ask for confirmation (for scripts: check the fingerprint some other way!)' },
    format: { type: 'string', value: 'text|json', description: 'output format' },
  },
  async run(args, env) {
    const format = stringFlag(args, 'format');
    const e: CliEnv = format === 'json' ? { ...env, format: 'json' } : env;
    const [first, ...rest] = args.positionals;
    if (first === 'list') return trustList(e);
    if (first === 'rm') return trustRm(rest, e);
    if (first === 'add') return trustAdd(args, rest, e);
    return trustAdd(args, args.positionals, e);
  },
};
