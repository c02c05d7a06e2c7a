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
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { GantryError, translateFsError } from '../errors.js';
import type { ImageRecord } from '../store/metadata.js';
import type { Store } from '../store/store.js';
import { MEDIA_TYPES, type ImageConfig } from './model.js';
import { digestOf } from './digest.js';

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
function exportTag(image: ImageRecord, requested?: string): string {
  if (requested) return requested;
  const name = image.names[0];
  const m = name ? /:([\w][\w.-]{0,127})$/.exec(name) : null;
  return m ? m[1]! : 'latest';
}

export async function exportOciArchive(store: Store, image: ImageRecord, target: string, tag?: string): Promise<void> {
  if (image.format !== 'oci') {
    throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `image ${image.id} is an appc ACI; it cannot be exported as an OCI archive`, { hint: 'export it as an ACI: gantry image export --format aci IMAGE FILE.aci' });
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
  const manifestDigest = digestOf(manifestBytes);
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

/** "docker.io/library/busybox:latest" -> { name: "docker.io/library/busybox", version: "latest" }, as an AC identifier. */
function appcNameOf(imageName: string | undefined): { name: string; version?: string } {
  let text = imageName ?? 'gantry/image';
  let version: string | undefined;
  const at = text.indexOf('@');
  if (at >= 0) text = text.slice(0, at);
  const colon = text.lastIndexOf(':');
  if (colon > text.lastIndexOf('/')) {
    version = text.slice(colon + 1);
    text = text.slice(0, colon);
  }
  // AC identifiers: lowercase [a-z0-9] runs separated by single -._~/ (a registry port's ":" becomes "-").
  const name = text.toLowerCase().replace(/:/g, '-').replace(/[^a-z0-9._~/-]/g, '-')
    .replace(/[-._~/]{2,}/g, (run) => run[0]!).replace(/^[-._~/]+|[-._~/]+$/g, '');
  return { name: name || 'gantry/image', ...(version ? { version } : {}) };
}

/**
 * The appc image manifest for an OCI image: name and version from the
 * image name, os/arch labels, and the run config as the app (Entrypoint and
 * Cmd joined into exec, since appc has no separate arguments; a user name
 * keeps its name and gets the primary group it has in the rendered rootfs).
 */
async function aciManifestFromOci(store: Store, image: ImageRecord, rootfs: string): Promise<Record<string, unknown>> {
  const config = JSON.parse((await store.content.readBytes(image.configDigest)).toString('utf8')) as ImageConfig;
  const run = config.config ?? {};
  const { name, version } = appcNameOf(image.names[0]);
  const { appcArch } = await import('./appc/discovery.js');
  const labels = [
    ...(version ? [{ name: 'version', value: version }] : []),
    { name: 'os', value: image.platform.os },
    { name: 'arch', value: appcArch(image.platform.architecture, image.platform.variant) },
  ];
  const exec = [...(run.Entrypoint ?? []), ...(run.Cmd ?? [])];
  let user = '0';
  let group = '0';
  if (run.User) {
    const [u, g] = run.User.split(':') as [string, string | undefined];
    user = u || '0';
    if (g) group = g;
    else {
      const { resolveUser } = await import('../stage1/user.js');
      try {
        group = String(resolveUser(rootfs, u).gid);
      } catch {
        group = '0'; // a user the image's passwd lacks fails at run time either way
      }
    }
  }
  const env = (run.Env ?? []).map((e) => {
    const eq = e.indexOf('=');
    return eq < 0 ? { name: e, value: '' } : { name: e.slice(0, eq), value: e.slice(eq + 1) };
  });
  const ports = Object.keys(run.ExposedPorts ?? {}).flatMap((key) => {
    const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(key);
    return m ? [{ name: `${m[2] ?? 'tcp'}-${m[1]}`, protocol: m[2] ?? 'tcp', port: Number(m[1]) }] : [];
  });
  const annotations = [
    ...(config.created ? [{ name: 'created', value: config.created }] : []),
    ...Object.entries(run.Labels ?? {}).filter(([k]) => /^[a-z0-9]+(?:[-._~/][a-z0-9]+)*$/.test(k)).map(([k, v]) => ({ name: k, value: String(v) })),
  ];
  return {
    acKind: 'ImageManifest',
    acVersion: '0.8.11',
    name,
    labels,
    ...(exec.length > 0 && exec[0]!.startsWith('/') ? {
      app: {
        exec, user, group,
        ...(env.length ? { environment: env } : {}),
        ...(run.WorkingDir ? { workingDirectory: run.WorkingDir } : {}),
        ...(ports.length ? { ports } : {}),
      },
    } : {}),
    ...(annotations.length ? { annotations } : {}),
  };
}

/**
 * Writes `image` as an ACI: a tar of `manifest` and `rootfs/`, the rootfs
 * being the image rendered flat (all layers, dependencies and whitelist
 * applied). An appc image keeps its own manifest minus `dependencies` and
 * `pathWhitelist` (both already applied to the flat rootfs); an OCI image
 * gets one converted from its config. One GNU tar process writes the
 * archive (numeric owners, sorted names, so equal trees give equal bytes
 * save for mtimes); the file appears under its name only when complete.
 * The result is unsigned: fetch it back with --insecure-options=image, or
 * sign it (gpg --armor --detach-sign) for a trusted key.
 */
export async function exportAci(store: Store, image: ImageRecord, target: string): Promise<void> {
  const { renderSnapshots } = await import('../store/render.js');
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const tmpRoot = path.join(store.root, 'tmp');
  await fs.mkdir(tmpRoot, { recursive: true, mode: 0o700 });
  const work = await fs.mkdtemp(path.join(tmpRoot, 'export-aci-'));
  const temp = path.join(path.dirname(path.resolve(target)), `.${path.basename(target)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const rootfs = path.join(work, 'rootfs');
    await renderSnapshots(store.layerPaths(image), rootfs);
    let manifest: Record<string, unknown>;
    if (image.format === 'appc') {
      manifest = JSON.parse((await store.content.readBytes(image.configDigest)).toString('utf8')) as Record<string, unknown>;
      delete manifest.dependencies;
      delete manifest.pathWhitelist;
    } else {
      manifest = await aciManifestFromOci(store, image, rootfs);
    }
    await fs.writeFile(path.join(work, 'manifest'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
    try {
      await promisify(execFile)('tar', ['--numeric-owner', '--sort=name', '--xattrs', '--xattrs-include=security.capability', '-C', work, '-cf', temp, 'manifest', 'rootfs'], { maxBuffer: 1 << 20 });
    } catch (err) {
      throw new GantryError('INTERNAL', `cannot write the ACI ${target}: tar failed: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`, {
        hint: 'check that GNU tar is installed and the target directory is writable',
        cause: err,
      });
    }
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw translateFsError(err, target);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
