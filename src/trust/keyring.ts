/**
 * The keyring of keys trusted to sign appc images, in rkt's layout:
 *
 *   <localConfig>/trustedkeys/prefix.d/<image name prefix>/<fingerprint>
 *   <localConfig>/trustedkeys/root.d/<fingerprint>
 *
 * and the same read-only under /usr/lib/gantry/trustedkeys (keys a
 * distribution ships). Each file holds one ASCII-armored public key and is
 * named by its lowercase hex fingerprint. A prefix is an AC identifier
 * ("example.com/app"), whose grammar rules out "..", so it can be a path.
 *
 * A key trusted for "example.com" signs "example.com/app" and
 * "example.com/app/sub"; a root key signs every name. `keysForName` returns
 * all of them for one image name; trust changes write a temp file and
 * rename it, so a reader sees a key either whole or not at all. Adding a
 * key is written to the audit log here, whoever asked for it (gantry trust,
 * or --trust-keys-from-https during a fetch), so every record has one shape.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { errnoCode, GantryError } from '../errors.js';
import { readPublicKeys, type KeyInfo, type PgpKey } from './pgp.js';
import { writeFileAtomic } from '../util/fs.js';

export const SYSTEM_TRUSTED_KEYS = '/usr/lib/gantry/trustedkeys';
const AC_IDENTIFIER = /^[a-z0-9]+(?:[-._~/][a-z0-9]+)*$/;
const FINGERPRINT = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

export type KeyScope = { kind: 'prefix'; prefix: string } | { kind: 'root' };

export interface TrustedKey extends KeyInfo {
  scope: KeyScope;
  /** "local" keys are managed with gantry trust; "system" ones are shipped read-only. */
  origin: 'local' | 'system';
  path: string;
}

export function localKeyringDir(ctx: Context): string {
  return path.join(ctx.localConfig, 'trustedkeys');
}

export function scopeText(scope: KeyScope): string {
  return scope.kind === 'root' ? 'as a root key (all images)' : `for prefix "${scope.prefix}"`;
}

export function checkPrefix(prefix: string): void {
  if (!AC_IDENTIFIER.test(prefix)) {
    throw new GantryError('USAGE', `"${prefix}" is not a valid image name prefix`, {
      hint: 'a prefix is an image name or its leading part, e.g. example.com or example.com/app (lowercase letters, digits, and -._~/ between them)',
    });
  }
}

function scopeDir(base: string, scope: KeyScope): string {
  return scope.kind === 'root' ? path.join(base, 'root.d') : path.join(base, 'prefix.d', ...scope.prefix.split('/'));
}

async function readKeyFile(file: string, scope: KeyScope, origin: 'local' | 'system'): Promise<(TrustedKey & { pgp: PgpKey }) | undefined> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EISDIR') return undefined;
    throw err;
  }
  const [key] = await readPublicKeys(data, `trusted key file ${file}`);
  if (!key) return undefined;
  if (key.info.fingerprint !== path.basename(file)) {
    throw new GantryError('CONFIG_INVALID', `trusted key file ${file} holds key ${key.info.fingerprint}, not the one its name says`, {
      hint: `remove the file and trust the key again with gantry trust`,
    });
  }
  return { ...key.info, scope, origin, path: file, pgp: key };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return [];
    throw err;
  }
}

