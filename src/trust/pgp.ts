/**
 * The OpenPGP operations gantry needs, on openpgp.js: reading public keys,
 * describing them (fingerprint, user IDs, expiry, revocation), and checking
 * detached signatures (ACIs) and signed messages ("simple signing").
 *
 * openpgp.js is large; it is imported on first use only, so commands that
 * never check a signature (`gantry run` of a stored image) do not load it.
 *
 * Key validity is judged at verification time ("now"), not only at the
 * signature's creation time as openpgp.js does: a key that has expired or
 * been revoked since it signed no longer vouches for anything.
 */
import { GantryError } from '../errors.js';

type OpenPgp = typeof import('openpgp');
type PublicKey = import('openpgp').PublicKey;

let loaded: Promise<OpenPgp> | undefined;
function openpgp(): Promise<OpenPgp> {
  loaded ??= import('openpgp');
  return loaded;
}

export interface KeyInfo {
  /** Lowercase hex fingerprint of the primary key. */
  fingerprint: string;
  userIds: string[];
  created: string;
  /** ISO time, or undefined when the key never expires. */
  expires?: string;
  revoked: boolean;
  /** Whether the key is unusable now (expired or revoked), and why. */
  problem?: string;
}

/** An opaque parsed public key; pass it back to the functions of this module. */
export interface PgpKey {
  readonly info: KeyInfo;
  /** Key IDs (16 hex) of the primary key and every subkey. */
  readonly keyIds: string[];
  /** ASCII-armored public key (no secret material ever). */
  readonly armored: string;
  /** @internal the openpgp.js object */
  readonly key: PublicKey;
}

export interface SignerInfo {
  fingerprint: string;
  userIds: string[];
  /** "Name <mail> (fingerprint)" for messages. */
  label: string;
}

function looksArmored(data: Buffer): boolean {
  return data.subarray(0, 64).toString('latin1').includes('-----BEGIN PGP');
}

async function describe(key: PublicKey): Promise<PgpKey> {
  const fingerprint = key.getFingerprint().toLowerCase();
  const userIds = key.getUserIDs();
  const revoked = await key.isRevoked();
  let expiresAt: Date | undefined;
  try {
    const t = await key.getExpirationTime();
    if (t instanceof Date) expiresAt = t;
  } catch {
    // getExpirationTime throws when no valid self-signature exists: treat as unusable below.
  }
  let problem: string | undefined;
  if (revoked) problem = `key ${fingerprint} has been revoked`;
  else if (expiresAt !== undefined && expiresAt.getTime() <= Date.now()) problem = `key ${fingerprint} expired on ${expiresAt.toISOString()}`;
  else {
    try {
      await key.verifyPrimaryKey();
    } catch (err) {
      problem = `key ${fingerprint} is not valid: ${(err as Error).message}`;
    }
  }
  const info: KeyInfo = { fingerprint, userIds, created: key.getCreationTime().toISOString(), revoked };
  if (expiresAt !== undefined) info.expires = expiresAt.toISOString();
  if (problem !== undefined) info.problem = problem;
  return {
    info,
    keyIds: key.getKeyIDs().map((id) => id.toHex().toLowerCase()),
    armored: key.armor(),
    key,
  };
}

/** Reads one or more public keys (armored or binary); private keys are reduced to their public part. */
export async function readPublicKeys(data: Buffer, where: string): Promise<PgpKey[]> {
  const pgp = await openpgp();
  let keys: import('openpgp').Key[];
  try {
    keys = looksArmored(data)
      ? await pgp.readKeys({ armoredKeys: data.toString('utf8') })
      : await pgp.readKeys({ binaryKeys: new Uint8Array(data) });
  } catch (err) {
    throw new GantryError('CONFIG_INVALID', `${where} is not an OpenPGP public key: ${(err as Error).message}`, {
      hint: 'export the key with: gpg --armor --export FINGERPRINT',
    });
  }
  if (keys.length === 0) throw new GantryError('CONFIG_INVALID', `${where} holds no OpenPGP key`);
  return Promise.all(keys.map((k) => describe(k.isPrivate() ? k.toPublic() : (k as PublicKey))));
}

function signerOf(key: PgpKey): SignerInfo {
  const who = key.info.userIds[0];
  return { fingerprint: key.info.fingerprint, userIds: key.info.userIds, label: who ? `${who} (${key.info.fingerprint})` : key.info.fingerprint };
}

interface SignatureLike {
  keyID: import('openpgp').KeyID;
  verified: Promise<boolean>;
  signature: Promise<import('openpgp').Signature>;
}

