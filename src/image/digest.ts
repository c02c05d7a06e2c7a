/**
 * Content digests ("sha256:<hex>"): the one place that says what a valid
 * digest is and how one is computed. Only the algorithms the OCI image-spec
 * registers are accepted, with lowercase hex of the exact length, so a digest
 * can name a file (blobs/<alg>/<hex>) with no chance of path traversal.
 */
import { createHash } from 'node:crypto';
import { GantryError } from '../errors.js';
import type { Digest } from './model.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/** The algorithms gantry stores and verifies. */
export const DIGEST_ALGORITHMS = Object.keys(HEX_LENGTH) as DigestAlgorithm[];

/** Why `digest` is not a valid digest, or undefined when it is. */
export function digestProblem(digest: string): string | undefined {
  const m = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/.exec(typeof digest === 'string' ? digest : '');
  if (!m) return `"${String(digest).slice(0, 160)}" is not a digest (expected algorithm:hex, e.g. sha256:<64 hex digits>)`;
  const [, algorithm, hex] = m as unknown as [string, string, string];
  const length = HEX_LENGTH[algorithm as DigestAlgorithm];
  if (length === undefined) return `digest algorithm "${algorithm}" is not supported (use sha256 or sha512)`;
  if (!/^[0-9a-f]+$/.test(hex) || hex.length !== length) {
    return `digest "${digest}" must have ${length} lowercase hex digits after "${algorithm}:"`;
  }
  return undefined;
}

export function isValidDigest(digest: string): boolean {
  return digestProblem(digest) === undefined;
}

/** Splits a valid digest; MANIFEST_INVALID otherwise (whatever supplied it is malformed). */
export function parseDigest(digest: string): { algorithm: DigestAlgorithm; hex: string } {
  const problem = digestProblem(digest);
  if (problem) {
    throw new GantryError('MANIFEST_INVALID', `invalid digest: ${problem}`, {
      hint: 'a digest is "sha256:" followed by 64 lowercase hex digits (or "sha512:" and 128); the manifest or the argument that supplied it is malformed',
    });
  }
  const colon = digest.indexOf(':');
  return { algorithm: digest.slice(0, colon) as DigestAlgorithm, hex: digest.slice(colon + 1) };
}

/** Digest of bytes with the given algorithm ("sha256:<hex>"). */
export function digestOf(bytes: Buffer | Uint8Array | string, algorithm: string = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
