/**
 * stage0's fetch pipeline: reference -> source -> resolved manifest ->
 * signature check -> config -> layers (downloaded and unpacked, several at a
 * time) -> image record. The record is written last, in one transaction, so
 * other commands never see a half-fetched image; blobs and snapshots land
 * atomically on their own and a crash leaves only garbage for gc.
 */
import type { Context } from '../context.js';
import { GantryError, isGantryError } from '../errors.js';
import type { ImageRecord, LayerRecord } from '../store/metadata.js';
import type { Store } from '../store/store.js';
import { SnapshotStore, type UnpackResult } from '../store/snapshots.js';
import { startUnpack } from '../store/unpack-thread.js';
import { verifyImage, type TrustOptions, type VerificationOutcome } from '../trust/verify.js';
import { mapLimit } from '../util/concurrency.js';
import { hostPlatform, type Descriptor, type ImageConfig, type ImageSource, type LayerDescriptor, type Platform, type ResolvedManifest } from './model.js';
import { parseReference, type DockerReference, type ImageReference } from './reference.js';
import type { RegistriesConf } from './registry/registries-conf.js';

/** rkt's pull policies: never (store only), new (fetch if absent), update (always ask the source). */
export type PullPolicy = 'never' | 'new' | 'update';

export interface FetchOptions {
  platform?: Platform;
  pullPolicy?: PullPolicy;
  /** Layers downloaded and unpacked at once. */
  parallelLayers?: number;
  /** appc names whose dependencies are being fetched, outermost first (cycle and depth checks). */
  appcChain?: string[];
  /** How signatures are checked (policy file, trust-on-first-use of discovered appc keys). */
  trust?: TrustOptions;
}

export interface FetchResult {
  image: ImageRecord;
  /** False when the store already had it and nothing was transferred. */
  transferred: boolean;
  verification?: VerificationOutcome;
}

const MAX_CONFIG_BYTES = 16 << 20;
/** An image ID or a prefix of one (sha256: or sha512:, or bare hex): never looked up on the network. */
const HEX_ID = /^((sha256|sha512):)?[0-9a-f]{6,128}$/;

export async function fetchImage(ctx: Context, store: Store, text: string, options: FetchOptions = {}): Promise<FetchResult> {
  const policy = options.pullPolicy ?? 'update';
  const ref = parseReference(text);
  const platform = options.platform ?? hostPlatform();

  if (ref.kind === 'name') return fetchByName(ctx, store, text, ref, policy, platform, options);
  if (ref.kind === 'docker') {
    if (policy !== 'update') {
      const local = store.meta.findImage(ref.canonical);
      if (local) return { image: local, transferred: false };
    }
    if (policy === 'never') throw notInStore(text);
    return fetchFromDocker(ctx, store, [ref], platform, options);
  }
  const { openLocalSource } = await import('./transports/index.js');
  return pullFromSource(ctx, store, await openLocalSource(ref, ctx), platform, options);
}

async function fetchByName(
  ctx: Context, store: Store, text: string, ref: Extract<ImageReference, { kind: 'name' }>,
  policy: PullPolicy, platform: Platform, options: FetchOptions,
): Promise<FetchResult> {
  // An ID or ID prefix never goes to the network.
  const local = store.meta.findImage(text) ?? (ref.docker ? store.meta.findImage(ref.docker.canonical) : undefined);
  if (local && (policy !== 'update' || HEX_ID.test(text) || !ref.docker)) return { image: local, transferred: false };
  if (HEX_ID.test(text) || !ref.docker) throw notInStore(text);
  const { loadRegistriesConf, expandShortName } = await import('./registry/registries-conf.js');
  const registriesConf = loadRegistriesConf(ctx);
  const candidates = ref.docker.explicitRegistry ? [ref.docker] : expandShortName(text, registriesConf);
  if (policy !== 'update') {
    for (const c of candidates) {
      const hit = store.meta.findImage(c.canonical);
      if (hit) return { image: hit, transferred: false };
    }
  }
  if (policy === 'never') throw notInStore(text);
  return fetchFromDocker(ctx, store, candidates, platform, options, registriesConf);
}

/** Tries each candidate name in order (short-name search); the first that exists wins. */
async function fetchFromDocker(
  ctx: Context, store: Store, candidates: DockerReference[], platform: Platform, options: FetchOptions, registriesConf?: RegistriesConf,
): Promise<FetchResult> {
  const { openRegistrySource } = await import('./registry/source.js');
  let lastError: unknown;
  for (const candidate of candidates) {
    const source = await openRegistrySource(candidate, ctx, registriesConf ? { registriesConf } : {});
    try {
      return await pullFromSource(ctx, store, source, platform, options);
    } catch (err) {
      if (!isGantryError(err, 'IMAGE_NOT_FOUND') || candidates.length === 1) throw err;
      ctx.debug(`${candidate.canonical}: not found, trying the next search registry`);
      lastError = err;
    }
  }
  throw lastError ?? notInStore(candidates.map((c) => c.canonical).join(', '));
}

function notInStore(text: string): GantryError {
  return new GantryError('IMAGE_NOT_FOUND', `image "${text}" is not in the store`, {
    hint: 'fetch it first (gantry fetch), or allow fetching with --pull-policy=new',
  });
}

