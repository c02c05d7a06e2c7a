/**
 * The signature check's place in the fetch pipeline: after the manifest is
 * resolved (so its digest is known) and before any layer is downloaded or
 * unpacked, so an image that fails verification never reaches the disk as a
 * snapshot.
 *
 * `verifyImage` reads as the steps it takes:
 *   1. --insecure-options=image: skip, loudly;
 *   2. an ACI (appc): its detached OpenPGP signature must verify with a key
 *      trusted for a prefix of the ACI's name or a root key (keyring.ts);
 *   3. anything else: the containers-policy.json requirements for the
 *      image's transport and scope (policy.ts) must all hold:
 *      insecureAcceptAnything, reject, signedBy (simple signing signatures
 *      from lookaside storage, registries-d.ts) or sigstoreSigned (cosign
 *      signatures in the registry at tag sha256-<hex>.sig). A signature
 *      counts only if its payload names this manifest's digest (or that of
 *      the index it was chosen from) and an identity the rule accepts.
 * A refusal throws SIGNATURE_INVALID or POLICY_REJECTED naming the image,
 * the key fingerprint or the policy rule, and is written to the audit log.
 * An image accepted without any signature is reported with ctx.warn.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import fsp from 'node:fs/promises';
import type { Context } from '../context.js';
import { GantryError, isGantryError } from '../errors.js';
import type { ImageSource, ResolvedManifest } from '../image/model.js';
import type { DockerReference } from '../image/reference.js';

export type VerificationOutcome =
  | { status: 'verified'; signer: string; fingerprint: string; method: 'appc' | 'signedBy' | 'sigstoreSigned'; rule?: string }
  | { status: 'skipped'; reason: string }
  | { status: 'unsigned-accepted'; reason: string; rule?: string };

export interface TrustOptions {
  /** --signature-policy FILE */
  policyFile?: string;
  /** --trust-keys-from-https: trust keys that appc discovery offers over https when none is trusted yet. */
  trustKeysFromHttps?: boolean;
}

interface AciCapable {
  signatureSubjects(): Promise<import('../image/transports/aci.js').AciSignatureSubject[]>;
}
interface RegistryCapable {
  readonly reference: DockerReference;
  fetchSiblingManifest(reference: string): Promise<{ raw: Buffer; contentType: string | undefined; digest: string } | undefined>;
  readSiblingBlob(descriptor: import('../image/model.js').Descriptor, limit: number): Promise<Buffer>;
}

function isAciCapable(source: ImageSource): source is ImageSource & AciCapable {
  return typeof (source as Partial<AciCapable>).signatureSubjects === 'function';
}
function isRegistryCapable(source: ImageSource): source is ImageSource & RegistryCapable {
  return typeof (source as Partial<RegistryCapable>).fetchSiblingManifest === 'function' && (source as Partial<RegistryCapable>).reference !== undefined;
}

export async function verifyImage(ctx: Context, manifest: ResolvedManifest, source: ImageSource, trust: TrustOptions = {}): Promise<VerificationOutcome> {
  if (ctx.insecure.has('image')) {
    const reason = 'signature verification disabled by --insecure-options=image';
    ctx.warn(`${manifest.name} (${manifest.digest}): ${reason}`);
    return { status: 'skipped', reason };
  }
  try {
    const outcome = manifest.format === 'appc'
      ? await verifyAci(ctx, source, trust.trustKeysFromHttps ?? false)
      : await verifyByPolicy(ctx, manifest, source, trust.policyFile);
    if (outcome.status === 'unsigned-accepted') ctx.warn(`${manifest.name} (${manifest.digest}): ${outcome.reason}`);
    return outcome;
  } catch (err) {
    if (isGantryError(err, 'SIGNATURE_INVALID') || isGantryError(err, 'POLICY_REJECTED') || isGantryError(err, 'CONFIG_INVALID')) {
      const { recordAudit } = await import('../audit/log.js');
      await recordAudit(ctx, 'fetch', manifest.name, { result: 'refused', digest: manifest.digest, source: source.description, code: err.code, reason: err.message });
    }
    throw err;
  }
}

// ---------------------------------------------------------------- appc

const MAX_ACI_IN_MEMORY = 2 ** 31 - 1;

