/**
 * registries.d (containers-registries.d(5)): where "simple signing"
 * signatures of docker images live ("lookaside" storage).
 *
 *   <containersConfig>/registries.d/*.yaml
 *     default-docker:
 *       lookaside: file:///var/lib/containers/sigstore
 *     docker:
 *       registry.example.com/ns:
 *         lookaside: https://sigs.example.com/sigstore
 *
 * `sigstore` is the older name of `lookaside`; `*-staging` keys are for
 * writers and ignored here. The most specific scope wins (host/ns/repo,
 * host/ns, host, *.domain), then default-docker. Signature N of a manifest
 * is at `<lookaside>/<repository path>@sha256=<hex>/signature-N`, N from 1,
 * read until the first one that does not exist.
 *
 * The YAML reader understands the subset these files use (nested maps,
 * plain/quoted scalars, comments) and refuses anything else by line, so no
 * YAML library is loaded.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context } from '../context.js';
import { errnoCode, GantryError } from '../errors.js';
import type { DockerReference } from '../image/reference.js';

export type YamlValue = string | YamlMap;
export interface YamlMap { [key: string]: YamlValue }

function yamlError(file: string, line: number, problem: string): GantryError {
  return new GantryError('CONFIG_INVALID', `${file}:${line}: ${problem}`, {
    hint: 'registries.d files are YAML maps: docker: <scope>: lookaside: URL (see containers-registries.d(5))',
  });
}

function scalar(raw: string, file: string, line: number): string {
  const t = raw.trim();
  if (t.startsWith('"')) {
    if (!t.endsWith('"') || t.length < 2) throw yamlError(file, line, 'unterminated double-quoted string');
    try {
      return JSON.parse(t) as string;
    } catch {
      throw yamlError(file, line, 'invalid double-quoted string');
    }
  }
  if (t.startsWith("'")) {
    if (!t.endsWith("'") || t.length < 2) throw yamlError(file, line, 'unterminated single-quoted string');
    return t.slice(1, -1).replace(/''/g, "'");
  }
  if (/^[[{&*!|>%@`]/.test(t)) throw yamlError(file, line, `unsupported YAML syntax "${t.slice(0, 20)}"`);
  return t;
}

function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return line.slice(0, i);
  }
  return line;
}

/** Splits "key: value" at the first ": " (or trailing ":") outside quotes. */
function splitKey(text: string, file: string, line: number): { key: string; value: string } {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === ':' && (i === text.length - 1 || text[i + 1] === ' ' || text[i + 1] === '\t')) {
      return { key: scalar(text.slice(0, i), file, line), value: text.slice(i + 1).trim() };
    }
  }
  throw yamlError(file, line, `expected "key: value", got "${text.trim().slice(0, 40)}"`);
}

/** Parses the YAML subset of registries.d files. */
export function parseYamlSubset(text: string, file: string): YamlMap {
  const root: YamlMap = {};
  const stack: { indent: number; map: YamlMap }[] = [{ indent: -1, map: root }];
  let pending: { indent: number; map: YamlMap; key: string; line: number } | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = stripComment(lines[i]!);
    if (raw.trim() === '' || raw.trim() === '---') continue;
    if (raw.includes('\t') && /^\s*\t/.test(raw)) throw yamlError(file, lineNo, 'tabs are not allowed for indentation');
    const indent = raw.length - raw.trimStart().length;
    const body = raw.trim();
    if (body.startsWith('- ')) throw yamlError(file, lineNo, 'lists are not used in registries.d files');
    if (pending && indent > pending.indent) {
      const child: YamlMap = {};
      pending.map[pending.key] = child;
      stack.push({ indent, map: child });
    } else {
      if (pending) pending.map[pending.key] = '';
      while (stack.length > 1 && indent < stack[stack.length - 1]!.indent) stack.pop();
    }
    pending = undefined;
    const top = stack[stack.length - 1]!;
    if (indent !== (stack.length > 1 ? top.indent : 0)) throw yamlError(file, lineNo, 'inconsistent indentation');
    const { key, value } = splitKey(body, file, lineNo);
    if (Object.prototype.hasOwnProperty.call(top.map, key)) throw yamlError(file, lineNo, `duplicate key "${key}"`);
    if (value === '') pending = { indent, map: top.map, key, line: lineNo };
    else top.map[key] = scalar(value, file, lineNo);
  }
  if (pending) pending.map[pending.key] = '';
  return root;
}

export interface LookasideConfig {
  /** scope -> lookaside URL */
  docker: Map<string, string>;
  defaultDocker?: string;
}