/** Runs the pipeline for one opened source; always closes it. */
export async function pullFromSource(ctx: Context, store: Store, source: ImageSource, platform: Platform, options: FetchOptions = {}): Promise<FetchResult> {
  try {
    return await store.withUseLock(async () => {
      const manifest = await source.resolve(platform);
      ctx.debug(`${source.description}: manifest ${manifest.digest} (${manifest.mediaType}), ${manifest.layers.length} layer(s)`);

      // Before anything is downloaded or unpacked: the signature check.
      const verification = await verifyImage(ctx, manifest, source, options.trust);

      const existing = store.meta.getImage(manifest.digest);
      if (existing && (await store.isComplete(existing))) {
        const names = existing.names.includes(manifest.name) ? existing.names : [...existing.names, manifest.name];
        const now = new Date().toISOString();
        const updated = { ...existing, names, fetchedAt: now };
        store.meta.putImage(updated);
        for (const layer of manifest.layers) ctx.progress({ kind: 'phase', id: layer.digest, phase: 'cached' });
        await auditFetch(ctx, manifest, source, verification, false);
        return { image: updated, transferred: false, verification };
      }

      const configBytes = await fetchSmallBlob(store, source, manifest.config);
      const config = parseConfig(configBytes, manifest, source.description);
      const diffIds = manifest.format === 'oci' ? config.rootfs?.diff_ids : undefined;
      if (diffIds && diffIds.length !== manifest.layers.length) {
        throw new GantryError('MANIFEST_INVALID', `${source.description}: the config lists ${diffIds.length} layer diff IDs but the manifest has ${manifest.layers.length} layers`);
      }
      // appc dependencies come first, so a missing one fails the fetch before this image's layer is unpacked.
      const appc = manifest.format === 'appc' ? await import('./appc/dependencies.js') : undefined;
      const below = appc ? await appc.fetchAppcDependencies(ctx, store, configBytes, manifest.name, platform, options) : [];
      const layers = await fetchLayers(ctx, store, source, manifest, diffIds, options.parallelLayers ?? 4);
      const layerRecords = appc ? await appc.completeAppcLayers(store, configBytes, manifest.name, below, layers.map((l) => l.record)) : layers.map((l) => l.record);
      await store.content.putBytes({ digest: manifest.digest, size: manifest.raw.length }, manifest.raw);

      const now = new Date().toISOString();
      const record: ImageRecord = {
        id: manifest.digest,
        names: existing ? [...new Set([...existing.names, manifest.name])] : [manifest.name],
        manifestDigest: manifest.digest,
        manifestMediaType: manifest.mediaType,
        configDigest: manifest.config.digest,
        indexDigest: manifest.indexDigest,
        format: manifest.format,
        platform: manifest.platform,
        layers: layerRecords,
        size: manifest.raw.length + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
        unpackedSize: layers.reduce((n, l) => n + l.unpackedSize, 0),
        fetchedAt: now,
        lastUsedAt: now,
        labels: labelsOf(config, manifest.format),
        source: source.description,
      };
      store.meta.putImage(record);
      await auditFetch(ctx, manifest, source, verification, true);
      return { image: record, transferred: true, verification };
    });
  } finally {
    await source.close();
  }
}

/** Appends the fetch and its verification outcome to the audit log (refusals are logged by verifyImage). */
async function auditFetch(ctx: Context, manifest: ResolvedManifest, source: ImageSource, verification: VerificationOutcome, transferred: boolean): Promise<void> {
  const { recordAudit } = await import('../audit/log.js');
  await recordAudit(ctx, 'fetch', manifest.name, {
    result: 'stored', digest: manifest.digest, source: source.description, transferred, verification,
  });
}

async function fetchSmallBlob(store: Store, source: ImageSource, desc: Descriptor): Promise<Buffer> {
  if (desc.size > MAX_CONFIG_BYTES) {
    throw new GantryError('MANIFEST_INVALID', `${source.description}: config blob ${desc.digest} claims ${desc.size} bytes, more than the ${MAX_CONFIG_BYTES} gantry accepts`);
  }
  if (!(await store.content.has(desc.digest))) {
    await store.content.ingest({ digest: desc.digest, size: desc.size }, (offset) => source.openBlob(desc, offset));
  }
  return store.content.readBytes(desc.digest);
}

