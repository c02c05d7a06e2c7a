/**
 * Writes an image from the store as an OCI archive (a tar of an OCI image
 * layout), the format `skopeo copy oci-archive:` and `podman load` read.
 * Docker schema 2 manifests are rewritten with the equivalent OCI media
 * types (blobs stay byte-identical, so every layer digest is unchanged).
 * The archive is written beside the target and renamed into place, so a
 * failure never leaves a partial file under the requested name.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { GantryError, translateFsError } from '../errors.js';
import type { ImageRecord } from '../store/metadata.js';
import type { Store } from '../store/store.js';
import { MEDIA_TYPES } from './model.js';

const OCI_EQUIVALENT: Record<string, string> = {
  [MEDIA_TYPES.dockerManifest]: MEDIA_TYPES.ociManifest,
  [MEDIA_TYPES.dockerConfig]: MEDIA_TYPES.ociConfig,
  [MEDIA_TYPES.dockerLayerGzip]: MEDIA_TYPES.ociLayerGzip,
  [MEDIA_TYPES.dockerLayerForeign]: MEDIA_TYPES.ociLayerNondistributableGzip,
};

interface ManifestJson {
  schemaVersion: number;
  mediaType?: string;
  config: { mediaType: string; digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
  annotations?: Record<string, string>;
}

/** The tag an exported image is known by inside the archive ("latest" for "docker.io/library/busybox:latest"). */
export function exportTag(image: ImageRecord, requested?: string): string {
  if (requested) return requested;
  const name = image.names[0];
  const m = name ? /:([\w][\w.-]{0,127})$/.exec(name) : null;
  return m ? m[1]! : 'latest';
}

export async function exportOciArchive(store: Store, image: ImageRecord, target: string, tag?: string): Promise<void> {
  if (image.format !== 'oci') {
    throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `image ${image.id} is an appc ACI; it cannot be exported as an OCI archive`, { hint: 'export it as an ACI once that format is supported' });
  }
  const original = JSON.parse((await store.content.readBytes(image.manifestDigest)).toString('utf8')) as ManifestJson;
  const converted: ManifestJson = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { ...original.config, mediaType: OCI_EQUIVALENT[original.config.mediaType] ?? original.config.mediaType },
    layers: original.layers.map((l) => ({ ...l, mediaType: OCI_EQUIVALENT[l.mediaType] ?? l.mediaType })),
    ...(original.annotations ? { annotations: original.annotations } : {}),
  };
  const manifestBytes = Buffer.from(JSON.stringify(converted));
  const manifestDigest = `sha256:${createHash('sha256').update(manifestBytes).digest('hex')}`;
  const refName = exportTag(image, tag);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [{
      mediaType: MEDIA_TYPES.ociManifest, digest: manifestDigest, size: manifestBytes.length,
      annotations: { 'org.opencontainers.image.ref.name': refName },
      platform: image.platform,
    }],
  };

  const temp = path.join(path.dirname(path.resolve(target)), `.${path.basename(target)}.${randomBytes(4).toString('hex')}.tmp`);
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(temp, { flags: 'wx', mode: 0o644 }));
  const add = (name: string, body: Buffer) => new Promise<void>((resolve, reject) => pack.entry({ name, mode: 0o644 }, body, (e) => (e ? reject(e) : resolve())));
  const addFile = (name: string, file: string, size: number) =>
    new Promise<void>((resolve, reject) => {
      const entry = pack.entry({ name, size, mode: 0o644 }, (e) => (e ? reject(e) : resolve()));
      createReadStream(file).on('error', reject).pipe(entry);
    });
  const blobName = (digest: string) => `blobs/${digest.replace(':', '/')}`;
  try {
    await add('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    await add('index.json', Buffer.from(JSON.stringify(index)));
    await add(blobName(manifestDigest), manifestBytes);
    const seen = new Set<string>();
    for (const desc of [converted.config, ...converted.layers]) {
      if (seen.has(desc.digest)) continue;
      seen.add(desc.digest);
      await addFile(blobName(desc.digest), store.content.blobPath(desc.digest), desc.size);
    }
    pack.finalize();
    await written;
    await fs.rename(temp, target);
  } catch (err) {
    pack.destroy();
    await written.catch(() => {});
    await fs.rm(temp, { force: true });
    throw translateFsError(err, target);
  }
}
