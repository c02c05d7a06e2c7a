/**
 * containers-registries.conf(5), version 2: where an image name is pulled
 * from. Read from `${ctx.containersConfig}/registries.conf` and then
 * `registries.conf.d/*.conf` in lexical order; a later file replaces a
 * `[[registry]]` with the same prefix, replaces
 * `unqualified-search-registries` when it sets it, and overrides aliases
 * key by key.
 *
 * Supported keys: unqualified-search-registries, [[registry]] prefix /
 * location / insecure / blocked / mirror-by-digest-only,
 * [[registry.mirror]] location / insecure / pull-from-mirror, [aliases].
 * Others (short-name-mode, credential-helpers, ...) are ignored. Version 1
 * files ([registries.search] ...) are CONFIG_INVALID with a hint.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { Context } from '../../context.js';
import { GantryError, errnoCode } from '../../errors.js';
import { DOCKER_HUB, parseDockerName, type DockerReference } from '../reference.js';

export interface RegistryMirror {
  location: string;
  insecure: boolean;
  /** "all" (default), "digest-only" or "tag-only". */
  pullFromMirror: 'all' | 'digest-only' | 'tag-only';
}

export interface RegistryEntry {
  /** What names this entry applies to: "host[:port][/path]" or "*.domain". */
  prefix: string;
  /** Where the images really are; "" for wildcard prefixes (no rewrite). */
  location: string;
  insecure: boolean;
  blocked: boolean;
  mirrorByDigestOnly: boolean;
  mirrors: RegistryMirror[];
  /** The file that defined it, for messages. */
  file: string;
}

export interface RegistriesConf {
  unqualifiedSearchRegistries: string[];
  registries: RegistryEntry[];
  aliases: Record<string, string>;
  /** The files read, in order. */
  files: string[];
}

/** One place to try for a pull, in order of preference. */
export interface PullEndpoint {
  /** host[:port] to connect to ("docker.io" means the Hub). */
  registry: string;
  /** Repository path on that registry after the prefix rewrite. */
  repository: string;
  insecure: boolean;
  isMirror: boolean;
}

export function emptyRegistriesConf(): RegistriesConf {
  return { unqualifiedSearchRegistries: [], registries: [], aliases: {}, files: [] };
}

