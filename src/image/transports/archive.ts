/**
 * The archive transports: `oci-archive:FILE[:tag]` (a tarred OCI layout, as
 * `skopeo copy ... oci-archive:F` and `podman save --format oci-archive`
 * write it) and `docker-archive:FILE[:name:tag|:@N]` (`docker save` /
 * `podman save` format), over one tar index.
 *
 * Lifecycle: opening indexes the tar once (offset and size of every member,
 * reading only headers) and keeps no descriptor open; blobs are streamed
 * straight from the file by offset, so nothing is extracted. A compressed
 * archive (`docker save | gzip`) cannot be read by offset: it is decompressed
 * once into <dir>/store/tmp and `close()` deletes that copy, whatever happened.
 *
 * docker-archive holds no manifest and no digests: `resolve` hashes the config
 * and each layer as stored and writes a Docker schema 2 manifest in memory.
 * Its bytes are deterministic (fixed key order, no whitespace), so loading the
 * same archive twice gives the same image ID. An uncompressed layer's digest
 * must equal the config's diff_id, which is checked on the way.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { Context } from '../../context.js';
import { errnoCode, GantryError, translateFsError } from '../../errors.js';
import { MAX_MANIFEST_SIZE, parseManifest } from '../manifest.js';
import { digestOf } from '../digest.js';
import {
  MEDIA_TYPES, type Descriptor, type ImageConfig, type ImageSource, type Platform, type ResolvedManifest,
} from '../model.js';
import { parseDockerName, type ImageReference } from '../reference.js';
import { checkOffset, localName, missingBlob, OciLayoutSource, warnOnPlatformMismatch, type LayoutReader } from './oci-layout.js';

const BLOCK = 512;
/** Bounds on hostile archives: member count, size of PAX / GNU long-name records, symlink hops. */
const MAX_MEMBERS = 1_000_000;
const MAX_META_SIZE = 1024 * 1024;
const MAX_LINK_HOPS = 16;
/** An image config can carry a long history; this is generous but finite. */
const MAX_CONFIG_SIZE = 16 * 1024 * 1024;

const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
const DOCKER_LAYER_ZSTD = 'application/vnd.docker.image.rootfs.diff.tar.zstd';

export type Compression = 'none' | 'gzip' | 'zstd' | 'bzip2' | 'xz';

/** Compression by magic number; anything unrecognised is taken as uncompressed. */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  return 'none';
}

export interface TarMember {
  name: string;
  type: 'file' | 'hardlink' | 'symlink' | 'directory' | 'other';
  /** Offset of the member's data in the (uncompressed) archive file. */
  offset: number;
  size: number;
  linkname?: string;
}

function archiveInvalid(where: string, problem: string, hint?: string): GantryError {
  return new GantryError('ARCHIVE_INVALID', `${where}: ${problem}`, {
    hint: hint ?? 'the archive is damaged or truncated; write it again (docker save, podman save, skopeo copy)',
  });
}

/** Normalises member names: "./a//b/" -> "a/b"; "" for the root. */
function normalizeName(name: string): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    parts.push(part);
  }
  return parts.join('/');
}

function cString(buf: Buffer, start: number, end: number): string {
  const zero = buf.indexOf(0, start);
  return buf.toString('utf8', start, zero >= start && zero < end ? zero : end);
}

function parseNumeric(buf: Buffer, start: number, end: number): number | undefined {
  if ((buf[start]! & 0x80) !== 0) {
    // GNU base-256: big-endian binary after the marker bit.
    let value = buf[start]! & 0x7f;
    for (let i = start + 1; i < end; i++) value = value * 256 + buf[i]!;
    return Number.isSafeInteger(value) ? value : undefined;
  }
  const text = buf.toString('latin1', start, end).replace(/[\0 ]+$/g, '').replace(/^[\0 ]+/g, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  const value = parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : undefined;
}

function checksumOk(header: Buffer): boolean {
  const stored = parseNumeric(header, 148, 156);
  if (stored === undefined) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === stored;
}

function parsePax(data: Buffer, where: string): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const length = Number(data.toString('latin1', pos, space));
    if (!Number.isSafeInteger(length) || length <= 0 || pos + length > data.length) {
      if (data.subarray(pos).every((b) => b === 0)) break;
      throw archiveInvalid(where, 'malformed PAX extended header');
    }
    const record = data.toString('utf8', space + 1, pos + length - 1);
    const eq = record.indexOf('=');
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return records;
}