function lookasideOf(entry: YamlValue | undefined, file: string, where: string): string | undefined {
  if (entry === undefined || entry === '') return undefined;
  if (typeof entry === 'string') throw new GantryError('CONFIG_INVALID', `${file}: ${where} must be a map`, { hint: 'e.g. lookaside: file:///var/lib/containers/sigstore' });
  const url = entry.lookaside ?? entry.sigstore;
  if (url === undefined) return undefined;
  if (typeof url !== 'string' || url === '') throw new GantryError('CONFIG_INVALID', `${file}: ${where}.lookaside must be a URL`);
  try {
    const parsed = new URL(url);
    if (!['file:', 'http:', 'https:'].includes(parsed.protocol)) throw new Error('scheme');
  } catch {
    throw new GantryError('CONFIG_INVALID', `${file}: ${where}.lookaside "${url}" is not a file://, http:// or https:// URL`);
  }
  return url;
}

/** Reads every *.yaml under <containersConfig>/registries.d (a scope defined twice is an error). */
export async function loadLookasideConfig(ctx: Context): Promise<LookasideConfig> {
  const dir = path.join(ctx.containersConfig, 'registries.d');
  let names: string[];
  try {
    names = (await fsp.readdir(dir)).filter((n) => n.endsWith('.yaml')).sort();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { docker: new Map() };
    throw err;
  }
  const config: LookasideConfig = { docker: new Map() };
  for (const name of names) {
    const file = path.join(dir, name);
    const doc = parseYamlSubset(await fsp.readFile(file, 'utf8'), file);
    const def = lookasideOf(doc['default-docker'], file, 'default-docker');
    if (def !== undefined) {
      if (config.defaultDocker !== undefined) throw new GantryError('CONFIG_INVALID', `${file}: default-docker is defined in more than one registries.d file`);
      config.defaultDocker = def;
    }
    const docker = doc.docker;
    if (docker !== undefined && docker !== '') {
      if (typeof docker === 'string') throw new GantryError('CONFIG_INVALID', `${file}: "docker" must be a map of scopes`);
      for (const [scope, entry] of Object.entries(docker)) {
        const url = lookasideOf(entry, file, `docker["${scope}"]`);
        if (url === undefined) continue;
        if (config.docker.has(scope)) throw new GantryError('CONFIG_INVALID', `${file}: scope "${scope}" is defined in more than one registries.d file`);
        config.docker.set(scope, url);
      }
    }
  }
  return config;
}

/** The lookaside base URL for an image, or undefined when none is configured. */
export function lookasideFor(config: LookasideConfig, ref: DockerReference): string | undefined {
  const parts = `${ref.registry}/${ref.repository}`.split('/');
  for (let i = parts.length; i > 0; i--) {
    const hit = config.docker.get(parts.slice(0, i).join('/'));
    if (hit !== undefined) return hit;
  }
  const labels = ref.registry.replace(/:\d+$/, '').split('.');
  for (let i = 1; i < labels.length; i++) {
    const hit = config.docker.get(`*.${labels.slice(i).join('.')}`);
    if (hit !== undefined) return hit;
  }
  return config.defaultDocker;
}

const MAX_SIGNATURES = 64;
const MAX_SIGNATURE_BYTES = 4 << 20;

/** Reads signature-1, -2, ... of a manifest digest from lookaside storage. */
export async function readLookasideSignatures(ctx: Context, base: string, ref: DockerReference, digest: string): Promise<{ where: string; bytes: Buffer }[]> {
  const [algorithm, hex] = digest.split(':') as [string, string];
  const dirUrl = `${base.replace(/\/+$/, '')}/${ref.repository}@${algorithm}=${hex}`;
  const out: { where: string; bytes: Buffer }[] = [];
  for (let n = 1; n <= MAX_SIGNATURES; n++) {
    const url = `${dirUrl}/signature-${n}`;
    if (url.startsWith('file:')) {
      const file = fileURLToPath(url);
      try {
        const st = await fsp.stat(file);
        if (st.size > MAX_SIGNATURE_BYTES) throw new GantryError('SIGNATURE_INVALID', `signature ${file} is larger than ${MAX_SIGNATURE_BYTES} bytes`);
        out.push({ where: file, bytes: await fsp.readFile(file) });
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') break;
        throw err;
      }
    } else {
      const { httpGet } = await import('../image/appc/http.js');
      const res = await httpGet(ctx, url, { limit: MAX_SIGNATURE_BYTES, what: 'signature' });
      if (res.status === 404) break;
      if (res.status !== 200) throw new GantryError('REGISTRY_ERROR', `signature ${url}: HTTP ${res.status}`, { hint: 'the signature server failed; try again later' });
      out.push({ where: url, bytes: res.body });
    }
  }
  return out;
}
