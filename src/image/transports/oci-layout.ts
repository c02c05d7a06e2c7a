/**
 * The `oci:DIR[:tag]` transport: reads an OCI image layout (image-spec
 * image-layout.md) in place, and the layout logic `oci-archive:` reuses for
 * a tarred layout.
 *
 * Lifecycle: `openOciLayout(ref, ctx)` checks that DIR is a layout (the
 * `oci-layout` marker, imageLayoutVersion 1.x) and returns an ImageSource;
 * `resolve(platform)` reads index.json, picks the manifest whose
 * `org.opencontainers.image.ref.name` annotation is the tag (a nested index
 * goes through platform selection), verifies every manifest and index it reads
 * against its descriptor's digest, and returns the model; `openBlob` streams
 * `blobs/<alg>/<hex>` from an offset; `close()` has nothing to release for a
 * directory (an archive's close releases its file).
 *
 * Naming: the annotation may be a full reference ("docker.io/library/busybox:1")
 * and then is the image's name; when it is only a tag, the image is named like
 * podman names unnamed local images: `localhost/<basename of DIR>:<tag>`.
 * Blob paths are built only from digests that passed the digest grammar, so a
 * descriptor like `sha256:../../etc` never turns into a path.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Context } from '../../context.js';
import { errnoCode, GantryError } from '../../errors.js';
import {
  formatPlatform, isIndexMediaType, MAX_MANIFEST_SIZE, normalizePlatform, parseManifest, selectPlatform, verifyDigest,
} from '../manifest.js';
import type { Descriptor, ImageConfig, ImageSource, Platform, ResolvedManifest } from '../model.js';
import { digestProblem } from '../digest.js';
import { parseDockerName, type ImageReference } from '../reference.js';

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** Nested indexes deeper than this are refused rather than followed forever. */
const MAX_INDEX_DEPTH = 4;
const TAG = /^[\w][\w.-]{0,127}$/;

/**
 * Read access to the files of a layout, wherever they live (a directory, a
 * tar member). Paths are relative and use "/"; a missing file is `undefined`,
 * never an exception, so the layout logic decides how to report it.
 */
export interface LayoutReader {
  /** Reads a whole file; a file larger than `maxSize` is MANIFEST_INVALID naming `what`. */
  readFile(relPath: string, maxSize: number, what: string): Promise<Buffer | undefined>;
  /** Streams a file from `offset`. */
  openFile(relPath: string, offset: number): Promise<Readable | undefined>;
  close(): Promise<void>;
}

function invalidManifest(where: string, problem: string): GantryError {
  return new GantryError('MANIFEST_INVALID', `${where}: ${problem}`, {
    hint: 'the image layout is damaged or was not written by a conforming tool; write it again (e.g. skopeo copy)',
  });
}

/** "sha256:abc..." -> "blobs/sha256/abc...", after checking the digest grammar. */
export function blobPath(digest: string, where: string): string {
  const problem = digestProblem(digest);
  if (problem) {
    throw new GantryError('MANIFEST_INVALID', `${where}: refusing blob with invalid digest: ${problem}`, {
      hint: 'a digest must be algorithm:hex; anything else could name a file outside the layout',
    });
  }
  const colon = digest.indexOf(':');
  return `blobs/${digest.slice(0, colon)}/${digest.slice(colon + 1)}`;
}

/** Makes a name usable as a repository component: lowercase, [a-z0-9._-], no leading separator. */
export function localName(base: string, tag: string | undefined): string {
  let repo = base.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+|[._-]+$/g, '').replace(/[._-]{2,}/g, '-');
  if (repo === '') repo = 'image';
  const safeTag = tag !== undefined && TAG.test(tag) ? tag : 'latest';
  return `localhost/${repo}:${safeTag}`;
}

/** The image name a ref.name annotation stands for (see the module comment). */
function nameFromAnnotation(annotation: string | undefined, fallbackBase: string): string {
  if (annotation !== undefined && (annotation.includes('/') || annotation.includes(':'))) {
    try {
      return parseDockerName(annotation).canonical;
    } catch {
      // Not a reference after all: fall through to a local name.
    }
  }
  return localName(fallbackBase, annotation);
}

