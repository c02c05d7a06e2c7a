/**
 * Manifest formats: parses raw manifest bytes (Docker v2 schema 2, OCI image
 * manifest, OCI index, Docker manifest list) into gantry's model, and selects
 * a platform from an index. Transport-neutral: registries, OCI layouts and
 * archives all hand their bytes here, so every transport rejects the same
 * bad input the same way.
 *
 * Nothing here trusts its input: every descriptor's digest and size are
 * checked, unknown media types are errors that name the type, and Docker
 * schema 1 is refused with a hint instead of being half-supported.
 */
import { GantryError } from '../errors.js';
import { digestOf, digestProblem } from './digest.js';
import { MEDIA_TYPES, type Descriptor, type Digest, type LayerCompression, type LayerDescriptor, type Platform } from './model.js';

/** Manifests larger than this are refused (containers/image uses the same limit). */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/** Accept header value for manifest requests: every type gantry can read. */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerManifestList,
  MEDIA_TYPES.dockerManifest,
  // Asked for only so the error can say "schema 1" instead of "not found".
  MEDIA_TYPES.dockerSchema1Signed,
  MEDIA_TYPES.dockerSchema1,
];

const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const SCHEMA1_TYPES = new Set<string>([MEDIA_TYPES.dockerSchema1, MEDIA_TYPES.dockerSchema1Signed]);
const CONFIG_TYPES = new Set<string>([MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]);

const LAYER_COMPRESSION: Record<string, LayerCompression> = {
  [MEDIA_TYPES.ociLayer]: 'none',
  [MEDIA_TYPES.ociLayerGzip]: 'gzip',
  [MEDIA_TYPES.ociLayerZstd]: 'zstd',
  [MEDIA_TYPES.ociLayerNondistributable]: 'none',
  [MEDIA_TYPES.ociLayerNondistributableGzip]: 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  [MEDIA_TYPES.dockerLayerGzip]: 'gzip',
  [MEDIA_TYPES.dockerLayerForeign]: 'gzip',
  // Not in Docker's spec but written by containerd and BuildKit.
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.zstd': 'zstd',
};

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; manifests: Descriptor[] }
  | { kind: 'manifest'; mediaType: string; config: Descriptor; layers: LayerDescriptor[] };

/** Throws DIGEST_MISMATCH unless `data` hashes to `expected` (whose algorithm is used). */
export function verifyDigest(data: Buffer | Uint8Array, expected: Digest, where: string): void {
  const problem = digestProblem(expected);
  if (problem) throw new GantryError('MANIFEST_INVALID', `${where}: ${problem}`);
  const actual = digestOf(data, expected.slice(0, expected.indexOf(':')));
  if (actual !== expected) {
    throw new GantryError('DIGEST_MISMATCH', `${where}: content has digest ${actual}, expected ${expected}`, {
      hint: 'the source served different bytes than it promised; do not use this source until it is fixed',
    });
  }
}

/** Compression of a layer media type; MEDIA_TYPE_UNSUPPORTED names unknown types. */
export function layerCompression(mediaType: string, where: string): LayerCompression {
  const compression = LAYER_COMPRESSION[mediaType];
  if (compression === undefined) {
    throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `${where}: layer media type "${mediaType}" is not supported`, {
      hint: `supported layer types: ${Object.keys(LAYER_COMPRESSION).join(', ')}`,
    });
  }
  return compression;
}