/**
 * Offsets of the members of an uncompressed tar file. Understands ustar,
 * PAX (path, linkpath, size) and GNU long names; later duplicates win, as
 * when extracting.
 */
export async function indexTar(file: string, where: string): Promise<Map<string, TarMember>> {
  const handle = await fsp.open(file, 'r');
  try {
    const { size: fileSize } = await handle.stat();
    if (fileSize === 0) throw archiveInvalid(where, 'the archive is empty');
    const members = new Map<string, TarMember>();
    const header = Buffer.alloc(BLOCK);
    let pos = 0;
    let pax: Map<string, string> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    const readData = async (offset: number, size: number): Promise<Buffer> => {
      if (size > MAX_META_SIZE) throw archiveInvalid(where, `extended header of ${size} bytes at offset ${offset - BLOCK} is too large`);
      const data = Buffer.alloc(size);
      const { bytesRead } = await handle.read(data, 0, size, offset);
      if (bytesRead !== size) throw archiveInvalid(where, `truncated: header data at offset ${offset} runs past the end of the file`);
      return data;
    };
    for (let count = 0; ; count++) {
      if (count > MAX_MEMBERS) throw archiveInvalid(where, `more than ${MAX_MEMBERS} members`);
      if (pos >= fileSize) break; // no end-of-archive blocks: tolerated, like GNU tar does
      const { bytesRead } = await handle.read(header, 0, BLOCK, pos);
      if (bytesRead < BLOCK) throw archiveInvalid(where, `truncated: partial header at offset ${pos}`);
      if (header.every((b) => b === 0)) break;
      if (!checksumOk(header)) {
        throw archiveInvalid(where, pos === 0 ? 'not a tar archive' : `bad tar header checksum at offset ${pos} (damaged or truncated)`);
      }
      let size = parseNumeric(header, 124, 136);
      if (size === undefined) throw archiveInvalid(where, `bad size field in the tar header at offset ${pos}`);
      const typeflag = String.fromCharCode(header[156]!);
      const dataOffset = pos + BLOCK;
      if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
        const data = await readData(dataOffset, size);
        if (typeflag === 'x') pax = parsePax(data, where);
        else if (typeflag === 'L') longName = cString(data, 0, data.length);
        else if (typeflag === 'K') longLink = cString(data, 0, data.length);
        // 'g' (global) records carry nothing gantry needs.
        pos = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
        continue;
      }
      let name = cString(header, 0, 100);
      const magic = header.toString('latin1', 257, 263);
      if (magic === 'ustar\0') {
        const prefix = cString(header, 345, 500);
        if (prefix !== '') name = `${prefix}/${name}`;
      }
      let linkname = cString(header, 157, 257);
      if (longName !== undefined) name = longName;
      if (longLink !== undefined) linkname = longLink;
      if (pax) {
        name = pax.get('path') ?? name;
        linkname = pax.get('linkpath') ?? linkname;
        const paxSize = pax.get('size');
        if (paxSize !== undefined) {
          size = Number(paxSize);
          if (!Number.isSafeInteger(size) || size < 0) throw archiveInvalid(where, `bad PAX size for ${name}`);
        }
      }
      pax = undefined;
      longName = undefined;
      longLink = undefined;
      let type: TarMember['type'];
      switch (typeflag) {
        case '0': case '\0': case '7': type = 'file'; break;
        case '1': type = 'hardlink'; break;
        case '2': type = 'symlink'; break;
        case '5': type = 'directory'; break;
        default: type = 'other';
      }
      // Links and directories have no data whatever the size field says.
      const dataSize = type === 'file' || type === 'other' ? size : 0;
      if (dataOffset + dataSize > fileSize) {
        throw archiveInvalid(where, `truncated: member "${name}" needs ${dataSize} bytes but the file ends ${fileSize - dataOffset} bytes after its header`);
      }
      const member: TarMember = { name: normalizeName(name), type, offset: dataOffset, size: dataSize };
      if (type === 'hardlink' || type === 'symlink') member.linkname = linkname;
      members.set(member.name, member);
      pos = dataOffset + Math.ceil(dataSize / BLOCK) * BLOCK;
    }
    return members;
  } finally {
    await handle.close();
  }
}