function refName(d: Descriptor): string | undefined {
  return d.annotations?.[REF_NAME_ANNOTATION];
}

function platformOfConfig(raw: Buffer, where: string): Platform | undefined {
  let config: ImageConfig;
  try {
    config = JSON.parse(raw.toString('utf8')) as ImageConfig;
  } catch (err) {
    throw invalidManifest(where, `image config is not JSON (${(err as Error).message})`);
  }
  if (typeof config !== 'object' || config === null) throw invalidManifest(where, 'image config is not a JSON object');
  if (typeof config.os !== 'string' || typeof config.architecture !== 'string') return undefined;
  const platform: Platform = { os: config.os, architecture: config.architecture };
  if (typeof config.variant === 'string' && config.variant !== '') platform.variant = config.variant;
  return platform;
}

export interface OciLayoutOptions {
  /** What the user asked for, for messages: "oci:/srv/img:latest". */
  description: string;
  tag: string | undefined;
  /** Basename used for `localhost/<base>:<tag>` names. */
  nameBase: string;
  ctx: Context;
}

/** An ImageSource over any LayoutReader: the shared half of `oci:` and `oci-archive:`. */
export class OciLayoutSource implements ImageSource {
  readonly description: string;
  private readonly reader: LayoutReader;
  private readonly options: OciLayoutOptions;
  private closed = false;

  constructor(reader: LayoutReader, options: OciLayoutOptions) {
    this.reader = reader;
    this.options = options;
    this.description = options.description;
  }