function invalid(where: string, problem: string): GantryError {
  return new GantryError('MANIFEST_INVALID', `${where}: invalid manifest: ${problem}`, {
    hint: 'the image is damaged or was not written by a conforming tool; re-push it',
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parsePlatform(value: unknown, where: string, field: string): Platform {
  if (!isObject(value)) throw invalid(where, `${field} must be an object`);
  const { os, architecture, variant } = value;
  if (typeof os !== 'string' || typeof architecture !== 'string') {
    throw invalid(where, `${field} needs string "os" and "architecture"`);
  }
  if (variant !== undefined && typeof variant !== 'string') throw invalid(where, `${field}.variant must be a string`);
  const platform: Platform = { os, architecture };
  if (typeof variant === 'string' && variant !== '') platform.variant = variant;
  return platform;
}

function parseStringMap(value: unknown, where: string, field: string): Record<string, string> {
  if (!isObject(value)) throw invalid(where, `${field} must be an object`);
  const result: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(where, `${field}["${k}"] must be a string`);
    result[k] = v;
  }
  return result;
}

/** Validates one descriptor object: media type, digest syntax, size. */
export function parseDescriptor(value: unknown, where: string, field: string): Descriptor {
  if (!isObject(value)) throw invalid(where, `${field} must be an object`);
  const { mediaType, digest, size, urls, annotations, platform } = value;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(where, `${field}.mediaType must be a non-empty string`);
  if (typeof digest !== 'string') throw invalid(where, `${field}.digest must be a string`);
  const problem = digestProblem(digest);
  if (problem) throw invalid(where, `${field}.digest: ${problem}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(where, `${field}.size must be a non-negative integer`);
  }
  const descriptor: Descriptor = { mediaType, digest, size };
  if (urls !== undefined) {
    if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string')) throw invalid(where, `${field}.urls must be a list of strings`);
    descriptor.urls = urls as string[];
  }
  if (annotations !== undefined) descriptor.annotations = parseStringMap(annotations, where, `${field}.annotations`);
  if (platform !== undefined) descriptor.platform = parsePlatform(platform, where, `${field}.platform`);
  return descriptor;
}

/** Strips parameters ("; charset=utf-8") and case from a Content-Type. */
function bareContentType(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const bare = contentType.split(';')[0]!.trim().toLowerCase();
  return bare === '' ? undefined : bare;
}

function schema1Error(where: string): GantryError {
  return new GantryError('SCHEMA1_UNSUPPORTED', `${where}: the image uses the Docker schema 1 manifest format, which gantry does not support`, {
    hint: 're-push the image with a current client (docker, podman, skopeo or buildah) so it gets a schema 2 or OCI manifest',
  });
}

/**
 * Parses manifest bytes. The media type comes from the document's own
 * `mediaType` field when present (it is covered by the digest), else from
 * the transport's content type, else from the document's shape.
 */
export function parseManifest(raw: Buffer, contentType: string | undefined, where: string): ParsedManifest {
  if (raw.length > MAX_MANIFEST_SIZE) throw invalid(where, `it is ${raw.length} bytes, more than the ${MAX_MANIFEST_SIZE} bytes allowed`);
  const headerType = bareContentType(contentType);
  if (headerType !== undefined && SCHEMA1_TYPES.has(headerType)) throw schema1Error(where);

  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw invalid(where, `not JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw invalid(where, 'not a JSON object');
  if (doc.schemaVersion === 1) throw schema1Error(where);
  if (doc.schemaVersion !== 2) throw invalid(where, `schemaVersion is ${JSON.stringify(doc.schemaVersion)}, expected 2`);

  let mediaType: string;
  if (doc.mediaType !== undefined) {
    if (typeof doc.mediaType !== 'string') throw invalid(where, 'mediaType must be a string');
    mediaType = doc.mediaType;
  } else if (headerType !== undefined && (INDEX_TYPES.has(headerType) || MANIFEST_TYPES.has(headerType))) {
    mediaType = headerType;
  } else if (Array.isArray(doc.manifests)) {
    mediaType = MEDIA_TYPES.ociIndex;
  } else if (doc.config !== undefined || doc.layers !== undefined) {
    mediaType = MEDIA_TYPES.ociManifest;
  } else {
    throw invalid(where, 'it has neither "manifests" nor "config" and "layers"');
  }
  if (SCHEMA1_TYPES.has(mediaType)) throw schema1Error(where);

  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid(where, '"manifests" must be a list');
    const manifests = doc.manifests.map((m, i) => parseDescriptor(m, where, `manifests[${i}]`));
    return { kind: 'index', mediaType, manifests };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    const config = parseDescriptor(doc.config, where, 'config');
    if (!CONFIG_TYPES.has(config.mediaType)) {
      throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `${where}: config media type "${config.mediaType}" is not a container image config`, {
        hint: 'this artifact is not a container image (gantry runs images whose config is an OCI or Docker image config)',
      });
    }
    if (!Array.isArray(doc.layers)) throw invalid(where, '"layers" must be a list');
    const layers = doc.layers.map((l, i): LayerDescriptor => {
      const d = parseDescriptor(l, where, `layers[${i}]`);
      return { ...d, compression: layerCompression(d.mediaType, where) };
    });
    return { kind: 'manifest', mediaType, config, layers };
  }
  throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `${where}: manifest media type "${mediaType}" is not supported`, {
    hint: `supported manifest types: ${[...INDEX_TYPES, ...MANIFEST_TYPES].join(', ')}`,
  });
}