/** A tar file indexed once and read by offset; see the module comment. */
export class TarArchive {
  private constructor(
    /** The uncompressed tar file read by offset (a temp copy for compressed archives). */
    private readonly file: string,
    private readonly members: Map<string, TarMember>,
    private readonly where: string,
    private readonly tempFile: string | undefined,
  ) {}

  /** Opens and indexes `file`; a gzip archive is decompressed into <ctx.dir>/store/tmp first. */
  static async open(file: string, where: string, ctx: Context): Promise<TarArchive> {
    const head = Buffer.alloc(8);
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(file, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new GantryError('IMAGE_NOT_FOUND', `${where}: file ${file} does not exist`, { hint: 'check the path of the archive' });
      }
      if (errnoCode(err) === 'EISDIR') throw archiveInvalid(where, `${file} is a directory`, 'for an OCI layout directory use oci:DIR');
      throw err;
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw archiveInvalid(where, `${file} is not a regular file`, 'point at an archive file');
      await handle.read(head, 0, head.length, 0);
    } finally {
      await handle.close();
    }
    const compression = sniffCompression(head);
    if (compression === 'none') return new TarArchive(file, await indexTar(file, where), where, undefined);
    if (compression !== 'gzip') {
      throw archiveInvalid(where, `the archive is ${compression}-compressed, which gantry does not read`, 'decompress it first, or recompress with gzip');
    }
    const tmpDir = path.join(ctx.dir, 'store', 'tmp');
    await fsp.mkdir(tmpDir, { recursive: true });
    const temp = path.join(tmpDir, `archive-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.tar`);
    ctx.debug(`${where}: decompressing into ${temp}`);
    try {
      await pipeline(fs.createReadStream(file), zlib.createGunzip(), fs.createWriteStream(temp, { mode: 0o600 }));
      return new TarArchive(temp, await indexTar(temp, where), where, temp);
    } catch (err) {
      await fsp.rm(temp, { force: true });
      if (err instanceof GantryError) throw err;
      if (errnoCode(err) === 'Z_BUF_ERROR' || errnoCode(err) === 'Z_DATA_ERROR') {
        throw archiveInvalid(where, `the gzip stream is damaged or truncated (${(err as Error).message})`);
      }
      throw translateFsError(err, `a decompressed copy of ${file}`);
    }
  }

  names(): string[] {
    return [...this.members.keys()];
  }

  /** The regular file `name` stands for, following links inside the archive; undefined if absent. */
  find(name: string): TarMember | undefined {
    let current = normalizeName(name);
    for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
      const member = this.members.get(current);
      if (member === undefined) return undefined;
      if (member.type === 'file') return member;
      if (member.type !== 'symlink' && member.type !== 'hardlink') return undefined;
      const link = member.linkname ?? '';
      // Hardlink targets are archive-relative; symlinks are relative to their directory.
      const joined = member.type === 'hardlink' || link.startsWith('/')
        ? path.posix.normalize(link.replace(/^\/+/, ''))
        : path.posix.normalize(path.posix.join(path.posix.dirname(current), link));
      if (joined === '..' || joined.startsWith('../')) {
        throw archiveInvalid(this.where, `member "${member.name}" links to "${link}", outside the archive`);
      }
      current = normalizeName(joined);
    }
    throw archiveInvalid(this.where, `too many links starting at member "${name}"`);
  }

  async read(member: TarMember, maxSize: number, what: string): Promise<Buffer> {
    if (member.size > maxSize) {
      throw new GantryError('MANIFEST_INVALID', `${what}: it is ${member.size} bytes, more than the ${maxSize} allowed`, {
        hint: 'the archive is damaged or hostile',
      });
    }
    const data = Buffer.alloc(member.size);
    const handle = await fsp.open(this.file, 'r');
    try {
      const { bytesRead } = await handle.read(data, 0, member.size, member.offset);
      if (bytesRead !== member.size) throw archiveInvalid(this.where, `member "${member.name}" is truncated`);
    } finally {
      await handle.close();
    }
    return data;
  }

  stream(member: TarMember, offset = 0): Readable {
    if (offset >= member.size) return Readable.from([]);
    return fs.createReadStream(this.file, { start: member.offset + offset, end: member.offset + member.size - 1 });
  }

  async close(): Promise<void> {
    if (this.tempFile !== undefined) await fsp.rm(this.tempFile, { force: true });
  }
}