  /** Checks the `oci-layout` marker; call once before resolve. */
  async checkLayout(): Promise<void> {
    const where = this.description;
    const marker = await this.reader.readFile('oci-layout', 64 * 1024, `${where}: oci-layout`);
    if (marker === undefined) {
      throw new GantryError('ARCHIVE_INVALID', `${where} is not an OCI image layout: it has no "oci-layout" file`, {
        hint: 'point at a directory (or archive) written by skopeo copy, umoci or podman save --format oci-*',
      });
    }
    let version: unknown;
    try {
      version = (JSON.parse(marker.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch (err) {
      throw invalidManifest(`${where}: oci-layout`, `not JSON (${(err as Error).message})`);
    }
    if (typeof version !== 'string') throw invalidManifest(`${where}: oci-layout`, 'imageLayoutVersion is missing');
    if (!/^1\.\d+\.\d+$/.test(version)) {
      throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `${where}: OCI layout version ${version} is not supported (gantry reads 1.x)`, {
        hint: 'convert the layout with a current skopeo: skopeo copy oci:OLD oci:NEW',
      });
    }
  }

  private async readBlob(descriptor: Descriptor, what: string): Promise<Buffer> {
    const where = `${this.description}: ${what} ${descriptor.digest}`;
    if (descriptor.size > MAX_MANIFEST_SIZE) {
      throw invalidManifest(where, `it claims ${descriptor.size} bytes, more than the ${MAX_MANIFEST_SIZE} allowed`);
    }
    const raw = await this.reader.readFile(blobPath(descriptor.digest, this.description), MAX_MANIFEST_SIZE, where);
    if (raw === undefined) throw missingBlob(this.description, descriptor.digest, what);
    verifyDigest(raw, descriptor.digest, where);
    if (raw.length !== descriptor.size) {
      throw new GantryError('SIZE_MISMATCH', `${where}: blob is ${raw.length} bytes, descriptor says ${descriptor.size}`, {
        hint: 'the layout is damaged; write it again',
      });
    }
    return raw;
  }

  /** Picks the index.json entry for the tag (see the module comment). */
  private pickEntry(entries: Descriptor[], platform: Platform): Descriptor {
    const { tag } = this.options;
    const where = this.description;
    const tags = [...new Set(entries.map(refName).filter((t): t is string => t !== undefined))];
    const listing = tags.length > 0 ? `available tags: ${tags.join(', ')}` : 'the layout has no tagged images';
    if (tag !== undefined) {
      const matching = entries.filter((d) => refName(d) === tag);
      if (matching.length === 0) {
        throw new GantryError('IMAGE_NOT_FOUND', `${where}: no image tagged "${tag}"; ${listing}`, {
          hint: tags.length > 0 ? `use one of them, e.g. oci:DIR:${tags[0]}` : 'the layout is empty; copy an image into it first',
        });
      }
      return matching.length === 1 ? matching[0]! : selectPlatform({ manifests: matching }, platform, where);
    }
    if (entries.length === 1) return entries[0]!;
    if (entries.length > 1 && tags.length === 0 && entries.every((d) => d.platform !== undefined)) {
      // An untagged multi-platform layout (e.g. buildkit --output type=oci): index.json is the index.
      return selectPlatform({ manifests: entries }, platform, where);
    }
    throw new GantryError('IMAGE_NOT_FOUND', `${where}: the layout holds ${entries.length} images; say which one: ${listing}`, {
      hint: 'add the tag to the reference: oci:DIR:TAG',
    });
  }

  async resolve(platform: Platform): Promise<ResolvedManifest> {
    if (this.closed) throw new Error(`${this.description}: resolve after close`);
    const where = this.description;
    const indexRaw = await this.reader.readFile('index.json', MAX_MANIFEST_SIZE, `${where}: index.json`);
    if (indexRaw === undefined) {
      throw new GantryError('ARCHIVE_INVALID', `${where} is not an OCI image layout: it has no index.json`, {
        hint: 'the layout is incomplete; write it again',
      });
    }
    const top = parseManifest(indexRaw, undefined, `${where}: index.json`);
    if (top.kind !== 'index') throw invalidManifest(`${where}: index.json`, 'it is a manifest, not an image index');

    const entry = this.pickEntry(top.manifests, platform);
    const name = nameFromAnnotation(refName(entry), this.options.nameBase);

    let descriptor = entry;
    let indexDigest: string | undefined;
    for (let depth = 0; isIndexMediaType(descriptor.mediaType); depth++) {
      if (depth >= MAX_INDEX_DEPTH) throw invalidManifest(where, `indexes nested more than ${MAX_INDEX_DEPTH} deep`);
      const raw = await this.readBlob(descriptor, 'index');
      const nested = parseManifest(raw, descriptor.mediaType, `${where}: index ${descriptor.digest}`);
      if (nested.kind !== 'index') throw invalidManifest(`${where}: index ${descriptor.digest}`, 'descriptor says index, content is a manifest');
      indexDigest ??= descriptor.digest;
      descriptor = selectPlatform(nested, platform, `${where}: index ${descriptor.digest}`);
    }

    const raw = await this.readBlob(descriptor, 'manifest');
    const manifest = parseManifest(raw, descriptor.mediaType, `${where}: manifest ${descriptor.digest}`);
    if (manifest.kind !== 'manifest') throw invalidManifest(`${where}: manifest ${descriptor.digest}`, 'descriptor says manifest, content is an index');

    let resolvedPlatform = descriptor.platform;
    if (resolvedPlatform === undefined) {
      const configRaw = await this.readBlob(manifest.config, 'config');
      resolvedPlatform = platformOfConfig(configRaw, `${where}: config ${manifest.config.digest}`);
      if (resolvedPlatform === undefined) resolvedPlatform = platform;
      else warnOnPlatformMismatch(this.options.ctx, where, resolvedPlatform, platform);
    }

    const resolved: ResolvedManifest = {
      name,
      digest: descriptor.digest,
      mediaType: manifest.mediaType,
      raw,
      config: manifest.config,
      layers: manifest.layers,
      platform: resolvedPlatform,
      format: 'oci',
    };
    if (indexDigest !== undefined) resolved.indexDigest = indexDigest;
    this.options.ctx.debug(`${where}: resolved to ${name} ${descriptor.digest}`);
    return resolved;
  }

  async openBlob(descriptor: Descriptor, offset = 0): Promise<Readable> {
    if (this.closed) throw new Error(`${this.description}: openBlob after close`);
    checkOffset(offset, descriptor, this.description);
    const stream = await this.reader.openFile(blobPath(descriptor.digest, this.description), offset);
    if (stream === undefined) throw missingBlob(this.description, descriptor.digest, 'blob');
    return stream;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reader.close();
  }
}

/** A single-platform image for another platform is allowed (Docker does the same) but said out loud. */
export function warnOnPlatformMismatch(ctx: Context, where: string, actual: Platform, wanted: Platform): void {
  const a = normalizePlatform(actual);
  const w = normalizePlatform(wanted);
  if (a.os !== w.os || a.architecture !== w.architecture || (a.variant ?? '') !== (w.variant ?? '')) {
    ctx.warn(`${where}: the image is for ${formatPlatform(a)}, not ${formatPlatform(w)}; it may not run here`);
  }
}

export function checkOffset(offset: number, descriptor: Descriptor, where: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > descriptor.size) {
    throw new GantryError('INTERNAL', `${where}: invalid offset ${offset} for blob ${descriptor.digest} of ${descriptor.size} bytes`);
  }
}

export function missingBlob(where: string, digest: string, what: string): GantryError {
  return new GantryError('ARCHIVE_INVALID', `${where}: ${what} ${digest} is missing`, {
    hint: 'the layout or archive is incomplete; write it again (skopeo copy) and retry',
  });
}

/** LayoutReader over a directory. */
class DirectoryLayoutReader implements LayoutReader {
  constructor(private readonly root: string) {}

