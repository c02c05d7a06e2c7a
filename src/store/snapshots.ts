/**
 * Layer snapshots: each layer extracted once ("render on fetch") into its own
 * directory, in the form an overlay mount stacks directly.
 *
 * Layout under `<dir>/store`: `snapshots/<chainIdHex>/fs/` holds the layer's
 * tree (whiteouts as 0:0 character devices, opaque directories marked with
 * trusted.overlay.opaque=y) and `snapshots/<chainIdHex>/meta.json` describes
 * it. A snapshot is named by its OCI chainID, so two images sharing a base
 * share its snapshots.
 *
 * Lifecycle: `unpack` extracts into `tmp/unpack-*` (private to this process),
 * checks the uncompressed digest (diffID) and the blob's own digest, writes
 * meta.json, and renames the whole directory into `snapshots/` in one step:
 * a snapshot directory either is complete or does not exist. If another
 * process renamed the same chainID first, ours is discarded. `remove` renames
 * the snapshot out of `snapshots/` before deleting it, for the same reason.
 * Deciding what is unreferenced is the caller's (gc's) job.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { errnoCode, GantryError, translateFsError } from '../errors.js';
import { MEDIA_TYPES, type Digest, type LayerCompression } from '../image/model.js';
import { parseDigest, digestOf } from '../image/digest.js';

export interface UnpackResult {
  diffId: Digest;
  chainId: Digest;
  unpackedSize: number;
}

export interface UnpackLayer {
  digest: Digest;
  mediaType: string;
  compression: LayerCompression;
  rootPrefix?: string;
}

/** The contents of a snapshot's meta.json. */
export interface SnapshotMeta {
  chainId: Digest;
  diffId: Digest;
  parent?: Digest;
  /** Digest of the (compressed) blob it was unpacked from. */
  digest: Digest;
  mediaType: string;
  unpackedSize: number;
  createdAt: string;
}

/** Hashes (and counts) what flows through, unchanged. */
class HashTap extends Transform {
  readonly hash;
  bytes = 0;