async function verifyAci(ctx: Context, source: ImageSource, trustKeysFromHttps: boolean): Promise<VerificationOutcome> {
  if (!isAciCapable(source)) throw new GantryError('INTERNAL', `${source.description}: an appc image from a source that cannot show its signature`);
  const { keysForName } = await import('./keyring.js');
  const { verifyDetached } = await import('./pgp.js');
  const subjects = await source.signatureSubjects();
  let result: VerificationOutcome | undefined;
  for (const subject of subjects) {
    const what = `image ${subject.name} (${source.description})`;
    if (subject.signature === undefined) {
      throw new GantryError('SIGNATURE_INVALID', `${what} is not signed: no signature at ${subject.signatureWhere}`, {
        hint: 'ask the publisher for the .aci.asc signature; only if you accept the risk, skip the check with --insecure-options=image',
      });
    }
    let keys = await keysForName(ctx, subject.name);
    if (keys.length === 0 && trustKeysFromHttps && subject.discoveredPubkeys.length > 0) {
      await trustDiscoveredKeys(ctx, subject.discoveredPubkeys);
      keys = await keysForName(ctx, subject.name);
    }
    const st = await fsp.stat(subject.file);
    if (st.size > MAX_ACI_IN_MEMORY) throw new GantryError('ARCHIVE_INVALID', `${what}: the ACI is larger than gantry can verify (${st.size} bytes)`);
    const data = await fsp.readFile(subject.file);
    const signer = await verifyDetached(data, subject.signature, keys.map((k) => k.pgp), what,
      keys.length === 0 ? `for ${subject.name} (no key is trusted for it, its prefixes or as root)` : `for ${subject.name}, its prefixes or as a root key`);
    ctx.debug(`${what}: signature by ${signer.label} verified`);
    result ??= { status: 'verified', signer: signer.userIds[0] ?? signer.fingerprint, fingerprint: signer.fingerprint, method: 'appc' };
  }
  if (result === undefined) throw new GantryError('INTERNAL', `${source.description}: no ACI to verify`);
  return result;
}

/** --trust-keys-from-https: trust-on-first-use of keys served by the discovery page, over https only. */
async function trustDiscoveredKeys(ctx: Context, pubkeys: { prefix: string; url: string }[]): Promise<void> {
  const { readPublicKeys } = await import('./pgp.js');
  const { addTrustedKey, fetchPublicKey } = await import('./keyring.js');
  for (const { prefix, url } of pubkeys) {
    if (!url.startsWith('https://')) {
      ctx.warn(`not trusting key ${url} for ${prefix}: --trust-keys-from-https only takes keys served over https`);
      continue;
    }
    for (const key of await readPublicKeys(await fetchPublicKey(ctx, url, `public key for ${prefix}`), url)) {
      const added = await addTrustedKey(ctx, key, { kind: 'prefix', prefix }, url, 'trust-keys-from-https');
      ctx.warn(`trusting key ${added.fingerprint} (${added.userIds.join(', ')}) for prefix "${prefix}", fetched from ${url} (--trust-keys-from-https)`);
    }
  }
}

// ---------------------------------------------------------------- policy

interface Located {
  transport: string;
  scopes: string[];
  docker?: ImageSource & RegistryCapable;
}

async function locate(source: ImageSource): Promise<Located> {
  const { dockerScopes, pathScopes } = await import('./policy.js');
  if (isRegistryCapable(source)) {
    const r = source.reference;
    return { transport: 'docker', scopes: dockerScopes(r.registry, r.repository, r.tag, r.digest), docker: source };
  }
  for (const transport of ['oci-archive', 'docker-archive', 'oci']) {
    if (source.description.startsWith(`${transport}:`)) return { transport, scopes: pathScopes(source.description.slice(transport.length + 1)) };
  }
  return { transport: 'unknown', scopes: [] };
}

