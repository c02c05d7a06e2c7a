/**
 * Shared test fixtures: images built once by test/fixtures/build.sh under
 * test/.fixtures/ (or $GANTRY_FIXTURES), and helpers to write small OCI
 * layouts and tar layers by hand for hostile-input tests.
 *
 * `fixture(name)` runs build.sh at most once per process and per name;
 * build.sh itself holds a flock, so test files running in parallel wait for
 * each other instead of racing. Fixtures are read-only for tests: copy one
 * into the test's temp dir before changing it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar from 'tar-stream';

const execFileP = promisify(execFile);

export type FixtureName =
  | 'busybox' | 'multilayer' | 'multiarch'
  | 'busybox-oci-archive' | 'busybox-docker-archive' | 'busybox-aci'
  | 'big';

/** The repository root: the nearest ancestor of this file holding test/fixtures/build.sh. */
function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (fs.existsSync(path.join(dir, 'test', 'fixtures', 'build.sh'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('fixtures: cannot find the repository root (test/fixtures/build.sh)');
}

export const REPO_ROOT = findRepoRoot();
export const FIXTURES_DIR = process.env.GANTRY_FIXTURES ?? path.join(REPO_ROOT, 'test', '.fixtures');

const FILES: Record<FixtureName, string> = {
  busybox: 'busybox',
  multilayer: 'multilayer',
  multiarch: 'multiarch',
  'busybox-oci-archive': 'busybox-oci-archive.tar',
  'busybox-docker-archive': 'busybox-docker-archive.tar',
  'busybox-aci': 'busybox.aci',
  big: 'big',
};

const building = new Map<FixtureName, Promise<string>>();

/** Builds (if needed) and returns the path of a fixture. */
export function fixture(name: FixtureName): Promise<string> {
  let pending = building.get(name);
  if (pending === undefined) {
    pending = (async () => {
      const target = path.join(FIXTURES_DIR, FILES[name]);
      if (!fs.existsSync(target)) {
        await execFileP('bash', [path.join(REPO_ROOT, 'test', 'fixtures', 'build.sh'), name], {
          env: { ...process.env, GANTRY_FIXTURES: FIXTURES_DIR },
          timeout: name === 'big' ? 600_000 : 120_000,
          maxBuffer: 16 * 1024 * 1024,
        });
      }
      if (!fs.existsSync(target)) throw new Error(`fixtures: build.sh did not produce ${target}`);
      return target;
    })();
    building.set(name, pending);
    // A failed build can be retried by a later call.
    pending.catch(() => building.delete(name));
  }
  return pending;
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Digest and length of everything a stream yields. */
export async function streamDigest(stream: Readable, algorithm = 'sha256'): Promise<{ digest: string; size: number }> {
  const hash = createHash(algorithm);
  let size = 0;
  for await (const chunk of stream) {
    const buf = chunk as Buffer;
    hash.update(buf);
    size += buf.length;
  }
  return { digest: `${algorithm}:${hash.digest('hex')}`, size };
}

export async function streamToBuffer(stream: Readable | AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** One tar entry: tar-stream's header plus its content and PAX records (e.g. SCHILY.xattr.user.x). */
export type TarEntry = Partial<tar.Header> & {
  name: string;
  content?: Buffer | string;
  pax?: Record<string, string>;
};

/** Builds an uncompressed tar in memory with tar-stream. */
export async function tarBuffer(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const done = streamToBuffer(pack);
  for (const { content, ...header } of entries) {
    const body = content === undefined ? undefined : Buffer.isBuffer(content) ? content : Buffer.from(content);
    const full = { mtime: new Date(0), mode: header.type === 'directory' ? 0o755 : header.type === 'symlink' ? 0o777 : 0o644, uid: 0, gid: 0, ...header, size: body?.length ?? 0 };
    await new Promise<void>((resolve, reject) => {
      pack.entry(full, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  return done;
}

export function gzip(data: Buffer): Buffer {
  return zlib.gzipSync(data);
}

export interface OciLayoutSpec {
  /** Layer blobs as stored (gzip them yourself for tar+gzip). */
  layers: Buffer[];
  /** Media type of every layer; default: tar+gzip when the blob starts with the gzip magic, else tar. */
  layerMediaType?: string;
  /** Merged into a minimal config (architecture amd64, os linux); rootfs.diff_ids is filled in. */
  config?: Record<string, unknown>;
  /** ref.name annotation; default "latest"; null for none. */
  tag?: string | null;
  /** Add the layout to an existing index.json instead of replacing it. */
  append?: boolean;
}

export interface WrittenLayout {
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  layerDigests: string[];
}

/** Writes a blob into a layout's blobs/ and returns its digest. */
export async function writeBlob(dir: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
  return digest;
}

/** Writes a small single-manifest OCI image layout by hand. */
export async function writeOciLayout(dir: string, spec: OciLayoutSpec): Promise<WrittenLayout> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const layerDigests: string[] = [];
  const diffIds: string[] = [];
  const layerDescriptors = [];
  for (const layer of spec.layers) {
    const isGzip = layer.length >= 2 && layer[0] === 0x1f && layer[1] === 0x8b;
    const digest = await writeBlob(dir, layer);
    layerDigests.push(digest);
    diffIds.push(isGzip ? sha256(zlib.gunzipSync(layer)) : digest);
    layerDescriptors.push({
      mediaType: spec.layerMediaType ?? (isGzip ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar'),
      digest,
      size: layer.length,
    });
  }
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'] },
    ...spec.config,
    rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  const configDigest = await writeBlob(dir, config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: layerDescriptors,
  }));
  const manifestDigest = await writeBlob(dir, manifest);
  const tag = spec.tag === undefined ? 'latest' : spec.tag;
  const entry: Record<string, unknown> = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length };
  if (tag !== null) entry.annotations = { 'org.opencontainers.image.ref.name': tag };
  let manifests: unknown[] = [];
  if (spec.append) {
    try {
      manifests = (JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: unknown[] }).manifests;
    } catch {
      manifests = [];
    }
  }
  manifests.push(entry);
  await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
  return { manifestDigest, manifestSize: manifest.length, configDigest, layerDigests };
}

/** Copies a fixture (directory or file) to `dest` so a test may damage it. */
export async function copyFixture(name: FixtureName, dest: string): Promise<string> {
  const src = await fixture(name);
  await fsp.cp(src, dest, { recursive: true });
  return dest;
}