/** LayoutReader over the members of a tar: what makes oci-archive an OCI layout. */
class TarLayoutReader implements LayoutReader {
  constructor(private readonly archive: TarArchive) {}

  async readFile(relPath: string, maxSize: number, what: string): Promise<Buffer | undefined> {
    const member = this.archive.find(relPath);
    return member === undefined ? undefined : this.archive.read(member, maxSize, what);
  }

  async openFile(relPath: string, offset: number): Promise<Readable | undefined> {
    const member = this.archive.find(relPath);
    return member === undefined ? undefined : this.archive.stream(member, offset);
  }

  close(): Promise<void> {
    return this.archive.close();
  }
}

function archiveBase(file: string): string {
  return path.basename(file).replace(/\.(tar\.gz|tgz|tar)$/i, '');
}

export type OciArchiveRef = Extract<ImageReference, { kind: 'oci-archive' }>;

export async function openOciArchive(ref: OciArchiveRef, ctx: Context): Promise<ImageSource> {
  const file = path.resolve(ref.path);
  const description = `oci-archive:${file}${ref.tag !== undefined ? `:${ref.tag}` : ''}`;
  const archive = await TarArchive.open(file, description, ctx);
  const source = new OciLayoutSource(new TarLayoutReader(archive), { description, tag: ref.tag, nameBase: archiveBase(file), ctx });
  try {
    await source.checkLayout();
  } catch (err) {
    await source.close();
    throw err;
  }
  return source;
}

/** `name` is "name:tag" or "@N" (the N-th image of the archive, from 0). */
export type DockerArchiveRef = Extract<ImageReference, { kind: 'docker-archive' }>;

interface DockerArchiveEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

function parseArchiveManifest(raw: Buffer, where: string): DockerArchiveEntry[] {
  const bad = (problem: string): GantryError => archiveInvalid(where, `manifest.json: ${problem}`);
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(doc) || doc.length === 0) throw bad('expected a non-empty list of images');
  return doc.map((item: unknown, i): DockerArchiveEntry => {
    if (typeof item !== 'object' || item === null) throw bad(`entry ${i} is not an object`);
    const { Config, RepoTags, Layers } = item as Record<string, unknown>;
    if (typeof Config !== 'string' || Config === '') throw bad(`entry ${i} has no "Config"`);
    if (RepoTags !== undefined && RepoTags !== null && (!Array.isArray(RepoTags) || !RepoTags.every((t) => typeof t === 'string'))) {
      throw bad(`entry ${i}: "RepoTags" must be a list of strings`);
    }
    if (!Array.isArray(Layers) || !Layers.every((l) => typeof l === 'string')) throw bad(`entry ${i}: "Layers" must be a list of paths`);
    return { Config, RepoTags: (RepoTags as string[] | null | undefined) ?? [], Layers: Layers as string[] };
  });
}

/** "busybox:latest" -> "docker.io/library/busybox:latest"; undefined when it is not a name. */
function canonicalTag(tag: string): string | undefined {
  try {
    return parseDockerName(tag).canonical;
  } catch {
    return undefined;
  }
}

