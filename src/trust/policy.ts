/**
 * Signature policy in the containers-policy.json(5) format, so existing
 * /etc/containers/policy.json files work unchanged.
 *
 * Where it comes from, first found wins: `--signature-policy FILE`,
 * `<localConfig>/policy.json`, `<containersConfig>/policy.json`
 * (/etc/containers), else gantry's built-in default, which accepts anything
 * (and the fetch warns, per image, that it was accepted unsigned).
 *
 * Which requirements apply: for the `docker` transport the most specific
 * scope of the image's name (`host/ns/repo:tag` or `@digest`, `host/ns/repo`,
 * `host/ns`, `host`, `*.sub.domain`, `*.domain`), else the transport's ""
 * scope, else the global `default`. Local transports (oci, oci-archive,
 * docker-archive) use their path scopes the same way. Every requirement of
 * the chosen list must be satisfied.
 *
 * Parsing is strict: unknown requirement types, unknown fields, or a missing
 * key make the whole file invalid (CONFIG_INVALID naming the file and the
 * rule), because a typo in a security policy must not silently loosen it.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { errnoCode, GantryError } from '../errors.js';

export type SignedIdentity =
  | { type: 'matchExact' }
  | { type: 'matchRepoDigestOrExact' }
  | { type: 'matchRepository' }
  | { type: 'exactReference'; dockerReference: string }
  | { type: 'exactRepository'; dockerRepository: string }
  | { type: 'remapIdentity'; prefix: string; signedPrefix: string };

export interface KeySource {
  keyPath?: string;
  keyPaths?: string[];
  /** base64 of the key material */
  keyData?: string;
}

export type Requirement =
  | { type: 'insecureAcceptAnything' }
  | { type: 'reject' }
  | ({ type: 'signedBy'; keyType: 'GPGKeys'; signedIdentity: SignedIdentity } & KeySource)
  | ({ type: 'sigstoreSigned'; signedIdentity: SignedIdentity } & KeySource);

export interface Policy {
  /** Where it was read from ("built-in" for the default). */
  source: string;
  default: Requirement[];
  transports: Record<string, Record<string, Requirement[]>>;
}

export const BUILTIN_POLICY: Policy = { source: 'built-in default policy', default: [{ type: 'insecureAcceptAnything' }], transports: {} };

const KNOWN_TRANSPORTS = new Set(['docker', 'atomic', 'oci', 'oci-archive', 'docker-archive', 'docker-daemon', 'dir', 'containers-storage', 'ostree', 'sif', 'tarball', 'appc']);