function configError(file: string, problem: string, cause?: unknown): GantryError {
  return new GantryError('CONFIG_INVALID', `${file}: ${problem}`, {
    hint: 'fix the file (see containers-registries.conf(5))',
    ...(cause !== undefined ? { cause } : {}),
  });
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function optBool(table: Record<string, unknown>, key: string, file: string, where: string): boolean | undefined {
  const v = table[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw configError(file, `${where}: "${key}" must be true or false`);
  return v;
}

function optString(table: Record<string, unknown>, key: string, file: string, where: string): string | undefined {
  const v = table[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw configError(file, `${where}: "${key}" must be a string`);
  return v.trim();
}

/** Checks "host[:port][/path]" without tag or digest. */
function validLocation(value: string): boolean {
  if (value === '' || /\s/.test(value) || value.includes('://')) return false;
  const [host, ...path] = value.split('/');
  if (!host || !/^[a-zA-Z0-9.-]+(:[0-9]+)?$|^\[[0-9a-fA-F:.]+\](:[0-9]+)?$/.test(host)) return false;
  return path.every((c) => /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(c));
}

function parseEntry(raw: unknown, file: string, index: number): RegistryEntry {
  const where = `[[registry]] #${index + 1}`;
  if (!isTable(raw)) throw configError(file, `${where} must be a table`);
  const location = optString(raw, 'location', file, where) ?? '';
  let prefix = optString(raw, 'prefix', file, where) ?? '';
  if (prefix === '') prefix = location;
  if (prefix === '') throw configError(file, `${where} needs "location" or "prefix"`);
  const wildcard = prefix.startsWith('*.');
  if (wildcard) {
    if (!/^\*\.[a-zA-Z0-9.-]+$/.test(prefix)) throw configError(file, `${where}: wildcard prefix "${prefix}" must be "*.domain" without a path`);
  } else {
    if (!validLocation(prefix)) throw configError(file, `${where}: prefix "${prefix}" is not host[:port][/path]`);
    if (location === '') throw configError(file, `${where}: prefix "${prefix}" needs a "location"`);
  }
  if (location !== '' && !validLocation(location)) throw configError(file, `${where}: location "${location}" is not host[:port][/path]`);
  const mirrorsRaw = raw.mirror;
  const mirrors: RegistryMirror[] = [];
  if (mirrorsRaw !== undefined) {
    if (!Array.isArray(mirrorsRaw)) throw configError(file, `${where}: "mirror" must be an array of tables ([[registry.mirror]])`);
    mirrorsRaw.forEach((m, i) => {
      const mw = `${where} mirror #${i + 1}`;
      if (!isTable(m)) throw configError(file, `${mw} must be a table`);
      const mloc = optString(m, 'location', file, mw) ?? '';
      if (!validLocation(mloc)) throw configError(file, `${mw}: location "${mloc}" is not host[:port][/path]`);
      const pull = optString(m, 'pull-from-mirror', file, mw) ?? 'all';
      if (pull !== 'all' && pull !== 'digest-only' && pull !== 'tag-only') {
        throw configError(file, `${mw}: pull-from-mirror must be "all", "digest-only" or "tag-only"`);
      }
      mirrors.push({ location: mloc, insecure: optBool(m, 'insecure', file, mw) ?? false, pullFromMirror: pull });
    });
  }
  return {
    prefix,
    location: wildcard ? '' : location,
    insecure: optBool(raw, 'insecure', file, where) ?? false,
    blocked: optBool(raw, 'blocked', file, where) ?? false,
    mirrorByDigestOnly: optBool(raw, 'mirror-by-digest-only', file, where) ?? false,
    mirrors,
    file,
  };
}

/** Merges one file's text into `conf`. Exported for tests and tools. */
export function mergeRegistriesConf(conf: RegistriesConf, text: string, file: string): void {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw configError(`${file}:${err.line}:${err.column}`, `invalid TOML: ${first}`, err);
    }
    throw configError(file, `cannot parse: ${(err as Error).message}`, err);
  }
  conf.files.push(file);
  if (doc.registries !== undefined && isTable(doc.registries)) {
    throw new GantryError('CONFIG_INVALID', `${file}: version 1 format ([registries.search] ...) is not supported`, {
      hint: 'convert it to version 2: unqualified-search-registries = [...] and [[registry]] tables (containers-registries.conf(5))',
    });
  }
  const search = doc['unqualified-search-registries'];
  if (search !== undefined) {
    if (!Array.isArray(search) || !search.every((s) => typeof s === 'string')) {
      throw configError(file, '"unqualified-search-registries" must be a list of strings');
    }
    for (const s of search as string[]) {
      if (!validLocation(s) || s.includes('/')) throw configError(file, `unqualified-search-registries: "${s}" is not host[:port]`);
    }
    conf.unqualifiedSearchRegistries = [...(search as string[])];
  }
  const registries = doc.registry;
  if (registries !== undefined) {
    if (!Array.isArray(registries)) throw configError(file, '"registry" must be an array of tables ([[registry]])');
    registries.forEach((r, i) => {
      const entry = parseEntry(r, file, i);
      const existing = conf.registries.findIndex((e) => e.prefix === entry.prefix);
      if (existing >= 0) conf.registries[existing] = entry;
      else conf.registries.push(entry);
    });
  }
  const aliases = doc.aliases;
  if (aliases !== undefined) {
    if (!isTable(aliases)) throw configError(file, '[aliases] must be a table');
    for (const [name, value] of Object.entries(aliases)) {
      if (typeof value !== 'string') throw configError(file, `[aliases] "${name}" must be a string`);
      try {
        const ref = parseDockerName(value);
        if (!ref.explicitRegistry) throw new Error('not fully qualified');
      } catch {
        throw configError(file, `[aliases] "${name}" = "${value}" is not a fully qualified image name`);
      }
      conf.aliases[name] = value;
    }
  }
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const errno = errnoCode(err);
    if (errno === 'ENOENT' || errno === 'ENOTDIR') return undefined;
    throw configError(file, `cannot read: ${(err as Error).message}`, err);
  }
}

/** Loads registries.conf and its drop-ins from ctx.containersConfig; missing files mean defaults. */
export function loadRegistriesConf(ctx: Pick<Context, 'containersConfig' | 'debug'>): RegistriesConf {
  const conf = emptyRegistriesConf();
  const main = join(ctx.containersConfig, 'registries.conf');
  const text = readOptional(main);
  if (text !== undefined) mergeRegistriesConf(conf, text, main);
  const dropDir = join(ctx.containersConfig, 'registries.conf.d');
  let names: string[] = [];
  try {
    names = readdirSync(dropDir).filter((n) => n.endsWith('.conf')).sort();
  } catch (err) {
    const errno = errnoCode(err);
    if (errno !== 'ENOENT' && errno !== 'ENOTDIR') throw configError(dropDir, `cannot read: ${(err as Error).message}`, err);
  }
  for (const name of names) {
    const file = join(dropDir, name);
    const t = readOptional(file);
    if (t !== undefined) mergeRegistriesConf(conf, t, file);
  }
  ctx.debug(`registries.conf: read ${conf.files.length > 0 ? conf.files.join(', ') : 'no files (defaults)'}`);
  return conf;
}