  private async statFile(relPath: string): Promise<fs.Stats | undefined> {
    try {
      const st = await fsp.stat(path.join(this.root, relPath));
      if (!st.isFile()) {
        throw new GantryError('ARCHIVE_INVALID', `${path.join(this.root, relPath)} is not a regular file`, {
          hint: 'the layout is damaged; write it again',
        });
      }
      return st;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  async readFile(relPath: string, maxSize: number, what: string): Promise<Buffer | undefined> {
    const st = await this.statFile(relPath);
    if (st === undefined) return undefined;
    if (st.size > maxSize) throw invalidManifest(what, `it is ${st.size} bytes, more than the ${maxSize} allowed`);
    return fsp.readFile(path.join(this.root, relPath));
  }

  async openFile(relPath: string, offset: number): Promise<Readable | undefined> {
    const st = await this.statFile(relPath);
    if (st === undefined) return undefined;
    if (offset >= st.size) return Readable.from([]);
    return fs.createReadStream(path.join(this.root, relPath), { start: offset });
  }

  async close(): Promise<void> {
    // Nothing held open: each read opens and closes its own descriptor.
  }
}

export type OciLayoutRef = Extract<ImageReference, { kind: 'oci-layout' }>;

export async function openOciLayout(ref: OciLayoutRef, ctx: Context): Promise<OciLayoutSource> {
  const dir = path.resolve(ref.path);
  const description = `oci:${dir}${ref.tag !== undefined ? `:${ref.tag}` : ''}`;
  let st: fs.Stats;
  try {
    st = await fsp.stat(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new GantryError('IMAGE_NOT_FOUND', `${description}: directory ${dir} does not exist`, {
        hint: 'check the path after "oci:"',
      });
    }
    throw err;
  }
  if (!st.isDirectory()) {
    throw new GantryError('ARCHIVE_INVALID', `${description}: ${dir} is not a directory`, {
      hint: 'for a tarred layout use oci-archive:FILE',
    });
  }
  const source = new OciLayoutSource(new DirectoryLayoutReader(dir), {
    description,
    tag: ref.tag,
    nameBase: path.basename(dir),
    ctx,
  });
  await source.checkLayout();
  return source;
}