function invalid(source: string, where: string, problem: string): GantryError {
  return new GantryError('CONFIG_INVALID', `signature policy ${source}: ${where}: ${problem}`, {
    hint: 'fix the file (format: containers-policy.json(5)); gantry refuses to guess what a broken policy meant',
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkFields(obj: Record<string, unknown>, allowed: string[], source: string, where: string): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw invalid(source, where, `unknown field "${k}"`);
}

function str(obj: Record<string, unknown>, key: string, source: string, where: string): string {
  const v = obj[key];
  if (typeof v !== 'string' || v === '') throw invalid(source, where, `"${key}" must be a non-empty string`);
  return v;
}

function parseIdentity(v: unknown, source: string, where: string): SignedIdentity {
  if (v === undefined) return { type: 'matchRepoDigestOrExact' };
  if (!isObject(v)) throw invalid(source, where, '"signedIdentity" must be an object');
  const w = `${where}.signedIdentity`;
  switch (v.type) {
    case 'matchExact':
    case 'matchRepoDigestOrExact':
    case 'matchRepository':
      checkFields(v, ['type'], source, w);
      return { type: v.type };
    case 'exactReference':
      checkFields(v, ['type', 'dockerReference'], source, w);
      return { type: 'exactReference', dockerReference: str(v, 'dockerReference', source, w) };
    case 'exactRepository':
      checkFields(v, ['type', 'dockerRepository'], source, w);
      return { type: 'exactRepository', dockerRepository: str(v, 'dockerRepository', source, w) };
    case 'remapIdentity':
      checkFields(v, ['type', 'prefix', 'signedPrefix'], source, w);
      return { type: 'remapIdentity', prefix: str(v, 'prefix', source, w), signedPrefix: str(v, 'signedPrefix', source, w) };
    default:
      throw invalid(source, w, `unknown signedIdentity type ${JSON.stringify(v.type)}`);
  }
}

function parseKeySource(v: Record<string, unknown>, source: string, where: string): KeySource {
  const out: KeySource = {};
  let n = 0;
  if (v.keyPath !== undefined) {
    out.keyPath = str(v, 'keyPath', source, where);
    n++;
  }
  if (v.keyPaths !== undefined) {
    if (!Array.isArray(v.keyPaths) || v.keyPaths.length === 0 || !v.keyPaths.every((p) => typeof p === 'string' && p !== '')) {
      throw invalid(source, where, '"keyPaths" must be a non-empty list of file names');
    }
    out.keyPaths = v.keyPaths as string[];
    n++;
  }
  if (v.keyData !== undefined) {
    out.keyData = str(v, 'keyData', source, where);
    n++;
  }
  if (n !== 1) throw invalid(source, where, 'exactly one of "keyPath", "keyPaths" or "keyData" is needed');
  return out;
}

function parseRequirement(v: unknown, source: string, where: string): Requirement {
  if (!isObject(v)) throw invalid(source, where, 'a requirement must be an object with a "type"');
  switch (v.type) {
    case 'insecureAcceptAnything':
    case 'reject':
      checkFields(v, ['type'], source, where);
      return { type: v.type };
    case 'signedBy': {
      checkFields(v, ['type', 'keyType', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity'], source, where);
      if (v.keyType !== 'GPGKeys') {
        throw invalid(source, where, `keyType ${JSON.stringify(v.keyType)} is not supported (gantry reads "GPGKeys")`);
      }
      return { type: 'signedBy', keyType: 'GPGKeys', ...parseKeySource(v, source, where), signedIdentity: parseIdentity(v.signedIdentity, source, where) };
    }
    case 'sigstoreSigned': {
      checkFields(v, ['type', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity'], source, where);
      return { type: 'sigstoreSigned', ...parseKeySource(v, source, where), signedIdentity: parseIdentity(v.signedIdentity, source, where) };
    }
    default:
      throw invalid(source, where, `unknown requirement type ${JSON.stringify(v.type)} (known: insecureAcceptAnything, reject, signedBy, sigstoreSigned)`);
  }
}

function parseRequirements(v: unknown, source: string, where: string): Requirement[] {
  if (!Array.isArray(v)) throw invalid(source, where, 'must be a list of requirements');
  if (v.length === 0) throw invalid(source, where, 'an empty list of requirements is not allowed (use [{"type": "insecureAcceptAnything"}] to accept anything)');
  return v.map((r, i) => parseRequirement(r, source, `${where}[${i}]`));
}

/** Parses policy JSON text; throws CONFIG_INVALID naming the file and the rule. */
export function parsePolicy(text: string, source: string): Policy {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(source, 'file', `not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw invalid(source, 'file', 'not a JSON object');
  checkFields(doc, ['default', 'transports'], source, 'top level');
  if (doc.default === undefined) throw invalid(source, 'top level', 'the "default" requirement list is missing');
  const policy: Policy = { source, default: parseRequirements(doc.default, source, 'default'), transports: {} };
  if (doc.transports !== undefined) {
    if (!isObject(doc.transports)) throw invalid(source, 'transports', 'must be an object');
    for (const [transport, scopes] of Object.entries(doc.transports)) {
      if (!KNOWN_TRANSPORTS.has(transport)) throw invalid(source, `transports.${transport}`, 'unknown transport');
      if (!isObject(scopes)) throw invalid(source, `transports.${transport}`, 'must be an object of scope -> requirements');
      const parsed: Record<string, Requirement[]> = {};
      for (const [scope, reqs] of Object.entries(scopes)) {
        if (transport === 'docker' || transport === 'atomic') checkDockerScope(scope, source, `transports.${transport}["${scope}"]`);
        parsed[scope] = parseRequirements(reqs, source, `transports.${transport}["${scope}"]`);
      }
      policy.transports[transport] = parsed;
    }
  }
  return policy;
}

function checkDockerScope(scope: string, source: string, where: string): void {
  if (scope === '') return;
  if (scope.startsWith('*.')) {
    if (!/^\*\.[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*$/.test(scope)) throw invalid(source, where, 'a wildcard scope must be *.domain');
    return;
  }
  if (/\s/.test(scope) || scope.includes('//') || scope.endsWith('/')) throw invalid(source, where, 'not a valid registry/repository scope');
}

/** Loads the policy that applies to this context (see the module comment for the order). */
export async function loadPolicy(ctx: Context, explicitFile?: string): Promise<Policy> {
  const candidates = explicitFile !== undefined
    ? [explicitFile]
    : [path.join(ctx.localConfig, 'policy.json'), path.join(ctx.containersConfig, 'policy.json')];
  for (const file of candidates) {
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' && explicitFile === undefined) continue;
      throw new GantryError('CONFIG_INVALID', `cannot read signature policy ${file}: ${(err as Error).message}`, {
        hint: 'check the --signature-policy path',
      });
    }
    ctx.debug(`signature policy: ${file}`);
    return parsePolicy(text, file);
  }
  ctx.debug('signature policy: none found, using the built-in default (accept anything, with a warning)');
  return BUILTIN_POLICY;
}

/** Scopes of a docker reference, most specific first (containers/image's order). */
export function dockerScopes(registry: string, repository: string, tag?: string, digest?: string): string[] {
  const named = `${registry}/${repository}`;
  const out: string[] = [];
  if (digest !== undefined) out.push(`${named}@${digest}`);
  if (tag !== undefined) out.push(`${named}:${tag}`);
  const parts = named.split('/');
  for (let i = parts.length; i > 0; i--) out.push(parts.slice(0, i).join('/'));
  // Wildcards match the host's parent domains: *.a.b.c, *.b.c, *.c (host without port).
  const host = registry.replace(/:\d+$/, '');
  const labels = host.split('.');
  for (let i = 1; i < labels.length; i++) out.push(`*.${labels.slice(i).join('.')}`);
  return out;
}

/** Scopes of a path-based transport: the full reference, then the path and each parent directory. */
export function pathScopes(pathAndSuffix: string): string[] {
  const out: string[] = [pathAndSuffix];
  const colon = pathAndSuffix.indexOf(':');
  let p = colon >= 0 ? pathAndSuffix.slice(0, colon) : pathAndSuffix;
  if (colon >= 0) out.push(p);
  for (let i = 0; i < 64 && p !== '/' && p !== '.' && p !== ''; i++) {
    p = path.dirname(p);
    out.push(p);
  }
  return out;
}

export interface PolicyMatch {
  requirements: Requirement[];
  /** "transports.docker[\"host/repo\"]" or "default", for messages. */
  rule: string;
}

/** Chooses the requirement list for an image of `transport` with the given scopes. */
export function requirementsFor(policy: Policy, transport: string, scopes: string[]): PolicyMatch {
  const table = policy.transports[transport] ?? (transport === 'docker' ? policy.transports.atomic : undefined);
  if (table) {
    for (const scope of [...scopes, '']) {
      const reqs = table[scope];
      if (reqs) return { requirements: reqs, rule: `${policy.source}: transports.${transport}["${scope}"]` };
    }
  }
  return { requirements: policy.default, rule: `${policy.source}: default` };
}
