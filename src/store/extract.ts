/**
 * Layer extraction: turns one (uncompressed) layer tarball into a directory
 * tree in overlayfs form, refusing anything that could write outside it.
 *
 * The rules (docs/on-disk-format.md, DESIGN.md "Security rules"):
 *   - entry names are relative: an absolute name or any ".." component is
 *     LAYER_UNSAFE (tar's habit of stripping a leading "/" is deliberately not
 *     copied: a layer built by a real tool never has one);
 *   - every parent of an entry is resolved with lstat inside this layer's
 *     tree; a parent that is a symlink or not a directory is LAYER_UNSAFE, so
 *     a symlink in the archive is never followed; missing parents are created
 *     as directories 0755 (tar does the same);
 *   - whatever exists at an entry's path is removed first (recursively for a
 *     directory, unless the entry is a directory too, which merges) and files
 *     are created with O_CREAT|O_EXCL|O_NOFOLLOW: the later entry wins;
 *   - a hardlink must name an entry of the same layer that is already
 *     extracted, by a path obeying the same rules; a hardlink to a symlink
 *     links the symlink itself (link(2) does not follow) and is allowed;
 *   - whiteouts become overlayfs whiteouts: `.wh.<name>` -> character device
 *     0:0 at `<name>`; `.wh..wh..opq` -> xattr trusted.overlay.opaque=y on the
 *     parent; other `.wh..wh.*` names are ignored. A directory that replaces
 *     a whiteout of the same layer is made opaque, which is what the layer
 *     meant (delete, then recreate);
 *   - the archive cannot set trusted.overlay.* xattrs itself (those would
 *     steer the overlay mount);
 *   - the header's size is never trusted for allocation; a body shorter than
 *     it claims is ARCHIVE_INVALID.
 *
 * Per-entry filesystem calls are synchronous on purpose: each is a few
 * microseconds, and a thread-pool round trip per call made extraction an
 * order of magnitude slower than tar(1).
 *
 * Metadata is applied in the order that keeps it: lchown, then xattrs, then
 * chmod (chown clears setuid bits), then lutimes; directory times are set
 * last, deepest first, because creating children changes them.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import * as fzstd from 'fzstd';
import tar from 'tar-stream';
import { errnoCode, GantryError, isGantryError, translateFsError } from '../errors.js';
import { lsetxattr, mknod } from '../sys/libc.js';

export const OPAQUE_XATTR = 'trusted.overlay.opaque';
const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

export interface ExtractOptions {
  /** Names the layer in error messages ("layer sha256:abc…"). */
  layerName: string;
  /** Only entries under this prefix are extracted, with it stripped (ACIs: "rootfs/"). */
  rootPrefix?: string;
  /** Convert OCI whiteouts to overlay form (default true; false for ACIs, where `.wh.` is just a name). */
  whiteouts?: boolean;
}

export interface ExtractStats {
  entries: number;
  /** Bytes of regular file content written. */
  fileBytes: number;
}

type Header = Omit<tar.Header, 'pax' | 'type'> & { pax?: Record<string, string> | null; type: string | null };
/** An entry body as tar-stream hands it out (a streamx Readable). */
type Body = AsyncIterable<Buffer>;

// ---------------------------------------------------------------------------
// Binary xattr values. tar-stream decodes PAX records as UTF-8 text, which
// mangles binary values such as security.capability. We wrap its decoder
// (once, process-wide) to also keep the raw bytes of SCHILY.xattr.* records,
// keyed by the returned object; tar-stream's own behaviour is unchanged.
// ---------------------------------------------------------------------------
const rawPaxXattrs = new WeakMap<object, Map<string, Buffer>>();
const PATCHED = Symbol.for('gantry.tar-stream.rawxattrs');

function patchPaxDecoder(): void {
  const require = createRequire(import.meta.url);
  // headers.js is not in tar-stream's "exports"; load it by absolute path so it
  // is the very module instance extract.js uses.
  const headersPath = path.join(path.dirname(require.resolve('tar-stream')), 'headers.js');
  const headers = require(headersPath) as { decodePax: (buf: Buffer) => Record<string, string>; [PATCHED]?: boolean };
  if (headers[PATCHED]) return;
  const original = headers.decodePax;
  headers.decodePax = function decodePax(buf: Buffer): Record<string, string> {
    const result = original(buf);
    if (Object.keys(result).some((k) => k.startsWith('SCHILY.xattr.'))) rawPaxXattrs.set(result, rawXattrRecords(buf));
    return result;
  };
  headers[PATCHED] = true;
}
patchPaxDecoder();