function parseConfig(bytes: Buffer, manifest: ResolvedManifest, where: string): ImageConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new GantryError('MANIFEST_INVALID', `${where}: the image config ${manifest.config.digest} is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new GantryError('MANIFEST_INVALID', `${where}: the image config ${manifest.config.digest} is not a JSON object`);
  }
  const config = parsed as ImageConfig;
  if (manifest.format === 'oci') {
    const ids = config.rootfs?.diff_ids;
    if (!Array.isArray(ids) || ids.some((d) => typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d))) {
      throw new GantryError('MANIFEST_INVALID', `${where}: the image config ${manifest.config.digest} has no valid rootfs.diff_ids`);
    }
  }
  return config;
}

/** An appc "config" is the image manifest, whose labels are a list of {name, value}. */
function labelsOf(config: ImageConfig, format: 'oci' | 'appc'): Record<string, string> {
  if (format === 'appc') {
    const list = (config as { labels?: unknown }).labels;
    const labels = Array.isArray(list) ? (list as { name: string; value: string }[]) : [];
    return Object.fromEntries(labels.filter((l) => typeof l?.name === 'string').map((l) => [l.name, String(l.value)]));
  }
  return { ...(config.config?.Labels ?? {}) };
}

interface FetchedLayer {
  record: LayerRecord;
  unpackedSize: number;
}

async function fetchLayers(
  ctx: Context, store: Store, source: ImageSource, manifest: ResolvedManifest, diffIds: string[] | undefined, parallel: number,
): Promise<FetchedLayer[]> {
  // With diff IDs known up front every layer's chain ID is too, so layers
  // are independent: each can be downloaded and unpacked in parallel, and a
  // layer another image already unpacked is skipped.
  const chainIds: (string | undefined)[] = [];
  let parent: string | undefined;
  for (let i = 0; i < manifest.layers.length; i++) {
    parent = diffIds ? SnapshotStore.chainId(parent, diffIds[i]!) : undefined;
    chainIds.push(parent);
  }
  return mapLimit(manifest.layers, parallel, async (layer, i) => {
    const id = layer.digest;
    const known = chainIds[i];
    if (known && (await store.snapshots.has(known))) {
      ctx.progress({ kind: 'start', id, label: shortLabel(layer.digest), total: layer.size });
      ctx.progress({ kind: 'phase', id, phase: 'cached' });
      return {
        record: { digest: layer.digest, mediaType: layer.mediaType, size: layer.size, diffId: diffIds![i]!, chainId: known },
        unpackedSize: (await store.snapshots.meta(known))?.unpackedSize ?? 0,
      };
    }
    ctx.progress({ kind: 'start', id, label: shortLabel(layer.digest), total: layer.size });
    const parentChainId = i === 0 ? undefined : chainIds[i - 1];
    let unpacked: UnpackResult;
    if (await store.content.has(layer.digest)) {
      ctx.progress({ kind: 'phase', id, phase: 'unpacking' });
      unpacked = await store.snapshots.unpack(layer, store.content.blobPath(layer.digest), parentChainId, diffIds?.[i]);
    } else {
      unpacked = await downloadAndUnpack(store, source, layer, parentChainId, diffIds?.[i], (n) => ctx.progress({ kind: 'advance', id, bytes: n }), () =>
        // Downloaded and its digest verified; extraction, which ran alongside, finishes.
        ctx.progress({ kind: 'phase', id, phase: 'unpacking' }),
      );
    }
    ctx.progress({ kind: 'phase', id, phase: 'done' });
    return {
      record: { digest: layer.digest, mediaType: layer.mediaType, size: layer.size, diffId: unpacked.diffId, chainId: unpacked.chainId },
      unpackedSize: unpacked.unpackedSize,
    };
  });
}

/**
 * Downloads a layer into the content store and unpacks it from the same bytes
 * as they arrive, so extraction overlaps the transfer and the blob is not read
 * back. The unpacker hashes what it receives and the snapshot only lands when
 * both the blob digest and the diff ID match; if either side fails, the other
 * is stopped and nothing is kept.
 */
async function downloadAndUnpack(
  store: Store, source: ImageSource, layer: LayerDescriptor, parentChainId: string | undefined,
  diffId: string | undefined, onBytes: (n: number) => void, onDownloaded: () => void,
): Promise<UnpackResult> {
  const unpack = startUnpack({ storeRoot: store.root, layer, parentChainId, expectedDiffId: diffId });
  const abort = new AbortController();
  unpack.result.catch((err: unknown) => abort.abort(err));
  let fed = 0;
  const ingesting = store.content
    .ingest({ digest: layer.digest, size: layer.size }, (offset) => source.openBlob(layer, offset), {
      onBytes,
      signal: abort.signal,
      description: source.description,
      onData: async (chunk) => {
        fed += chunk.length;
        await unpack.write(chunk);
      },
    })
    .then(
      () => {
        // Another process stored the blob while we waited for its lock: no
        // bytes came through here, so unpack from the stored file instead.
        onDownloaded();
        if (fed !== layer.size) unpack.abort('blob already stored by another process');
        else unpack.end();
      },
      (err: unknown) => {
        unpack.abort((err as Error)?.message ?? 'download failed');
        throw err;
      },
    );
  const [ingested, unpacked] = await Promise.allSettled([ingesting, unpack.result]);
  // The download's verdict first: a bad blob explains a failed unpack, not the reverse.
  if (ingested.status === 'rejected' && !(abort.signal.aborted && ingested.reason === abort.signal.reason)) throw ingested.reason;
  if (unpacked.status === 'rejected') {
    if (ingested.status === 'fulfilled' && fed !== layer.size) {
      return store.snapshots.unpack(layer, store.content.blobPath(layer.digest), parentChainId, diffId);
    }
    throw unpacked.reason;
  }
  return unpacked.value;
}

function shortLabel(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13);
}
