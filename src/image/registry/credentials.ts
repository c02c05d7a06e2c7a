/**
 * Registry credentials from the auth files podman and docker write. Files
 * are read in this order and the first file holding an entry for the
 * registry wins:
 *
 *   1. $REGISTRY_AUTH_FILE
 *   2. ${XDG_RUNTIME_DIR}/containers/auth.json
 *   3. $DOCKER_CONFIG/config.json, else ~/.docker/config.json
 *
 * Format: {"auths": {"host[:port]": {"auth": base64("user:pass")}}}. Keys may
 * carry a scheme ("https://host"), a "/v1/" or "/v2/" suffix, or a
 * repository path ("host/ns" as podman allows): inside one file the most
 * specific key that matches the repository wins.
 *
 * Credential helpers (credHelpers, credsStore) and identity tokens are not
 * supported; an entry that uses only them is skipped (reported via debug).
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GantryError, errnoCode } from '../../errors.js';

export interface Credentials {
  username: string;
  password: string;
}

/** The auth files to consult, in order, for the given environment. */
export function authFilePaths(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker'), 'config.json'));
  return files;
}

/** "https://index.docker.io/v1/" -> "docker.io", "https://host:5000/" -> "host:5000". */
function normalizeAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '');
  k = k.replace(/\/+(v1|v2)\/*$/, '').replace(/\/+$/, '');
  const slash = k.indexOf('/');
  const host = slash >= 0 ? k.slice(0, slash) : k;
  const path = slash >= 0 ? k.slice(slash) : '';
  const normalizedHost = host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host.toLowerCase();
  return normalizedHost + path;
}

function decodeEntry(entry: unknown, file: string, key: string): Credentials | undefined {
  if (typeof entry !== 'object' || entry === null) {
    throw new GantryError('CONFIG_INVALID', `${file}: auths["${key}"] must be an object`);
  }
  const e = entry as Record<string, unknown>;
  if (typeof e.auth === 'string' && e.auth !== '') {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw new GantryError('CONFIG_INVALID', `${file}: auths["${key}"].auth is not base64 of "user:password"`, {
        hint: 'log in again (podman login / docker login) or fix the file',
      });
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof e.username === 'string' && typeof e.password === 'string') {
    return { username: e.username, password: e.password };
  }
  return undefined;
}

/**
 * Looks `registry/repository` up in one parsed auth file: exact repository
 * keys first, then shorter namespaces, then the bare registry.
 */
function lookupInFile(doc: unknown, file: string, registry: string, repository: string, debug: (m: string) => void): Credentials | undefined {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new GantryError('CONFIG_INVALID', `${file}: not a JSON object`);
  }
  const auths = (doc as Record<string, unknown>).auths;
  if (auths === undefined) return undefined;
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) {
    throw new GantryError('CONFIG_INVALID', `${file}: "auths" must be an object`);
  }
  const target = `${registry}/${repository}`;
  let best: { length: number; creds: Credentials } | undefined;
  for (const [key, entry] of Object.entries(auths as Record<string, unknown>)) {
    const norm = normalizeAuthKey(key);
    const matches = norm === registry || target === norm || target.startsWith(`${norm}/`);
    if (!matches) continue;
    if (best !== undefined && best.length >= norm.length) continue;
    const creds = decodeEntry(entry, file, key);
    if (creds === undefined) {
      debug(`${file}: entry "${key}" has no auth or username/password (identity tokens and credential helpers are not supported)`);
      continue;
    }
    best = { length: norm.length, creds };
  }
  return best?.creds;
}

/**
 * Credentials for `registry` (host[:port], "docker.io" for the Hub) and
 * `repository`, or undefined for anonymous access. A file that exists but
 * is not valid JSON is CONFIG_INVALID naming it.
 */
export function findCredentials(
  registry: string,
  repository: string,
  opts: { files?: string[]; env?: NodeJS.ProcessEnv; debug?: (message: string) => void } = {},
): Credentials | undefined {
  const debug = opts.debug ?? (() => {});
  const host = registry === 'index.docker.io' || registry === 'registry-1.docker.io' ? 'docker.io' : registry.toLowerCase();
  for (const file of opts.files ?? authFilePaths(opts.env)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const errno = errnoCode(err);
      if (errno === 'ENOENT' || errno === 'ENOTDIR') continue;
      throw new GantryError('CONFIG_INVALID', `cannot read auth file ${file}: ${(err as Error).message}`, { cause: err });
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new GantryError('CONFIG_INVALID', `auth file ${file} is not valid JSON: ${(err as Error).message}`, {
        hint: 'fix or remove the file, or log in again',
        cause: err,
      });
    }
    const creds = lookupInFile(doc, file, host, repository, debug);
    if (creds) {
      debug(`using credentials for ${host}/${repository} from ${file}`);
      return creds;
    }
  }
  return undefined;
}

/** Where the hint for UNAUTHORIZED tells the user credentials come from. */
export function credentialsHint(env: NodeJS.ProcessEnv = process.env): string {
  return `gantry reads registry credentials from ${authFilePaths(env).join(', ')} (log in with "podman login" or "docker login", or set REGISTRY_AUTH_FILE)`;
}