  constructor(algorithm: string, private readonly onBytes?: (n: number) => void) {
    super();
    this.hash = createHash(algorithm);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

export class SnapshotStore {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** OCI image-spec chainID: the diffID for the bottom layer, else sha256(parent + " " + diffID). */
  static chainId(parentChainId: Digest | undefined, diffId: Digest): Digest {
    parseDigest(diffId);
    if (parentChainId === undefined) return diffId;
    parseDigest(parentChainId);
    return digestOf(`${parentChainId} ${diffId}`);
  }

  dirPath(chainId: Digest): string {
    const { algorithm, hex } = parseDigest(chainId);
    // A bottom layer's chainID is its diffID, which could in theory be sha512.
    return path.join(this.root, 'snapshots', algorithm === 'sha256' ? hex : `${algorithm}-${hex}`);
  }

  fsPath(chainId: Digest): string {
    return path.join(this.dirPath(chainId), 'fs');
  }

  async has(chainId: Digest): Promise<boolean> {
    return (await this.meta(chainId)) !== undefined;
  }

  /** The snapshot's meta.json, or undefined if there is no (complete) snapshot. */
  async meta(chainId: Digest): Promise<SnapshotMeta | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(path.join(this.dirPath(chainId), 'meta.json'), 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as SnapshotMeta;
    } catch (err) {
      throw new GantryError('STORE_CORRUPT', `snapshot ${chainId}: meta.json is not valid JSON`, {
        hint: 'remove the images that use this layer (gantry image rm) and fetch them again',
        cause: err,
      });
    }
  }

  async unpack(
    layer: UnpackLayer,
    /** The blob's file in the content store, or a stream of its bytes (unpacking while it downloads). */
    blob: string | Readable,
    parentChainId: Digest | undefined,
    expectedDiffId?: Digest,
    onBytes?: (n: number) => void,
    /**
     * The stream's bytes were already checked against the layer digest by the
     * content store, and the stream ends only after that check (so the
     * snapshot can never land first): skip hashing them a second time.
     */
    blobVerifiedUpstream = false,
  ): Promise<UnpackResult> {
    const layerName = `layer ${layer.digest}`;
    const blobAlgorithm = parseDigest(layer.digest).algorithm;
    const blobOrigin = typeof blob === 'string' ? `the blob on disk (${blob})` : 'the downloaded blob';
    if (expectedDiffId !== undefined) {
      const chainId = SnapshotStore.chainId(parentChainId, expectedDiffId);
      const existing = await this.meta(chainId);
      if (existing) return { diffId: existing.diffId, chainId, unpackedSize: existing.unpackedSize };
    }

    // The tar machinery loads only when a layer is unpacked, not on every
    // command that merely opens the store (gantry run's start-up).
    const { decompressor, extractTar } = await import('./extract.js');
    const tmpRoot = path.join(this.root, 'tmp');
    await fsp.mkdir(tmpRoot, { recursive: true, mode: 0o700 });
    const work = await fsp.mkdtemp(path.join(tmpRoot, 'unpack-'));
    try {
      const fsDir = path.join(work, 'fs');
      await fsp.mkdir(fsDir, { mode: 0o755 });
      const blobTap = blobVerifiedUpstream && typeof blob !== 'string' ? undefined : new HashTap(blobAlgorithm, onBytes);
      const tarTap = new HashTap('sha256');
      const stats = await extractTar(
        typeof blob === 'string' ? fs.createReadStream(blob, { highWaterMark: 1 << 20 }) : blob,
        [...(blobTap ? [blobTap] : []), decompressor(layer.compression), tarTap],
        fsDir,
        {
          layerName,
          ...(layer.rootPrefix ? { rootPrefix: layer.rootPrefix } : {}),
          whiteouts: layer.mediaType !== MEDIA_TYPES.aci,
        },
      );
      const blobDigest = blobTap ? `${blobAlgorithm}:${blobTap.hash.digest('hex')}` : layer.digest;
      if (blobDigest !== layer.digest) {
        throw new GantryError('DIGEST_MISMATCH', `${layerName}: ${blobOrigin} has digest ${blobDigest}`, {
          hint: 'the store is damaged or was tampered with; remove the image (gantry image rm) and fetch it again',
        });
      }
      const diffId = `sha256:${tarTap.hash.digest('hex')}`;
      if (expectedDiffId !== undefined && diffId !== expectedDiffId) {
        throw new GantryError('DIGEST_MISMATCH', `${layerName}: uncompressed content has digest ${diffId}, the image config says ${expectedDiffId}`, {
          hint: 'the image config does not match its layers; the image is broken or was tampered with',
        });
      }
      const chainId = SnapshotStore.chainId(parentChainId, diffId);
      const meta: SnapshotMeta = {
        chainId,
        diffId,
        ...(parentChainId !== undefined ? { parent: parentChainId } : {}),
        digest: layer.digest,
        mediaType: layer.mediaType,
        unpackedSize: stats.fileBytes,
        createdAt: new Date().toISOString(),
      };
      await writeSynced(path.join(work, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);

      const dest = this.dirPath(chainId);
      await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 });
      try {
        await fsp.rename(work, dest);
      } catch (err) {
        const code = errnoCode(err);
        if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
        // Another process unpacked the same chain first; its copy is as good as ours.
        await fsp.rm(work, { recursive: true, force: true });
        const theirs = await this.meta(chainId);
        return { diffId, chainId, unpackedSize: theirs?.unpackedSize ?? stats.fileBytes };
      }
      return { diffId, chainId, unpackedSize: stats.fileBytes };
    } catch (err) {
      await fsp.rm(work, { recursive: true, force: true }).catch(() => {});
      throw translateFsError(err, layerName);
    }
  }

  async remove(chainId: Digest): Promise<void> {
    const dir = this.dirPath(chainId);
    const tmpRoot = path.join(this.root, 'tmp');
    await fsp.mkdir(tmpRoot, { recursive: true, mode: 0o700 });
    const grave = path.join(tmpRoot, `remove-${randomBytes(6).toString('hex')}`);
    try {
      await fsp.rename(dir, grave);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    await fsp.rm(grave, { recursive: true, force: true });
  }

  async list(): Promise<Digest[]> {
    let names: string[];
    try {
      names = await fsp.readdir(path.join(this.root, 'snapshots'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: Digest[] = [];
    for (const name of names.sort()) {
      const digest = /^[0-9a-f]{64}$/.test(name) ? `sha256:${name}` : /^sha512-[0-9a-f]{128}$/.test(name) ? name.replace('-', ':') : undefined;
      if (digest !== undefined) out.push(digest);
    }
    return out;
  }
}

async function writeSynced(file: string, text: string): Promise<void> {
  const fh = await fsp.open(file, 'wx', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
