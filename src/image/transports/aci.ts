/**
 * appc images: an ACI file on disk (`./x.aci`, `file:///x.aci`) or at an
 * http(s) URL. An ACI is one tar (uncompressed or gzip; bzip2, xz and zstd
 * are refused) holding `manifest` (the appc image manifest, JSON) and the
 * filesystem under `rootfs/`.
 *
 * Lifecycle: `resolve` downloads a URL into <dir>/store/tmp (once), then reads
 * the ACI in a single pass: sha256 of the file as stored, sha512 of the
 * uncompressed tar (the appc image ID), and the manifest entry, which it
 * validates. `openBlob` serves the manifest bytes (the "config") from memory
 * and the whole ACI file (the single "layer") from disk, from an offset.
 * `close()` deletes a downloaded file, whatever happened.
 *
 * The model wants a manifest digest as the image ID. appc has none: its image
 * ID is sha512-<hex> of the uncompressed tar. gantry writes a small synthetic
 * manifest that records the config and layer descriptors (fixed key order,
 * so deterministic bytes) and uses its sha256 as the digest; the appc image
 * ID is kept in that manifest's annotations (`appcImageId()` reads it back),
 * so `gantry image list` can still show rkt's sha512-... IDs.
 *
 * Signatures: the source also finds each ACI's detached signature for the
 * trust check (`signatureSubjects()`): `x.aci.asc` beside a local `x.aci`,
 * `<url>.asc` beside an https URL, and the discovered `.aci.asc` URL for an
 * appc name. An appc name (`example.com/app:1.0,os=linux`) is resolved by
 * meta discovery (../appc/discovery.ts) and then downloaded like a URL; the
 * ACI it yields must carry the name (and version) that was asked for.
 */
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import type { Context } from '../../context.js';
import { errnoCode, GantryError, translateFsError } from '../../errors.js';
import { formatPlatform, normalizePlatform } from '../manifest.js';
import { MEDIA_TYPES, type Descriptor, type ImageSource, type LayerCompression, type LayerDescriptor, type Platform, type ResolvedManifest } from '../model.js';
import { formatReference, type ImageReference } from '../reference.js';
import { sniffCompression } from './archive.js';
import { checkOffset, missingBlob } from './oci-layout.js';
import { digestOf } from '../digest.js';

/** Media type of gantry's synthetic manifest for an ACI (never sent anywhere). */
export const APPC_SYNTHETIC_MANIFEST = 'application/vnd.gantry.appc.image.v0+json';
/** Annotations on the synthetic manifest. */
export const APPC_NAME_ANNOTATION = 'dev.gantry.appc.name';
export const APPC_IMAGE_ID_ANNOTATION = 'dev.gantry.appc.image-id';
export const ACI_ROOT_PREFIX = 'rootfs/';

const MAX_ACI_MANIFEST = 1024 * 1024;
const MAX_REDIRECTS = 5;
/** A stalled server fails the download instead of hanging the command. */
const IDLE_TIMEOUT_MS = 60_000;
const AC_IDENTIFIER = /^[a-z0-9]+(?:[-._~/][a-z0-9]+)*$/;

/** appc arch label -> OCI platform (appc spec "Arch Values"). */
const APPC_ARCH: Record<string, { architecture: string; variant?: string }> = {
  amd64: { architecture: 'amd64' },
  i386: { architecture: '386' },
  aarch64: { architecture: 'arm64' },
  aarch64_be: { architecture: 'arm64be' },
  armv6l: { architecture: 'arm', variant: 'v6' },
  armv7l: { architecture: 'arm', variant: 'v7' },
  armv7b: { architecture: 'armbe', variant: 'v7' },
  ppc64: { architecture: 'ppc64' },
  ppc64le: { architecture: 'ppc64le' },
  s390x: { architecture: 's390x' },
};

export interface AciManifest {
  acKind: 'ImageManifest';
  acVersion: string;
  name: string;
  labels?: { name: string; value: string }[];
  app?: unknown;
  annotations?: { name: string; value: string }[];
  dependencies?: unknown[];
}