async function hashMember(archive: TarArchive, member: TarMember): Promise<{ digest: string; head: Buffer }> {
  const hash = createHash('sha256');
  let head = Buffer.alloc(0);
  for await (const chunk of archive.stream(member)) {
    const buf = chunk as Buffer;
    if (head.length < 8) head = Buffer.concat([head, buf.subarray(0, 8 - head.length)]);
    hash.update(buf);
  }
  return { digest: `sha256:${hash.digest('hex')}`, head };
}

class DockerArchiveSource implements ImageSource {
  readonly description: string;
  /** Where each blob of the resolved image lives in the archive. */
  private readonly blobs = new Map<string, TarMember>();
  private closed = false;

  constructor(
    private readonly archive: TarArchive,
    private readonly ref: DockerArchiveRef,
    private readonly file: string,
    description: string,
    private readonly ctx: Context,
  ) {
    this.description = description;
  }

  private selectEntry(entries: DockerArchiveEntry[]): { entry: DockerArchiveEntry; name: string } {
    const where = this.description;
    const listing = entries.map((e, i) => (e.RepoTags.length > 0 ? e.RepoTags.join(', ') : `@${i} (untagged)`)).join('; ');
    const nameOf = (e: DockerArchiveEntry): string => {
      for (const tag of e.RepoTags) {
        const canonical = canonicalTag(tag);
        if (canonical !== undefined) return canonical;
      }
      return localName(archiveBase(this.file), undefined);
    };
    const wanted = this.ref.name;
    if (wanted === undefined) {
      if (entries.length === 1) return { entry: entries[0]!, name: nameOf(entries[0]!) };
      throw new GantryError('IMAGE_NOT_FOUND', `${where}: the archive holds ${entries.length} images; say which one: ${listing}`, {
        hint: 'use docker-archive:FILE:name:tag or docker-archive:FILE:@N',
      });
    }
    if (/^@\d+$/.test(wanted)) {
      const at = Number(wanted.slice(1));
      const entry = entries[at];
      if (entry === undefined) {
        throw new GantryError('IMAGE_NOT_FOUND', `${where}: there is no image ${wanted}; the archive holds ${entries.length} (@0..@${entries.length - 1})`, {
          hint: `images: ${listing}`,
        });
      }
      return { entry, name: nameOf(entry) };
    }
    const canonical = canonicalTag(wanted);
    const entry = entries.find((e) => e.RepoTags.some((t) => t === wanted || (canonical !== undefined && canonicalTag(t) === canonical)));
    if (entry === undefined) {
      throw new GantryError('IMAGE_NOT_FOUND', `${where}: no image named "${wanted}"; the archive holds: ${listing}`, {
        hint: 'use one of those names, or @N for the N-th image',
      });
    }
    return { entry, name: canonical ?? nameOf(entry) };
  }