/** Walks prefix.d to find every prefix that has key files. */
async function walkPrefixes(base: string): Promise<{ prefix: string; file: string }[]> {
  const out: { prefix: string; file: string }[] = [];
  const root = path.join(base, 'prefix.d');
  // Bounded: AC identifiers are short, and a deep tree is a broken config.
  const stack: { dir: string; parts: string[] }[] = [{ dir: root, parts: [] }];
  while (stack.length > 0 && out.length < 10_000) {
    const { dir, parts } = stack.pop()!;
    if (parts.length > 32) continue;
    for (const entry of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) stack.push({ dir: path.join(dir, entry.name), parts: [...parts, entry.name] });
      else if (entry.isFile() && FINGERPRINT.test(entry.name) && parts.length > 0) out.push({ prefix: parts.join('/'), file: path.join(dir, entry.name) });
    }
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

function bases(ctx: Context): { base: string; origin: 'local' | 'system' }[] {
  const system = process.env.GANTRY_SYSTEM_TRUSTED_KEYS ?? SYSTEM_TRUSTED_KEYS;
  return [{ base: localKeyringDir(ctx), origin: 'local' }, { base: system, origin: 'system' }];
}

/** Every trusted key, local first. */
export async function listTrustedKeys(ctx: Context): Promise<TrustedKey[]> {
  const out: TrustedKey[] = [];
  for (const { base, origin } of bases(ctx)) {
    for (const name of await listDir(path.join(base, 'root.d'))) {
      if (!FINGERPRINT.test(name)) continue;
      const k = await readKeyFile(path.join(base, 'root.d', name), { kind: 'root' }, origin);
      if (k) out.push(strip(k));
    }
    for (const { prefix, file } of await walkPrefixes(base)) {
      const k = await readKeyFile(file, { kind: 'prefix', prefix }, origin);
      if (k) out.push(strip(k));
    }
  }
  return out;
}

function strip(k: TrustedKey & { pgp: PgpKey }): TrustedKey {
  const { pgp: _pgp, ...rest } = k;
  return rest;
}

/** The prefixes of an image name, longest first: a/b/c, a/b, a. */
export function namePrefixes(name: string): string[] {
  const parts = name.split('/');
  const out: string[] = [];
  for (let i = parts.length; i > 0; i--) out.push(parts.slice(0, i).join('/'));
  return out;
}

/** The keys that may sign image `name`: those of each prefix of the name, then root keys. */
export async function keysForName(ctx: Context, name: string): Promise<(TrustedKey & { pgp: PgpKey })[]> {
  const out: (TrustedKey & { pgp: PgpKey })[] = [];
  const scopes: KeyScope[] = [...namePrefixes(name).filter((p) => AC_IDENTIFIER.test(p)).map((prefix) => ({ kind: 'prefix' as const, prefix })), { kind: 'root' }];
  for (const { base, origin } of bases(ctx)) {
    for (const scope of scopes) {
      const dir = scopeDir(base, scope);
      for (const entry of await listDir(dir)) {
        if (!FINGERPRINT.test(entry)) continue;
        const k = await readKeyFile(path.join(dir, entry), scope, origin);
        if (k) out.push(k);
      }
    }
  }
  return out;
}

/**
 * Writes a key into the local keyring (replacing the same fingerprint in the
 * same scope) and records it in the audit log; `source` says where the key
 * came from (file or URL), `via` what trusted it when not `gantry trust`.
 */
export async function addTrustedKey(ctx: Context, key: PgpKey, scope: KeyScope, source: string, via?: string): Promise<TrustedKey> {
  if (scope.kind === 'prefix') checkPrefix(scope.prefix);
  if (key.info.problem !== undefined) {
    throw new GantryError('SIGNATURE_INVALID', `refusing to trust: ${key.info.problem}`, { hint: 'get a current key from the image publisher' });
  }
  const dir = scopeDir(localKeyringDir(ctx), scope);
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  const file = path.join(dir, key.info.fingerprint);
  await writeFileAtomic(file, key.armored, { mode: 0o644 });
  const { recordAudit } = await import('../audit/log.js');
  await recordAudit(ctx, 'trust-add', key.info.fingerprint, {
    scope: scope.kind === 'root' ? 'root' : scope.prefix, source, userIds: key.info.userIds, ...(via !== undefined ? { via } : {}),
  });
  return { ...key.info, scope, origin: 'local', path: file };
}

/** Removes a fingerprint from every local scope; returns what was removed. */
export async function removeTrustedKey(ctx: Context, fingerprint: string): Promise<TrustedKey[]> {
  const fp = fingerprint.toLowerCase().replace(/\s+/g, '');
  if (!FINGERPRINT.test(fp)) {
    throw new GantryError('USAGE', `"${fingerprint}" is not a key fingerprint`, { hint: 'gantry trust list shows the fingerprints (40 hex digits)' });
  }
  const removed: TrustedKey[] = [];
  for (const key of await listTrustedKeys(ctx)) {
    if (key.fingerprint !== fp) continue;
    if (key.origin === 'system') {
      throw new GantryError('USAGE', `key ${fp} is shipped in ${key.path} and cannot be removed with gantry trust rm`, { hint: 'remove the file as the system administrator' });
    }
    await fsp.rm(key.path, { force: true });
    removed.push(key);
  }
  if (removed.length === 0) {
    throw new GantryError('USAGE', `key ${fp} is not trusted`, { hint: 'gantry trust list shows the trusted keys' });
  }
  return removed;
}

/** Downloads an armored public key (at most 1 MiB); REGISTRY_ERROR unless the server answers 200. */
export async function fetchPublicKey(ctx: Context, url: string, what = 'public key'): Promise<Buffer> {
  const { httpGet } = await import('../image/appc/http.js');
  const res = await httpGet(ctx, url, { limit: 1 << 20, what });
  if (res.status !== 200) {
    throw new GantryError('REGISTRY_ERROR', `${what} ${url}: HTTP ${res.status}`, { hint: 'check the URL, or trust the key by hand from a file: gantry trust --prefix PREFIX KEYFILE' });
  }
  return res.body;
}