async function verifyByPolicy(ctx: Context, manifest: ResolvedManifest, source: ImageSource, policyFile: string | undefined): Promise<VerificationOutcome> {
  const { loadPolicy, requirementsFor } = await import('./policy.js');
  const policy = await loadPolicy(ctx, policyFile);
  const where = await locate(source);
  const { requirements, rule } = requirementsFor(policy, where.transport, where.scopes);
  ctx.debug(`${source.description}: policy rule ${rule}: ${requirements.map((r) => r.type).join(', ')}`);
  const verified: { signer: string; fingerprint: string; method: 'signedBy' | 'sigstoreSigned' }[] = [];
  for (const req of requirements) {
    switch (req.type) {
      case 'insecureAcceptAnything':
        break;
      case 'reject':
        throw new GantryError('POLICY_REJECTED', `image ${manifest.name} (${source.description}) is rejected by signature policy rule ${rule}`, {
          hint: 'the policy forbids this image; change the policy if it should be allowed',
        });
      case 'signedBy':
      case 'sigstoreSigned': {
        if (!where.docker) {
          throw new GantryError('POLICY_REJECTED', `image ${manifest.name} (${source.description}) needs a signature (${req.type}, rule ${rule}), and the ${where.transport} transport carries none`, {
            hint: 'fetch the signed image from its registry, or change the policy for this transport',
          });
        }
        verified.push(req.type === 'signedBy'
          ? await checkSignedBy(ctx, manifest, where.docker, req, rule)
          : await checkSigstore(ctx, manifest, where.docker, req, rule));
        break;
      }
    }
  }
  if (verified.length > 0) {
    return { status: 'verified', signer: verified.map((v) => v.signer).join(', '), fingerprint: verified.map((v) => v.fingerprint).join(', '), method: verified[0]!.method, rule };
  }
  return { status: 'unsigned-accepted', reason: `accepted WITHOUT a signature check (policy rule ${rule}: insecureAcceptAnything)`, rule };
}

/** The digests a signature may name: the manifest's, or the index's it was selected from. */
function acceptableDigests(manifest: ResolvedManifest): string[] {
  return manifest.indexDigest !== undefined ? [manifest.indexDigest, manifest.digest] : [manifest.digest];
}

async function readKeyMaterial(req: import('./policy.js').KeySource, rule: string): Promise<{ where: string; data: Buffer }[]> {
  if (req.keyData !== undefined) return [{ where: `keyData of ${rule}`, data: Buffer.from(req.keyData, 'base64') }];
  const files = req.keyPaths ?? [req.keyPath!];
  return Promise.all(files.map(async (file) => {
    try {
      return { where: file, data: await fsp.readFile(file) };
    } catch (err) {
      throw new GantryError('CONFIG_INVALID', `signature policy rule ${rule}: cannot read key file ${file}: ${(err as Error).message}`, { hint: 'fix keyPath in the policy' });
    }
  }));
}

async function checkSignedBy(
  ctx: Context, manifest: ResolvedManifest, source: ImageSource & RegistryCapable,
  req: Extract<import('./policy.js').Requirement, { type: 'signedBy' }>, rule: string,
): Promise<{ signer: string; fingerprint: string; method: 'signedBy' }> {
  const { readPublicKeys, verifySignedMessage } = await import('./pgp.js');
  const { loadLookasideConfig, lookasideFor, readLookasideSignatures } = await import('./registries-d.js');
  const { parsePayload, SIMPLE_SIGNING_TYPE } = await import('./payload.js');
  const { identityProblem } = await import('./identity.js');
  const keys = (await Promise.all((await readKeyMaterial(req, rule)).map((k) => readPublicKeys(k.data, `key ${k.where}`)))).flat();
  const ref = source.reference;
  const base = lookasideFor(await loadLookasideConfig(ctx), ref);
  const image = `image ${manifest.name} (${manifest.digest})`;
  if (base === undefined) {
    throw new GantryError('SIGNATURE_INVALID', `${image} must be signed (policy rule ${rule}: signedBy), but no lookaside storage is configured for ${ref.registry}/${ref.repository}`, {
      hint: `add a registries.d file under ${ctx.containersConfig}/registries.d with docker: ${ref.registry}: lookaside: URL`,
    });
  }
  const problems: string[] = [];
  const allowed = acceptableDigests(manifest);
  for (const digest of allowed) {
    for (const sig of await readLookasideSignatures(ctx, base, ref, digest)) {
      try {
        const { payload, signer } = await verifySignedMessage(sig.bytes, keys, `signature ${sig.where}`, `by policy rule ${rule}`);
        const parsed = parsePayload(payload, SIMPLE_SIGNING_TYPE, `signature ${sig.where}`);
        if (!allowed.includes(parsed.manifestDigest)) {
          throw new GantryError('SIGNATURE_INVALID', `signature ${sig.where} by ${signer.fingerprint} is for manifest ${parsed.manifestDigest}, not ${manifest.digest} (a replayed or stale signature)`);
        }
        const problem = identityProblem(req.signedIdentity, ref, parsed.dockerReference);
        if (problem) throw new GantryError('SIGNATURE_INVALID', `signature ${sig.where} by ${signer.fingerprint}: ${problem}`);
        return { signer: signer.userIds[0] ?? signer.fingerprint, fingerprint: signer.fingerprint, method: 'signedBy' };
      } catch (err) {
        if (!isGantryError(err, 'SIGNATURE_INVALID')) throw err;
        problems.push(err.message);
      }
    }
  }
  throw new GantryError('SIGNATURE_INVALID', problems.length === 0
    ? `${image} has no signature (policy rule ${rule} requires signedBy); looked in ${base}/${ref.repository}@${allowed.map((d) => d.replace(':', '=')).join(', ')}`
    : `${image}: no signature satisfies policy rule ${rule}: ${problems.join('; ')}`, {
    hint: 'the image was changed after it was signed, or is signed by a key the policy does not trust; do not use it',
  });
}