/** Length of the match of `prefix` against "registry/repository", or -1. */
function matchLength(prefix: string, registry: string, repository: string): number {
  if (prefix.startsWith('*.')) {
    const host = registry.replace(/:[0-9]+$/, '');
    return host.endsWith(prefix.slice(1)) ? prefix.length : -1;
  }
  const name = `${registry}/${repository}`;
  if (name === prefix || name.startsWith(`${prefix}/`)) return prefix.length;
  return -1;
}

/** The [[registry]] entry for a reference: longest matching prefix wins. */
function findRegistryEntry(ref: Pick<DockerReference, 'registry' | 'repository'>, conf: RegistriesConf): RegistryEntry | undefined {
  let best: RegistryEntry | undefined;
  let bestLength = -1;
  for (const entry of conf.registries) {
    const length = matchLength(entry.prefix, ref.registry, ref.repository);
    if (length > bestLength) {
      best = entry;
      bestLength = length;
    }
  }
  return best;
}

function splitLocation(location: string): { registry: string; path: string } {
  const slash = location.indexOf('/');
  return slash < 0 ? { registry: location, path: '' } : { registry: location.slice(0, slash), path: location.slice(slash + 1) };
}

function rewrite(location: string, prefix: string, ref: Pick<DockerReference, 'registry' | 'repository'>): { registry: string; repository: string } {
  const name = `${ref.registry}/${ref.repository}`;
  const rewritten = location + name.slice(prefix.length);
  const { registry, path } = splitLocation(rewritten);
  return { registry, repository: path };
}

/**
 * Where to pull `ref` from, in order: the entry's mirrors (those allowed for
 * a tag or digest pull), then its location (the reference's own registry
 * when no entry matches). REGISTRY_BLOCKED when the entry is blocked.
 */
export function resolvePullSources(ref: DockerReference, conf: RegistriesConf): PullEndpoint[] {
  const entry = findRegistryEntry(ref, conf);
  if (entry === undefined) return [{ registry: ref.registry, repository: ref.repository, insecure: false, isMirror: false }];
  if (entry.blocked) {
    throw new GantryError('REGISTRY_BLOCKED', `pulling ${ref.canonical} is blocked by ${entry.file} (registry prefix "${entry.prefix}")`, {
      hint: 'use another registry, or remove "blocked = true" from that [[registry]] entry',
    });
  }
  const endpoints: PullEndpoint[] = [];
  const byDigest = ref.digest !== undefined;
  for (const mirror of entry.mirrors) {
    if (entry.mirrorByDigestOnly && !byDigest) continue;
    if (mirror.pullFromMirror === 'digest-only' && !byDigest) continue;
    if (mirror.pullFromMirror === 'tag-only' && byDigest) continue;
    const target = entry.prefix.startsWith('*.')
      ? { ...splitLocation(`${mirror.location}/${ref.repository}`) }
      : (() => { const r = rewrite(mirror.location, entry.prefix, ref); return { registry: r.registry, path: r.repository }; })();
    endpoints.push({ registry: target.registry, repository: target.path, insecure: mirror.insecure, isMirror: true });
  }
  const primary = entry.location === '' ? { registry: ref.registry, repository: ref.repository } : rewrite(entry.location, entry.prefix, ref);
  endpoints.push({ registry: primary.registry, repository: primary.repository, insecure: entry.insecure, isMirror: false });
  for (const e of endpoints) {
    if (e.repository === '') {
      throw new GantryError('CONFIG_INVALID', `${entry.file}: rewriting ${ref.canonical} with prefix "${entry.prefix}" leaves no repository`, {
        hint: 'a location must keep at least one repository path component',
      });
    }
  }
  return endpoints;
}

/**
 * Candidate fully-qualified references for a short name ("busybox",
 * "ns/app:1"): an alias if one is defined, else one per unqualified search
 * registry (docker.io when none is configured). A qualified name is
 * returned as-is.
 */
export function expandShortName(name: string, conf: RegistriesConf): DockerReference[] {
  const parsed = parseDockerName(name);
  if (parsed.explicitRegistry) return [parsed];
  // The short name as written, without tag or digest, is the alias key.
  const bare = name.replace(/@.*$/, '').replace(/:[^/]*$/, '');
  const alias = conf.aliases[bare];
  const suffix = `${parsed.tag !== undefined ? `:${parsed.tag}` : ''}${parsed.digest !== undefined ? `@${parsed.digest}` : ''}`;
  if (alias !== undefined) {
    const aliasRef = parseDockerName(alias);
    // A tag or digest in the user's name wins over one in the alias.
    const userGaveVersion = name.includes('@') || /:[^/]*$/.test(name.replace(/@.*$/, ''));
    if (!userGaveVersion) return [aliasRef];
    return [parseDockerName(`${aliasRef.registry}/${aliasRef.repository}${suffix}`)];
  }
  const registries = conf.unqualifiedSearchRegistries.length > 0 ? conf.unqualifiedSearchRegistries : [DOCKER_HUB];
  return registries.map((registry) => parseDockerName(`${registry}/${bare}${suffix}`));
}