function manifestInvalid(where: string, problem: string): GantryError {
  return new GantryError('MANIFEST_INVALID', `${where}: invalid ACI manifest: ${problem}`, {
    hint: 'the ACI is damaged or not an appc image; rebuild it (acbuild, docker2aci) and try again',
  });
}

function archiveInvalid(where: string, problem: string): GantryError {
  return new GantryError('ARCHIVE_INVALID', `${where}: ${problem}`, {
    hint: 'an ACI is a tar (optionally gzip-compressed) of "manifest" and "rootfs/"; rebuild or re-download it',
  });
}

/** Validates the appc image manifest fields gantry relies on. */
function parseAciManifest(raw: Buffer, where: string): AciManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw manifestInvalid(where, `not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw manifestInvalid(where, 'not a JSON object');
  const m = doc as Record<string, unknown>;
  if (m.acKind !== 'ImageManifest') throw manifestInvalid(where, `acKind is ${JSON.stringify(m.acKind)}, expected "ImageManifest"`);
  if (typeof m.acVersion !== 'string' || !/^\d+\.\d+\.\d+/.test(m.acVersion)) {
    throw manifestInvalid(where, `acVersion ${JSON.stringify(m.acVersion)} is not a version`);
  }
  if (typeof m.name !== 'string' || m.name === '') throw manifestInvalid(where, 'the image has no "name"');
  if (!AC_IDENTIFIER.test(m.name)) throw manifestInvalid(where, `name "${m.name}" is not an AC identifier (lowercase [a-z0-9] separated by -._~/)`);
  for (const field of ['labels', 'annotations'] as const) {
    const list = m[field];
    if (list === undefined) continue;
    if (!Array.isArray(list) || !list.every((l) => typeof l === 'object' && l !== null
      && typeof (l as Record<string, unknown>).name === 'string' && typeof (l as Record<string, unknown>).value === 'string')) {
      throw manifestInvalid(where, `"${field}" must be a list of {"name": string, "value": string}`);
    }
  }
  return m as unknown as AciManifest;
}

function label(manifest: AciManifest, name: string): string | undefined {
  return manifest.labels?.find((l) => l.name === name)?.value;
}

/**
 * The platform an ACI declares (labels os/arch) filled in from `wanted` where
 * it says nothing: appc makes both labels optional, meaning "any".
 */
function aciPlatform(manifest: AciManifest, wanted: Platform): Platform {
  const os = label(manifest, 'os');
  const arch = label(manifest, 'arch');
  if (arch === undefined) return { ...wanted, os: os ?? wanted.os };
  const mapped = APPC_ARCH[arch] ?? { architecture: arch };
  const platform: Platform = { os: os ?? wanted.os, architecture: mapped.architecture };
  if (mapped.variant !== undefined) platform.variant = mapped.variant;
  return platform;
}

/** The appc image ID ("sha512-<hex>") of an ACI resolved by this transport, if it is one. */
export function appcImageId(resolved: ResolvedManifest): string | undefined {
  if (resolved.format !== 'appc') return undefined;
  try {
    const doc = JSON.parse(resolved.raw.toString('utf8')) as { annotations?: Record<string, string> };
    return doc.annotations?.[APPC_IMAGE_ID_ANNOTATION];
  } catch {
    return undefined;
  }
}

class HashTap extends Transform {
  constructor(private readonly hash: Hash, private readonly onBytes?: (n: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    callback(null, chunk);
  }
}

interface AciInspection {
  manifestRaw: Buffer;
  manifest: AciManifest;
  /** sha256 of the file as stored: the layer digest. */
  fileDigest: string;
  fileSize: number;
  /** sha512 hex of the uncompressed tar: the appc image ID. */
  tarSha512: string;
  compression: LayerCompression;
}

/** One pass over the ACI file; see the module comment. */
async function inspectAci(file: string, where: string): Promise<AciInspection> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new GantryError('IMAGE_NOT_FOUND', `${where}: file ${file} does not exist`, { hint: 'check the path of the .aci file' });
    }
    throw err;
  }
  const head = Buffer.alloc(8);
  let fileSize: number;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw archiveInvalid(where, `${file} is not a regular file`);
    fileSize = st.size;
    await handle.read(head, 0, head.length, 0);
  } finally {
    await handle.close();
  }
  if (fileSize === 0) throw archiveInvalid(where, 'the file is empty');
  const sniffed = sniffCompression(head);
  if (sniffed !== 'none' && sniffed !== 'gzip') {
    throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `${where}: the ACI is ${sniffed}-compressed; gantry reads uncompressed and gzip ACIs`, {
      hint: `recompress it: ${sniffed === 'bzip2' ? 'bunzip2' : sniffed === 'xz' ? 'unxz' : 'unzstd'} < FILE | gzip > FILE.aci`,
    });
  }

  const fileHash = createHash('sha256');
  const tarHash = createHash('sha512');
  let manifestRaw: Buffer | undefined;
  let sawRootfs = false;
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const name = header.name.split('/').filter((p) => p !== '' && p !== '.').join('/');
    stream.on('end', () => next());
    if (name === 'manifest') {
      if (manifestRaw !== undefined) {
        stream.destroy();
        next(manifestInvalid(where, 'the ACI has two "manifest" entries'));
        return;
      }
      if (header.type !== 'file') {
        stream.resume();
        next(manifestInvalid(where, '"manifest" is not a regular file'));
        return;
      }
      if ((header.size ?? 0) > MAX_ACI_MANIFEST) {
        stream.resume();
        next(manifestInvalid(where, `"manifest" is ${header.size} bytes, more than ${MAX_ACI_MANIFEST}`));
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => { chunks.push(c as Buffer); });
      stream.on('end', () => { manifestRaw = Buffer.concat(chunks); });
      return;
    }
    if (name === 'rootfs' || name.startsWith(ACI_ROOT_PREFIX)) sawRootfs = true;
    stream.resume();
  });
  try {
    await pipeline(
      fs.createReadStream(file),
      new HashTap(fileHash),
      ...(sniffed === 'gzip' ? [zlib.createGunzip()] : []),
      new HashTap(tarHash),
      extract,
    );
  } catch (err) {
    if (err instanceof GantryError) throw err;
    throw archiveInvalid(where, `cannot read the ACI: ${(err as Error).message} (damaged or truncated?)`);
  }
  if (manifestRaw === undefined) {
    throw new GantryError('MANIFEST_INVALID', `${where}: the ACI has no "manifest" entry`, {
      hint: 'an ACI holds "manifest" and "rootfs/" at the top of the tar; rebuild it',
    });
  }
  const manifest = parseAciManifest(manifestRaw, `${where}: manifest`);
  if (!sawRootfs) throw archiveInvalid(where, 'the ACI has no "rootfs/" directory');
  return {
    manifestRaw,
    manifest,
    fileDigest: `sha256:${fileHash.digest('hex')}`,
    fileSize,
    tarSha512: tarHash.digest('hex'),
    compression: sniffed,
  };
}

function httpError(url: string, status: number, statusText: string | undefined): GantryError {
  const what = `${url}: HTTP ${status}${statusText ? ` ${statusText}` : ''}`;
  if (status === 404 || status === 410) return new GantryError('IMAGE_NOT_FOUND', `${what}: the ACI does not exist`, { hint: 'check the URL' });
  if (status === 401 || status === 403) return new GantryError('UNAUTHORIZED', `${what}: access denied`, { hint: 'the server wants credentials gantry cannot send for plain URLs' });
  return new GantryError('REGISTRY_ERROR', `${what}`, { hint: 'the server failed; try again later' });
}

const TLS_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_NOT_YET_VALID',
]);

/**
 * Downloads `url` to `dest`. http:// needs --insecure-options=http; TLS is
 * verified against the system roots plus $GANTRY_CA_FILE unless
 * --insecure-options=tls. Redirects are followed (at most 5), never from
 * https down to http unless http is allowed.
 */
async function downloadAci(url: string, dest: string, ctx: Context): Promise<void> {
  let current = new URL(url);
  let extraCa: Buffer | undefined;
  if (process.env.GANTRY_CA_FILE) {
    try {
      extraCa = await fsp.readFile(process.env.GANTRY_CA_FILE);
    } catch (err) {
      throw new GantryError('CONFIG_INVALID', `cannot read GANTRY_CA_FILE ${process.env.GANTRY_CA_FILE}: ${(err as Error).message}`, {
        hint: 'point GANTRY_CA_FILE at a PEM file or unset it',
      });
    }
  }
  for (let hop = 0; ; hop++) {
    if (current.protocol === 'http:' && !ctx.insecure.has('http')) {
      throw new GantryError('INSECURE_TRANSPORT', `${current.href}: refusing to download an image over plain http`, {
        hint: 'use https, or allow it with --insecure-options=http',
      });
    }
    if (current.protocol !== 'http:' && current.protocol !== 'https:') {
      throw new GantryError('INVALID_REFERENCE', `${current.href}: only http and https URLs can be fetched`);
    }
    if (current.protocol === 'https:' && ctx.insecure.has('tls')) ctx.warn(`${current.host}: TLS certificate not verified (--insecure-options=tls)`);
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const options: https.RequestOptions = { method: 'GET', headers: { 'user-agent': 'gantry', accept: '*/*' } };
      if (current.protocol === 'https:') {
        options.rejectUnauthorized = !ctx.insecure.has('tls');
        if (extraCa !== undefined) options.ca = [...tls.rootCertificates, extraCa.toString('utf8')];
      }
      const request = (current.protocol === 'https:' ? https : http).request(current, options, resolve);
      request.setTimeout(IDLE_TIMEOUT_MS, () => request.destroy(Object.assign(new Error('no response'), { code: 'ETIMEDOUT' })));
      request.on('error', (err) => {
        const code = errnoCode(err);
        if (code !== undefined && TLS_ERRORS.has(code)) {
          reject(new GantryError('REGISTRY_UNREACHABLE', `${current.host}: TLS verification failed: ${err.message}`, {
            hint: 'add the CA with GANTRY_CA_FILE=ca.pem, or skip verification with --insecure-options=tls',
            cause: err,
          }));
          return;
        }
        reject(new GantryError('REGISTRY_UNREACHABLE', `${current.host}: cannot connect: ${err.message}`, {
          hint: 'check the URL and the network', cause: err,
        }));
      });
      request.end();
    });
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location) {
      response.resume();
      if (hop >= MAX_REDIRECTS) throw new GantryError('REGISTRY_ERROR', `${url}: more than ${MAX_REDIRECTS} redirects`, { hint: 'the server loops; check the URL' });
      const next = new URL(response.headers.location, current);
      ctx.debug(`${current.href}: redirected to ${next.href}`);
      current = next;
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw httpError(current.href, status, response.statusMessage);
    }
    const lengthHeader = response.headers['content-length'];
    const total = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    const id = `download:${url}`;
    ctx.progress(total === undefined ? { kind: 'start', id, label: url } : { kind: 'start', id, label: url, total });
    ctx.progress({ kind: 'phase', id, phase: 'downloading' });
    let received = 0;
    response.setTimeout(IDLE_TIMEOUT_MS, () => response.destroy(Object.assign(new Error('download stalled'), { code: 'ETIMEDOUT' })));
    try {
      await pipeline(
        response,
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            received += chunk.length;
            ctx.progress({ kind: 'advance', id, bytes: chunk.length });
            cb(null, chunk);
          },
        }),
        fs.createWriteStream(dest, { mode: 0o600 }),
      );
    } catch (err) {
      const fsErr = translateFsError(err, dest);
      if (fsErr instanceof GantryError) throw fsErr;
      throw new GantryError('DOWNLOAD_INTERRUPTED', `${url}: download interrupted after ${received} bytes: ${(err as Error).message}`, {
        hint: 'try again', cause: err,
      });
    }
    if (total !== undefined && received !== total) {
      throw new GantryError('DOWNLOAD_INTERRUPTED', `${url}: got ${received} of ${total} bytes`, { hint: 'try again' });
    }
    ctx.progress({ kind: 'phase', id, phase: 'done' });
    return;
  }
}

export type AciOrigin = Extract<ImageReference, { kind: 'aci-file' | 'aci-url' | 'appc' }>;

/** What the trust check needs to verify one ACI (see trust/verify.ts). */
export interface AciSignatureSubject {
  /** The name in the ACI's own manifest: keys are looked up by its prefixes. */
  name: string;
  /** The ACI file as stored or downloaded: the signed bytes. */
  file: string;
  /** The detached signature, or undefined when there is none. */
  signature: Buffer | undefined;
  /** Where the signature was (or was looked for). */
  signatureWhere: string;
  /** Keys offered by the discovery page (ac-discovery-pubkeys), for --trust-keys-from-https. */
  discoveredPubkeys: { prefix: string; url: string }[];
}

const MAX_SIGNATURE_BYTES = 1 << 20;

class AciSource implements ImageSource {
  readonly description: string;
  private file: string | undefined;
  private tempFile: string | undefined;
  private inspection: AciInspection | undefined;
  private configDigest: string | undefined;
  private closed = false;
  private discovered: import('../appc/discovery.js').DiscoveryResult | undefined;

  constructor(private readonly origin: AciOrigin, private readonly ctx: Context) {
    if (origin.kind === 'aci-file') {
      this.file = path.resolve(origin.path);
      this.description = this.file;
    } else if (origin.kind === 'aci-url') {
      this.description = origin.url;
    } else {
      this.description = formatReference(origin);
    }
  }

  private async localFile(platform: Platform): Promise<string> {
    if (this.file !== undefined) return this.file;
    if (this.origin.kind === 'aci-file') throw new Error('unreachable: file origin without a file');
    let url: string;
    if (this.origin.kind === 'appc') {
      const { discoverAci, appcArch } = await import('../appc/discovery.js');
      const labels = { os: platform.os, arch: appcArch(platform.architecture, platform.variant), version: 'latest', ...this.origin.labels };
      this.discovered = await discoverAci(this.ctx, { name: this.origin.name, labels });
      url = this.discovered.aciUrl;
    } else {
      url = this.origin.url;
    }
    const tmpDir = path.join(this.ctx.dir, 'store', 'tmp');
    await fsp.mkdir(tmpDir, { recursive: true });
    const temp = path.join(tmpDir, `aci-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.aci`);
    this.tempFile = temp;
    await downloadAci(url, temp, this.ctx);
    this.file = temp;
    return temp;
  }

  /** The ACI and its signature for the trust check; call after resolve(). */
  async signatureSubjects(): Promise<AciSignatureSubject[]> {
    if (this.inspection === undefined || this.file === undefined) throw new Error(`${this.description}: signatureSubjects before resolve`);
    let signature: Buffer | undefined;
    let where: string;
    if (this.origin.kind === 'aci-file') {
      where = `${this.file}.asc`;
      try {
        signature = await fsp.readFile(where);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    } else {
      where = this.origin.kind === 'appc' ? this.discovered!.signatureUrl : `${this.origin.url}.asc`;
      const { httpGet } = await import('../appc/http.js');
      const res = await httpGet(this.ctx, where, { limit: MAX_SIGNATURE_BYTES, what: `signature of ${this.description}` });
      if (res.status === 200) signature = res.body;
      else if (res.status !== 404 && res.status !== 410) {
        throw new GantryError('REGISTRY_ERROR', `signature ${where}: HTTP ${res.status}`, { hint: 'the server failed; try again later' });
      }
    }
    return [{
      name: this.inspection.manifest.name,
      file: this.file,
      signature,
      signatureWhere: where,
      discoveredPubkeys: this.discovered?.pubkeys ?? [],
    }];
  }

  async resolve(platform: Platform): Promise<ResolvedManifest> {
    if (this.closed) throw new Error(`${this.description}: resolve after close`);
    const where = this.description;
    const file = await this.localFile(platform);
    const inspection = await inspectAci(file, where);
    const { manifest, manifestRaw } = inspection;
    if (this.origin.kind === 'appc') {
      // The keys are chosen by the manifest's name: a server must not answer one name with another image.
      if (manifest.name !== this.origin.name) {
        throw manifestInvalid(where, `discovery for "${this.origin.name}" returned an ACI named "${manifest.name}"`);
      }
      const version = this.origin.labels.version;
      if (version !== undefined && label(manifest, 'version') !== version) {
        throw manifestInvalid(where, `asked for version ${version}, the ACI is version ${label(manifest, 'version') ?? '(none)'}`);
      }
    }

    const resolvedPlatform = aciPlatform(manifest, platform);
    const d = normalizePlatform(resolvedPlatform);
    const w = normalizePlatform(platform);
    if (d.os !== w.os || d.architecture !== w.architecture || (d.variant ?? '') !== (w.variant ?? '')) {
      throw new GantryError('PLATFORM_NOT_FOUND', `${where}: the ACI is for ${formatPlatform(d)}, not ${formatPlatform(w)}`, {
        hint: 'fetch an ACI built for this platform, or ask for its platform with --platform',
      });
    }

    const config: Descriptor = {
      mediaType: MEDIA_TYPES.appcManifest,
      digest: digestOf(manifestRaw),
      size: manifestRaw.length,
    };
    const layer: LayerDescriptor = {
      mediaType: MEDIA_TYPES.aci,
      digest: inspection.fileDigest,
      size: inspection.fileSize,
      compression: inspection.compression,
      rootPrefix: ACI_ROOT_PREFIX,
    };
    const imageId = `sha512-${inspection.tarSha512}`;
    // Fixed key order: these bytes are hashed into the image ID.
    const raw = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: APPC_SYNTHETIC_MANIFEST,
      config: { mediaType: config.mediaType, size: config.size, digest: config.digest },
      layers: [{ mediaType: layer.mediaType, size: layer.size, digest: layer.digest, annotations: { 'dev.gantry.layer.root-prefix': ACI_ROOT_PREFIX } }],
      annotations: { [APPC_NAME_ANNOTATION]: manifest.name, [APPC_IMAGE_ID_ANNOTATION]: imageId },
    }));
    this.inspection = inspection;
    this.configDigest = config.digest;
    const version = label(manifest, 'version');
    return {
      name: `${manifest.name}:${version !== undefined && /^[\w][\w.-]{0,127}$/.test(version) ? version : 'latest'}`,
      digest: digestOf(raw),
      mediaType: APPC_SYNTHETIC_MANIFEST,
      raw,
      config,
      layers: [layer],
      platform: resolvedPlatform,
      format: 'appc',
    };
  }

  async openBlob(descriptor: Descriptor, offset = 0): Promise<Readable> {
    if (this.closed) throw new Error(`${this.description}: openBlob after close`);
    checkOffset(offset, descriptor, this.description);
    const inspection = this.inspection;
    if (inspection === undefined || this.file === undefined) throw new Error(`${this.description}: openBlob before resolve`);
    if (descriptor.digest === this.configDigest) return Readable.from([inspection.manifestRaw.subarray(offset)]);
    if (descriptor.digest === inspection.fileDigest) {
      if (offset >= inspection.fileSize) return Readable.from([]);
      return fs.createReadStream(this.file, { start: offset });
    }
    throw missingBlob(this.description, descriptor.digest, 'blob');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.tempFile !== undefined) await fsp.rm(this.tempFile, { force: true });
  }
}

export async function openAci(origin: AciOrigin, ctx: Context): Promise<ImageSource> {
  if (origin.kind === 'aci-file') {
    const file = path.resolve(origin.path);
    try {
      await fsp.access(file);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new GantryError('IMAGE_NOT_FOUND', `${file}: the ACI file does not exist`, { hint: 'check the path' });
      }
      throw err;
    }
  }
  return new AciSource(origin, ctx);
}