const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const MAX_COSIGN_PAYLOAD = 1 << 20;

function keyFingerprint(key: KeyObject): string {
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex');
}

async function checkSigstore(
  ctx: Context, manifest: ResolvedManifest, source: ImageSource & RegistryCapable,
  req: Extract<import('./policy.js').Requirement, { type: 'sigstoreSigned' }>, rule: string,
): Promise<{ signer: string; fingerprint: string; method: 'sigstoreSigned' }> {
  const { parsePayload, COSIGN_TYPE } = await import('./payload.js');
  const { identityProblem } = await import('./identity.js');
  const keys: KeyObject[] = [];
  for (const { where, data } of await readKeyMaterial(req, rule)) {
    try {
      keys.push(createPublicKey(data));
    } catch (err) {
      throw new GantryError('CONFIG_INVALID', `signature policy rule ${rule}: ${where} is not a PEM public key: ${(err as Error).message}`, { hint: 'use the cosign.pub file (PEM, ECDSA P-256)' });
    }
  }
  const ref = source.reference;
  const image = `image ${manifest.name} (${manifest.digest})`;
  const allowed = acceptableDigests(manifest);
  const problems: string[] = [];
  const looked: string[] = [];
  for (const digest of allowed) {
    const tag = `${digest.replace(':', '-')}.sig`;
    looked.push(tag);
    const sigManifest = await source.fetchSiblingManifest(tag);
    if (!sigManifest) continue;
    let layers: { mediaType?: string; digest?: string; size?: number; annotations?: Record<string, string> }[];
    try {
      const doc = JSON.parse(sigManifest.raw.toString('utf8')) as { layers?: unknown };
      layers = Array.isArray(doc.layers) ? doc.layers as typeof layers : [];
    } catch {
      problems.push(`signature manifest ${tag} is not JSON`);
      continue;
    }
    for (const layer of layers.slice(0, 64)) {
      const b64 = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
      if (typeof b64 !== 'string' || typeof layer.digest !== 'string' || typeof layer.size !== 'number') continue;
      const where = `${ref.registry}/${ref.repository}:${tag} layer ${layer.digest}`;
      try {
        const payload = await source.readSiblingBlob({ mediaType: layer.mediaType ?? '', digest: layer.digest, size: layer.size }, MAX_COSIGN_PAYLOAD);
        const signature = Buffer.from(b64, 'base64');
        const key = keys.find((k) => {
          try {
            return cryptoVerify('sha256', payload, k, signature);
          } catch {
            return false;
          }
        });
        if (!key) throw new GantryError('SIGNATURE_INVALID', `${where}: the signature does not verify with the key(s) of policy rule ${rule}`);
        const parsed = parsePayload(payload, COSIGN_TYPE, where);
        const fp = keyFingerprint(key);
        if (!allowed.includes(parsed.manifestDigest)) {
          throw new GantryError('SIGNATURE_INVALID', `${where} (key sha256:${fp}) is for manifest ${parsed.manifestDigest}, not ${manifest.digest} (a replayed or stale signature)`);
        }
        const problem = identityProblem(req.signedIdentity, ref, parsed.dockerReference);
        if (problem) throw new GantryError('SIGNATURE_INVALID', `${where} (key sha256:${fp}): ${problem}`);
        return { signer: `sigstore key sha256:${fp.slice(0, 16)}`, fingerprint: `sha256:${fp}`, method: 'sigstoreSigned' };
      } catch (err) {
        if (!isGantryError(err)) throw err;
        problems.push(err.message);
      }
    }
  }
  throw new GantryError('SIGNATURE_INVALID', problems.length === 0
    ? `${image} has no sigstore signature (policy rule ${rule} requires sigstoreSigned); looked for ${looked.map((t) => `${ref.registry}/${ref.repository}:${t}`).join(', ')}`
    : `${image}: no sigstore signature satisfies policy rule ${rule}: ${problems.join('; ')}`, {
    hint: 'the image was changed after it was signed, or is signed by a key the policy does not trust; do not use it',
  });
}
