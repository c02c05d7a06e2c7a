/**
 * signedIdentity matching (containers-policy.json(5)): does the identity a
 * signature claims ("critical.identity.docker-reference") fit the reference
 * the user is fetching? Both sides are normalised with the same docker name
 * grammar gantry uses everywhere, so "busybox" and
 * "docker.io/library/busybox:latest" compare equal.
 */
import { parseDockerName, type DockerReference } from '../image/reference.js';
import type { SignedIdentity } from './policy.js';

function repoOf(ref: DockerReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** "host/repo:tag" or "host/repo@digest" (digest wins when both are present). */
function exactOf(ref: DockerReference): string | undefined {
  if (ref.digest !== undefined) return `${repoOf(ref)}@${ref.digest}`;
  if (ref.tag !== undefined) return `${repoOf(ref)}:${ref.tag}`;
  return undefined;
}

function parseLoose(text: string): DockerReference | undefined {
  try {
    return parseDockerName(text);
  } catch {
    return undefined;
  }
}

/** A docker name without the implicit ":latest" parseDockerName adds. */
function parseRepository(text: string): string | undefined {
  const ref = parseLoose(text);
  return ref ? repoOf(ref) : undefined;
}

function matchRepoDigestOrExact(image: DockerReference, signed: DockerReference): boolean {
  if (image.digest !== undefined) return repoOf(image) === repoOf(signed);
  const a = exactOf(image);
  return a !== undefined && a === exactOf(signed);
}

/**
 * Checks `signedText` (the signature's docker-reference) against `image`;
 * returns undefined when it matches, else why not.
 */
export function identityProblem(rule: SignedIdentity, image: DockerReference, signedText: string): string | undefined {
  const signed = parseLoose(signedText);
  if (!signed) return `the signature's identity "${signedText}" is not a valid image reference`;
  // parseDockerName adds ":latest" to bare names; a signature naming only a repository has no tag.
  const signedHasTagOrDigest = /@|:[^/]*$/.test(signedText);
  const sig: DockerReference = { ...signed };
  if (!signedHasTagOrDigest) delete sig.tag;
  const mismatch = `the signature is for "${signedText}", not for ${exactOf(image) ?? repoOf(image)} (signedIdentity ${rule.type})`;
  switch (rule.type) {
    case 'matchExact': {
      const a = exactOf(image);
      return a !== undefined && a === exactOf(sig) ? undefined : mismatch;
    }
    case 'matchRepoDigestOrExact':
      return matchRepoDigestOrExact(image, sig) ? undefined : mismatch;
    case 'matchRepository':
      return repoOf(image) === repoOf(sig) ? undefined : mismatch;
    case 'exactReference': {
      const want = parseLoose(rule.dockerReference);
      return want && exactOf(want) === exactOf(sig) ? undefined : `the signature is for "${signedText}", the policy wants exactly "${rule.dockerReference}"`;
    }
    case 'exactRepository': {
      const want = parseRepository(rule.dockerRepository);
      return want !== undefined && want === repoOf(sig) ? undefined : `the signature is for "${signedText}", the policy wants repository "${rule.dockerRepository}"`;
    }
    case 'remapIdentity': {
      const name = repoOf(image);
      const prefix = parseRepository(rule.prefix) ?? rule.prefix;
      const hostOnly = !rule.prefix.includes('/');
      const p = hostOnly ? rule.prefix : prefix;
      if (name === p || name.startsWith(`${p}/`)) {
        const signedPrefix = hostOnly ? rule.signedPrefix : (parseRepository(rule.signedPrefix) ?? rule.signedPrefix);
        const remapped = parseLoose(`${signedPrefix}${name.slice(p.length)}${image.digest !== undefined ? `@${image.digest}` : image.tag !== undefined ? `:${image.tag}` : ''}`);
        if (!remapped) return `remapIdentity produced an invalid name from ${name}`;
        return matchRepoDigestOrExact(remapped, sig) ? undefined : `the signature is for "${signedText}", not for ${exactOf(remapped)} (remapped from ${exactOf(image)})`;
      }
      return matchRepoDigestOrExact(image, sig) ? undefined : mismatch;
    }
  }
}