/**
 * Normalises a platform the way containerd does: architecture aliases
 * (x86_64 -> amd64, aarch64 -> arm64), arm64's default variant v8 dropped,
 * arm's default variant v7 made explicit, amd64 carries no variant.
 */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase() === 'macos' ? 'darwin' : platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant?.toLowerCase() ?? '';
  switch (architecture) {
    case 'i386': architecture = '386'; variant = ''; break;
    case 'x86_64': case 'x86-64': case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64': case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8') variant = '';
      break;
    case 'armhf': architecture = 'arm'; variant = 'v7'; break;
    case 'armel': architecture = 'arm'; variant = 'v6'; break;
    case 'arm':
      if (variant === '') variant = 'v7';
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      break;
    default: break;
  }
  return variant === '' ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
}

/**
 * The variants that can run on the wanted one, best first: arm v7 can run
 * v6 and v5 images (containerd's matcher does the same); others need an
 * exact match.
 */
function acceptableVariants(wanted: Platform): string[] {
  const variant = wanted.variant ?? '';
  if (wanted.architecture === 'arm') {
    const order = ['v8', 'v7', 'v6', 'v5'];
    const at = order.indexOf(variant);
    return at >= 0 ? order.slice(at) : [variant];
  }
  return [variant];
}

/**
 * Picks the manifest for `platform` from an index. Entries for os "unknown"
 * (BuildKit attestations) are never picked. An index whose single entry has
 * no platform at all is taken as-is. PLATFORM_NOT_FOUND lists what exists.
 */
export function selectPlatform(index: { manifests: Descriptor[] }, platform: Platform, where: string): Descriptor {
  const wanted = normalizePlatform(platform);
  const candidates = index.manifests.filter((m) => INDEX_TYPES.has(m.mediaType) || MANIFEST_TYPES.has(m.mediaType));
  if (candidates.length === 1 && candidates[0]!.platform === undefined && index.manifests.every((m) => m.platform === undefined)) {
    return candidates[0]!;
  }
  for (const variant of acceptableVariants(wanted)) {
    const match = candidates.find((m) => {
      if (!m.platform) return false;
      const p = normalizePlatform(m.platform);
      return p.os === wanted.os && p.architecture === wanted.architecture && (p.variant ?? '') === variant;
    });
    if (match) return match;
  }
  const available = index.manifests
    .filter((m) => m.platform && m.platform.os !== 'unknown')
    .map((m) => formatPlatform(normalizePlatform(m.platform!)));
  throw new GantryError('PLATFORM_NOT_FOUND', `${where}: no image for platform ${formatPlatform(wanted)}; available: ${available.length > 0 ? [...new Set(available)].join(', ') : 'none'}`, {
    hint: 'choose one of the available platforms with --platform, or use an image built for this platform',
  });
}

export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType);
}