  async resolve(platform: Platform): Promise<ResolvedManifest> {
    if (this.closed) throw new Error(`${this.description}: resolve after close`);
    const where = this.description;
    const manifestMember = this.archive.find('manifest.json');
    if (manifestMember === undefined) {
      throw archiveInvalid(where, 'it is not a docker-archive: there is no manifest.json',
        this.archive.find('index.json') ? 'this looks like an OCI archive: use oci-archive:FILE' : 'write the archive with docker save or podman save');
    }
    const entries = parseArchiveManifest(await this.archive.read(manifestMember, MAX_MANIFEST_SIZE, `${where}: manifest.json`), where);
    const { entry, name } = this.selectEntry(entries);

    const configMember = this.archive.find(entry.Config);
    if (configMember === undefined) throw archiveInvalid(where, `config "${entry.Config}" named in manifest.json is missing`);
    const configRaw = await this.archive.read(configMember, MAX_CONFIG_SIZE, `${where}: ${entry.Config}`);
    let config: ImageConfig;
    try {
      config = JSON.parse(configRaw.toString('utf8')) as ImageConfig;
    } catch (err) {
      throw new GantryError('MANIFEST_INVALID', `${where}: image config ${entry.Config} is not JSON (${(err as Error).message})`, {
        hint: 'the archive is damaged; write it again',
      });
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) {
      throw new GantryError('MANIFEST_INVALID', `${where}: image config ${entry.Config} is not a JSON object`);
    }
    const diffIds = Array.isArray(config.rootfs?.diff_ids) ? config.rootfs.diff_ids : undefined;
    if (diffIds !== undefined && diffIds.length !== entry.Layers.length) {
      throw new GantryError('MANIFEST_INVALID', `${where}: config lists ${diffIds.length} layers, manifest.json ${entry.Layers.length}`, {
        hint: 'the archive is damaged; write it again',
      });
    }
    const configDescriptor: Descriptor = {
      mediaType: MEDIA_TYPES.dockerConfig,
      digest: digestOf(configRaw),
      size: configRaw.length,
    };
    this.blobs.set(configDescriptor.digest, configMember);

    const layers: Descriptor[] = [];
    for (const [i, layerPath] of entry.Layers.entries()) {
      const member = this.archive.find(layerPath);
      if (member === undefined) throw archiveInvalid(where, `layer "${layerPath}" named in manifest.json is missing`);
      const { digest, head } = await hashMember(this.archive, member);
      const compression = sniffCompression(head);
      let mediaType: string;
      switch (compression) {
        case 'gzip': mediaType = MEDIA_TYPES.dockerLayerGzip; break;
        case 'zstd': mediaType = DOCKER_LAYER_ZSTD; break;
        case 'none': mediaType = DOCKER_LAYER_TAR; break;
        default:
          throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `${where}: layer "${layerPath}" is ${compression}-compressed`, {
            hint: 'gantry reads uncompressed, gzip and zstd layers; re-save the image with docker or podman',
          });
      }
      if (compression === 'none' && diffIds !== undefined && diffIds[i] !== digest) {
        throw new GantryError('DIGEST_MISMATCH', `${where}: layer "${layerPath}" has digest ${digest}, the config says ${String(diffIds[i])}`, {
          hint: 'the archive is damaged or was tampered with; write it again',
        });
      }
      this.blobs.set(digest, member);
      layers.push({ mediaType, digest, size: member.size });
    }

    // Key order is fixed here so the bytes, and so the image ID, are stable.
    const manifestDoc = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerManifest,
      config: { mediaType: configDescriptor.mediaType, size: configDescriptor.size, digest: configDescriptor.digest },
      layers: layers.map((l) => ({ mediaType: l.mediaType, size: l.size, digest: l.digest })),
    };
    const raw = Buffer.from(JSON.stringify(manifestDoc));
    const parsed = parseManifest(raw, MEDIA_TYPES.dockerManifest, `${where}: generated manifest`);
    if (parsed.kind !== 'manifest') throw new GantryError('INTERNAL', `${where}: generated manifest did not parse as a manifest`);

    let resolvedPlatform: Platform = platform;
    if (typeof config.os === 'string' && typeof config.architecture === 'string') {
      resolvedPlatform = { os: config.os, architecture: config.architecture };
      if (typeof config.variant === 'string' && config.variant !== '') resolvedPlatform.variant = config.variant;
      warnOnPlatformMismatch(this.ctx, where, resolvedPlatform, platform);
    }
    return {
      name,
      digest: digestOf(raw),
      mediaType: MEDIA_TYPES.dockerManifest,
      raw,
      config: parsed.config,
      layers: parsed.layers,
      platform: resolvedPlatform,
      format: 'oci',
    };
  }

  async openBlob(descriptor: Descriptor, offset = 0): Promise<Readable> {
    if (this.closed) throw new Error(`${this.description}: openBlob after close`);
    checkOffset(offset, descriptor, this.description);
    const member = this.blobs.get(descriptor.digest);
    if (member === undefined) throw missingBlob(this.description, descriptor.digest, 'blob');
    return this.archive.stream(member, offset);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.archive.close();
  }
}

export async function openDockerArchive(ref: DockerArchiveRef, ctx: Context): Promise<ImageSource> {
  const file = path.resolve(ref.path);
  const description = `docker-archive:${file}${ref.name !== undefined ? `:${ref.name}` : ''}`;
  const archive = await TarArchive.open(file, description, ctx);
  return new DockerArchiveSource(archive, ref, file, description, ctx);
}