/** Parses "<len> key=value\n" records keeping values as bytes. */
function rawXattrRecords(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let rest = buf;
  while (rest.length) {
    const sp = rest.indexOf(0x20);
    if (sp <= 0) break;
    const len = Number.parseInt(rest.subarray(0, sp).toString('latin1'), 10);
    if (!Number.isSafeInteger(len) || len <= sp + 1 || len > rest.length) break;
    const record = rest.subarray(sp + 1, len - 1);
    const eq = record.indexOf(0x3d);
    if (eq > 0) {
      const key = record.subarray(0, eq).toString('utf8');
      if (key.startsWith('SCHILY.xattr.')) out.set(key.slice('SCHILY.xattr.'.length), Buffer.from(record.subarray(eq + 1)));
    }
    rest = rest.subarray(len);
  }
  return out;
}

function xattrsOf(header: Header): Map<string, Buffer> {
  const pax = header.pax;
  if (!pax) return new Map();
  const raw = rawPaxXattrs.get(pax);
  if (raw) return raw;
  // Merged with a global header: tar-stream copied the object, only text survives.
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(pax)) {
    if (k.startsWith('SCHILY.xattr.')) out.set(k.slice('SCHILY.xattr.'.length), Buffer.from(v, 'utf8'));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Decompression
// ---------------------------------------------------------------------------

/** zstd through fzstd's streaming decoder (pure JS; Node 20 has no zstd). */
class ZstdDecompress extends Transform {
  private readonly decoder: fzstd.Decompress;

  constructor() {
    super();
    // fzstd may hand out views of its window buffer; copy before they are reused.
    this.decoder = new fzstd.Decompress((data) => {
      this.push(Buffer.from(data));
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.decoder.push(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.decoder.push(new Uint8Array(0), true);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }
}

export function decompressor(compression: 'none' | 'gzip' | 'zstd'): Transform {
  switch (compression) {
    case 'gzip':
      // Large output chunks: each one costs a thread-pool round trip and a JS callback.
      return zlib.createGunzip({ chunkSize: 256 * 1024 });
    case 'zstd':
      return new ZstdDecompress();
    case 'none':
      return new Transform({ transform: (chunk, _enc, cb) => cb(null, chunk) });
  }
}

// ---------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------

function unsafe(layer: string, entry: string, why: string): GantryError {
  return new GantryError('LAYER_UNSAFE', `${layer}: entry ${JSON.stringify(entry)} ${why}`, {
    hint: 'the image contains a hostile or broken layer; do not use it, and tell its publisher',
  });
}

function invalid(layer: string, what: string, cause?: unknown): GantryError {
  return new GantryError('ARCHIVE_INVALID', `${layer}: ${what}`, {
    hint: 'the layer is corrupt or truncated; remove the image and fetch it again, or rebuild it',
    cause,
  });
}

/** Classifies an error coming out of the decompress/parse pipeline. */
export function archiveError(layer: string, err: unknown): unknown {
  if (isGantryError(err)) return err;
  const translated = translateFsError(err, layer);
  if (translated !== err) return translated;
  const code = errnoCode(err);
  // Errors from zlib carry Z_* codes, fzstd errors numeric codes, tar-stream none:
  // all three mean the archive bytes are bad. Real errno errors (EIO...) stay.
  if (code !== undefined && /^E[A-Z0-9]+$/.test(code) && code !== 'ERR_STREAM_PREMATURE_CLOSE') return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/Unexpected end of data/i.test(message) || /unexpected end of file/i.test(message)) {
    return invalid(layer, `archive is truncated (${message})`, err);
  }
  return invalid(layer, `archive is corrupt (${message})`, err);
}

interface DirTimes {
  abs: string;
  atime: number;
  mtime: number;
}

/**
 * Runs `source` through `transforms` (decompression, hashing taps) into the
 * tar parser and extracts every entry into `target` (an existing, empty
 * directory this process owns). Resolves when the whole stream was consumed;
 * on error the caller removes `target`.
 */
export async function extractTar(source: Readable, transforms: Transform[], target: string, opts: ExtractOptions): Promise<ExtractStats> {
  const ex = new Extractor(path.resolve(target), opts);
  const parser = tar.extract();
  let pumpError: unknown;
  const streams = [source, ...transforms, parser] as unknown as NodeJS.ReadWriteStream[];
  const pump = pipeline(streams).catch((err: unknown) => {
    pumpError = err;
  });
  let loopError: unknown;
  try {
    for await (const entry of parser) {
      await ex.entry(entry.header as unknown as Header, entry as AsyncIterable<Buffer>);
    }
  } catch (err) {
    loopError = err;
    parser.destroy();
    source.destroy();
  }
  await pump;
  if (loopError !== undefined) {
    // Our verdicts and local filesystem failures are the real cause; anything
    // else surfaced through the parser and the pipeline knows why.
    if (isGantryError(loopError)) throw loopError;
    const code = errnoCode(loopError);
    if (code !== undefined && /^E[A-Z0-9]+$/.test(code)) throw translateFsError(loopError, opts.layerName);
    throw archiveError(opts.layerName, pumpError ?? loopError);
  }
  if (pumpError !== undefined) throw archiveError(opts.layerName, pumpError);
  await ex.finish();
  return ex.stats;
}

class Extractor {
  readonly stats: ExtractStats = { entries: 0, fileBytes: 0 };
  /** Relative paths known to be real directories of this tree. */
  private readonly dirs = new Set<string>(['']);
  /** Relative paths where this layer put a whiteout. */
  private readonly whiteouts = new Set<string>();
  private readonly dirTimes = new Map<string, DirTimes>();
  private readonly prefix: string[] | undefined;
  private readonly convertWhiteouts: boolean;

  constructor(
    private readonly root: string,
    private readonly opts: ExtractOptions,
  ) {
    this.prefix = opts.rootPrefix ? opts.rootPrefix.split('/').filter((c) => c !== '' && c !== '.') : undefined;
    this.convertWhiteouts = opts.whiteouts ?? true;
  }

  async entry(header: Header, body: Body): Promise<void> {
    this.stats.entries++;
    const rawName = header.name;
    const comps = this.relative(rawName, rawName, 'path');
    if (comps === undefined) return drain(body);
    const rel = comps.join('/');
    // tar-stream maps typeflags it does not know (GNU sparse, volume labels...) to null.
    const type = header.type ?? 'unknown';

    if (this.convertWhiteouts && comps.length > 0) {
      const base = comps[comps.length - 1];
      if (base.startsWith(WHITEOUT_PREFIX)) {
        await drain(body);
        return this.whiteout(rawName, comps.slice(0, -1), base);
      }
    }

    const parent = await this.parentDir(rawName, comps.slice(0, -1));
    if (comps.length === 0) {
      // The layer's root itself ("./"): only its metadata applies.
      await drain(body);
      if (type === 'directory') await this.applyMeta(this.root, '', header, 'directory');
      return;
    }
    const abs = path.join(parent, comps[comps.length - 1]);

    switch (type) {
      case 'file':
      case 'contiguous-file':
        await this.prepare(rel, abs, false);
        await this.writeFile(abs, body, header);
        break;
      case 'directory': {
        await drain(body);
        const wasWhiteout = this.whiteouts.has(rel);
        await this.prepare(rel, abs, true);
        await mkdirIfMissing(abs);
        this.dirs.add(rel);
        if (wasWhiteout) lsetxattr(abs, OPAQUE_XATTR, Buffer.from('y'));
        break;
      }
      case 'symlink':
        await drain(body);
        await this.prepare(rel, abs, false);
        fs.symlinkSync(header.linkname ?? '', abs);
        break;
      case 'link':
        await drain(body);
        await this.hardlink(rawName, rel, abs, header.linkname ?? '');
        return; // a hardlink shares its target's inode and metadata
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        await drain(body);
        await this.prepare(rel, abs, false);
        const kind = type === 'fifo' ? fs.constants.S_IFIFO : type === 'block-device' ? fs.constants.S_IFBLK : fs.constants.S_IFCHR;
        mknod(abs, kind | 0o600, header.devmajor ?? 0, header.devminor ?? 0);
        break;
      }
      default:
        await drain(body);
        throw invalid(this.opts.layerName, `entry ${JSON.stringify(rawName)} has an unsupported type (${String(type)})`);
    }
    await this.applyMeta(abs, rel, header, type);
  }

  async finish(): Promise<void> {
    // Deepest first: setting a parent's times before a child's would be undone.
    const entries = [...this.dirTimes.values()].sort((a, b) => b.abs.length - a.abs.length);
    for (const t of entries) fs.lutimesSync(t.abs, t.atime, t.mtime);
  }

  /**
   * Validates and normalises a name to components below the root. Returns
   * undefined for entries outside rootPrefix (skipped).
   */
  private relative(name: string, entry: string, what: 'path' | 'hardlink target'): string[] | undefined {
    if (name.includes('\0')) throw unsafe(this.opts.layerName, entry, `has a NUL byte in its ${what}`);
    if (name.startsWith('/')) throw unsafe(this.opts.layerName, entry, what === 'path' ? 'has an absolute path' : `links to an absolute path ${JSON.stringify(name)}`);
    const comps = name.split('/').filter((c) => c !== '' && c !== '.');
    if (comps.includes('..')) {
      throw unsafe(this.opts.layerName, entry, what === 'path' ? 'escapes the layer root' : `links to ${JSON.stringify(name)}, outside the layer root`);
    }
    if (!this.prefix) return comps;
    for (let i = 0; i < this.prefix.length; i++) {
      if (comps[i] !== this.prefix[i]) {
        if (what === 'hardlink target') throw unsafe(this.opts.layerName, entry, `links to ${JSON.stringify(name)}, outside ${this.opts.rootPrefix}`);
        return undefined;
      }
    }
    return comps.slice(this.prefix.length);
  }

  /**
   * Returns the absolute path of the directory holding an entry, creating
   * missing parents, refusing any that is a symlink or not a directory.
   */
  private async parentDir(entry: string, parents: string[], create = true): Promise<string> {
    let rel = '';
    for (const comp of parents) {
      rel = rel ? `${rel}/${comp}` : comp;
      if (this.dirs.has(rel)) continue;
      const abs = path.join(this.root, rel);
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(abs);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
      if (st === undefined) {
        if (!create) throw invalid(this.opts.layerName, `entry ${JSON.stringify(entry)}: ${JSON.stringify(rel)} does not exist`);
        fs.mkdirSync(abs, { mode: 0o755 });
      } else if (st.isSymbolicLink()) {
        throw unsafe(this.opts.layerName, entry, `goes through ${JSON.stringify(rel)}, a symlink`);
      } else if (!st.isDirectory()) {
        throw unsafe(this.opts.layerName, entry, `goes through ${JSON.stringify(rel)}, which is not a directory`);
      }
      this.dirs.add(rel);
    }
    return path.join(this.root, ...parents);
  }

  /** Clears the way for a new entry at `abs`; a directory is kept if the entry is one too. */
  private async prepare(rel: string, abs: string, isDir: boolean): Promise<void> {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    if (isDir && st.isDirectory()) return;
    if (st.isDirectory()) {
      // fs.rm never follows symlinks inside what it deletes.
      fs.rmSync(abs, { recursive: true, force: true });
      this.forgetDirsUnder(rel);
    } else {
      fs.unlinkSync(abs);
    }
    this.whiteouts.delete(rel);
    this.dirTimes.delete(rel);
  }

  private forgetDirsUnder(rel: string): void {
    const prefix = `${rel}/`;
    for (const d of [...this.dirs]) if (d === rel || d.startsWith(prefix)) this.dirs.delete(d);
    for (const d of [...this.dirTimes.keys()]) if (d === rel || d.startsWith(prefix)) this.dirTimes.delete(d);
    for (const d of [...this.whiteouts]) if (d.startsWith(prefix)) this.whiteouts.delete(d);
  }

  private async writeFile(abs: string, body: Body, header: Header): Promise<void> {
    // Synchronous writes: page-cache copies of tar-sized chunks take microseconds,
    // far less than a thread-pool round trip each.
    const fd = fs.openSync(abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    let written = 0;
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        let off = 0;
        while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off, written + off);
        written += buf.length;
      }
    } finally {
      fs.closeSync(fd);
    }
    if (written !== (header.size ?? 0)) {
      throw invalid(this.opts.layerName, `entry ${JSON.stringify(header.name)} claims ${header.size ?? 0} bytes but the archive holds ${written}`);
    }
    this.stats.fileBytes += written;
  }

  private async hardlink(entry: string, rel: string, abs: string, linkname: string): Promise<void> {
    const targetComps = this.relative(linkname, entry, 'hardlink target');
    if (targetComps === undefined || targetComps.length === 0) {
      throw unsafe(this.opts.layerName, entry, `links to ${JSON.stringify(linkname)}, which is not a file of this layer`);
    }
    const targetRel = targetComps.join('/');
    if (targetRel === rel) return; // a link to itself leaves the file as it is
    const targetParent = await this.parentDir(entry, targetComps.slice(0, -1), false);
    const targetAbs = path.join(targetParent, targetComps[targetComps.length - 1]);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(targetAbs);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw invalid(this.opts.layerName, `entry ${JSON.stringify(entry)} links to ${JSON.stringify(linkname)}, which is not (yet) in the layer`);
      throw err;
    }
    if (st.isDirectory()) throw unsafe(this.opts.layerName, entry, `is a hardlink to the directory ${JSON.stringify(linkname)}`);
    if (this.whiteouts.has(targetRel)) throw invalid(this.opts.layerName, `entry ${JSON.stringify(entry)} links to a whiteout`);
    await this.prepare(rel, abs, false);
    // link(2) (linkat without AT_SYMLINK_FOLLOW) links a symlink itself, never its target.
    fs.linkSync(targetAbs, abs);
  }

  private async whiteout(entry: string, parents: string[], base: string): Promise<void> {
    const dir = await this.parentDir(entry, parents);
    if (base === OPAQUE_MARKER) {
      lsetxattr(dir, OPAQUE_XATTR, Buffer.from('y'));
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) return; // reserved for other AUFS metadata
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (name === '' || name === '.' || name === '..') throw unsafe(this.opts.layerName, entry, 'is a whiteout of an invalid name');
    const rel = [...parents, name].join('/');
    const abs = path.join(dir, name);
    await this.prepare(rel, abs, false);
    mknod(abs, fs.constants.S_IFCHR, 0, 0);
    this.whiteouts.add(rel);
  }

  private async applyMeta(abs: string, rel: string, header: Header, type: string): Promise<void> {
    fs.lchownSync(abs, header.uid ?? 0, header.gid ?? 0);
    for (const [name, value] of xattrsOf(header)) {
      // These would steer the overlay mount (opaque, redirect, metacopy...).
      if (name.startsWith('trusted.overlay.')) continue;
      try {
        lsetxattr(abs, name, value);
      } catch (err) {
        const code = errnoCode(err);
        // Filesystems without that namespace, or user.* on a symlink: nothing to keep it in.
        if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || (code === 'EPERM' && type === 'symlink')) continue;
        throw err;
      }
    }
    if (type !== 'symlink') fs.chmodSync(abs, (header.mode ?? (type === 'directory' ? 0o755 : 0o644)) & 0o7777);
    const headerTime = header.mtime ? header.mtime.getTime() / 1000 : 0;
    const mtime = timeOf(header.pax?.mtime) ?? (Number.isFinite(headerTime) ? headerTime : 0);
    const atime = timeOf(header.pax?.atime) ?? mtime;
    if (type === 'directory') this.dirTimes.set(rel, { abs, atime, mtime });
    else fs.lutimesSync(abs, atime, mtime);
  }
}

function timeOf(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number.parseFloat(value);
  return Number.isFinite(n) ? n : undefined;
}

async function mkdirIfMissing(abs: string): Promise<void> {
  try {
    fs.mkdirSync(abs, { mode: 0o755 });
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
}

async function drain(body: Body): Promise<void> {
  for await (const chunk of body) void chunk;
}