/** The issuer fingerprint subpacket (v4+ signatures by modern gpg carry it), else the key ID. */
async function issuerOf(sig: SignatureLike): Promise<string> {
  try {
    const packet = (await sig.signature).packets[0] as { issuerFingerprint?: Uint8Array | null } | undefined;
    const fp = packet?.issuerFingerprint;
    if (fp && fp.length > 0) return `key ${Buffer.from(fp).toString('hex')}`;
  } catch {
    // fall back to the key ID
  }
  return `key ID ${sig.keyID.toHex().toLowerCase()}`;
}

/**
 * Decides on the signatures openpgp.js returned: the first one that verifies
 * with a currently valid key wins; otherwise the error names why the best
 * candidate failed (unknown key, expired or revoked key, bad signature).
 */
async function judge(signatures: SignatureLike[], keys: PgpKey[], what: string, scopeText: string): Promise<SignerInfo> {
  if (signatures.length === 0) {
    throw new GantryError('SIGNATURE_INVALID', `${what}: the signature holds no OpenPGP signature packet`, { hint: 'the signature file is damaged; fetch or make it again' });
  }
  const problems: string[] = [];
  for (const sig of signatures) {
    const keyId = sig.keyID.toHex().toLowerCase();
    const key = keys.find((k) => k.keyIds.includes(keyId));
    if (!key) {
      problems.push(`signed by ${await issuerOf(sig)}, which is not trusted ${scopeText}`);
      continue;
    }
    if (key.info.problem !== undefined) {
      problems.push(`signed by ${key.info.fingerprint}, but ${key.info.problem}`);
      continue;
    }
    try {
      await sig.verified;
    } catch (err) {
      problems.push(`the signature by ${key.info.fingerprint} does not verify: ${(err as Error).message}`);
      continue;
    }
    return signerOf(key);
  }
  throw new GantryError('SIGNATURE_INVALID', `${what}: ${problems.join('; ')}`, {
    hint: problems.some((p) => p.includes('not trusted'))
      ? 'trust the signer\'s key (gantry trust --prefix NAME KEYFILE) if you know it is genuine'
      : 'the image or its signature was altered, or the key is no longer valid; do not use this image',
  });
}

/** Checks an armored (or binary) detached signature over `data`. */
export async function verifyDetached(data: Buffer, signature: Buffer, keys: PgpKey[], what: string, scopeText: string): Promise<SignerInfo> {
  const pgp = await openpgp();
  let sig: import('openpgp').Signature;
  try {
    sig = looksArmored(signature)
      ? await pgp.readSignature({ armoredSignature: signature.toString('utf8') })
      : await pgp.readSignature({ binarySignature: new Uint8Array(signature) });
  } catch (err) {
    throw new GantryError('SIGNATURE_INVALID', `${what}: the signature is not an OpenPGP signature: ${(err as Error).message}`, {
      hint: 'make a detached signature with: gpg --armor --detach-sign FILE',
    });
  }
  const message = await pgp.createMessage({ binary: new Uint8Array(data) });
  const result = await pgp.verify({ message, signature: sig, verificationKeys: keys.map((k) => k.key), format: 'binary' });
  return judge(result.signatures, keys, what, scopeText);
}

/** Checks an OpenPGP signed message (gpg --sign) and returns its literal data. */
export async function verifySignedMessage(signed: Buffer, keys: PgpKey[], what: string, scopeText: string): Promise<{ payload: Buffer; signer: SignerInfo }> {
  const pgp = await openpgp();
  let message: import('openpgp').Message<Uint8Array>;
  try {
    message = looksArmored(signed)
      ? await pgp.readMessage({ armoredMessage: signed.toString('utf8') }) as import('openpgp').Message<Uint8Array>
      : await pgp.readMessage({ binaryMessage: new Uint8Array(signed) });
  } catch (err) {
    throw new GantryError('SIGNATURE_INVALID', `${what}: not an OpenPGP signed message: ${(err as Error).message}`, {
      hint: 'the signature is damaged; sign the image again (skopeo copy --sign-by)',
    });
  }
  let result: Awaited<ReturnType<OpenPgp['verify']>>;
  try {
    result = await pgp.verify({ message, verificationKeys: keys.map((k) => k.key), format: 'binary' });
  } catch (err) {
    throw new GantryError('SIGNATURE_INVALID', `${what}: cannot read the signed message: ${(err as Error).message}`);
  }
  const signer = await judge(result.signatures, keys, what, scopeText);
  return { payload: Buffer.from(result.data as Uint8Array), signer };
}
