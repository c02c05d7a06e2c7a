/**
 * The signed payload both docker signature formats share: containers
 * "simple signing" (type "atomic container signature") and cosign
 * (type "cosign container image signature"):
 *
 *   {"critical": {"identity": {"docker-reference": "host/repo:tag"},
 *                 "image": {"docker-manifest-digest": "sha256:..."},
 *                 "type": "..."},
 *    "optional": {...}}
 *
 * Parsing is strict about "critical" (unknown fields are refused, as
 * containers-signature(5) requires); "optional" is informational only.
 */
import { GantryError } from '../errors.js';
import { isValidDigest } from '../image/digest.js';

export const SIMPLE_SIGNING_TYPE = 'atomic container signature';
export const COSIGN_TYPE = 'cosign container image signature';

export interface SignaturePayload {
  dockerReference: string;
  manifestDigest: string;
  type: string;
  optional: Record<string, unknown>;
}

function bad(where: string, problem: string): GantryError {
  return new GantryError('SIGNATURE_INVALID', `${where}: invalid signature payload: ${problem}`, {
    hint: 'the signature was not made by a conforming tool, or was altered',
  });
}

function obj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(o: Record<string, unknown>, keys: string[], where: string, what: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(where, `unknown field "${k}" in ${what}`);
  for (const k of keys) if (!(k in o)) throw bad(where, `${what} has no "${k}"`);
}

export function parsePayload(bytes: Buffer, expectedType: string, where: string): SignaturePayload {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad(where, 'not JSON');
  }
  if (!obj(doc)) throw bad(where, 'not a JSON object');
  for (const k of Object.keys(doc)) if (k !== 'critical' && k !== 'optional') throw bad(where, `unknown top-level field "${k}"`);
  const critical = doc.critical;
  if (!obj(critical)) throw bad(where, '"critical" is missing');
  only(critical, ['identity', 'image', 'type'], where, '"critical"');
  if (critical.type !== expectedType) throw bad(where, `type is ${JSON.stringify(critical.type)}, expected "${expectedType}"`);
  const identity = critical.identity;
  const image = critical.image;
  if (!obj(identity)) throw bad(where, '"critical.identity" is not an object');
  if (!obj(image)) throw bad(where, '"critical.image" is not an object');
  only(identity, ['docker-reference'], where, '"critical.identity"');
  only(image, ['docker-manifest-digest'], where, '"critical.image"');
  const ref = identity['docker-reference'];
  const digest = image['docker-manifest-digest'];
  if (typeof ref !== 'string' || ref === '') throw bad(where, 'docker-reference is not a string');
  if (typeof digest !== 'string' || !isValidDigest(digest)) throw bad(where, 'docker-manifest-digest is not a digest');
  const optional = obj(doc.optional) ? doc.optional : {};
  return { dockerReference: ref, manifestDigest: digest, type: expectedType, optional };
}
