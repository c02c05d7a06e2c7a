/**
 * Local transports against the real fixtures (umoci/skopeo-built layouts and
 * archives, a tar-built ACI) and against hand-damaged copies of them. ACI
 * URLs are served by http(s) servers this test starts on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { createContext, type Context, type InsecureCheck, type ProgressEvent } from '../src/context.js';
import { isGantryError, type ErrorCode } from '../src/errors.js';
import { isCode } from './lib/errors.js';
import type { ImageSource, Platform, ResolvedManifest } from '../src/image/model.js';
import { parseReference } from '../src/image/reference.js';
import { appcImageId } from '../src/image/transports/aci.js';
import { indexTar } from '../src/image/transports/archive.js';
import { openLocalSource } from '../src/image/transports/index.js';
import {
  copyFixture, fixture, gzip, sha256, streamDigest, streamToBuffer, tarBuffer, writeBlob, writeOciLayout,
} from './lib/fixtures.js';

const execFileP = promisify(execFile);
const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64', variant: 'v8' };
const S390X: Platform = { os: 'linux', architecture: 's390x' };

let tmp: string;
let warnings: string[];
let progress: ProgressEvent[];

function context(insecure: InsecureCheck[] = []): Context {
  return createContext({
    dir: path.join(tmp, 'state'),
    insecure,
    warn: (m) => warnings.push(m),
    progress: (e) => progress.push(e),
  });
}

async function open(ref: string, insecure: InsecureCheck[] = []): Promise<ImageSource> {
  return openLocalSource(parseReference(ref), context(insecure));
}

/** Opens, resolves and closes, returning the manifest; the source is closed even on error. */
async function resolve(ref: string, platform: Platform = AMD64, insecure: InsecureCheck[] = []): Promise<ResolvedManifest> {
  const source = await open(ref, insecure);
  try {
    return await source.resolve(platform);
  } finally {
    await source.close();
  }
}

/** Resolves and streams every blob, checking each against its descriptor. */
async function resolveAndVerify(ref: string, platform: Platform = AMD64, insecure: InsecureCheck[] = []): Promise<ResolvedManifest> {
  const source = await open(ref, insecure);
  try {
    const resolved = await source.resolve(platform);
    assert.equal(sha256(resolved.raw), resolved.digest, 'manifest digest is the digest of the raw bytes');
    for (const d of [resolved.config, ...resolved.layers]) {
      const got = await streamDigest(await source.openBlob(d), d.digest.split(':')[0]);
      assert.deepEqual(got, { digest: d.digest, size: d.size }, `blob ${d.digest} of ${ref}`);
    }
    return resolved;
  } finally {
    await source.close();
  }
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, isCode(code, pattern));
}

before(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'gantry-transports-'));
  await Promise.all([
    fixture('busybox'), fixture('multilayer'), fixture('multiarch'),
    fixture('busybox-oci-archive'), fixture('busybox-docker-archive'), fixture('busybox-aci'),
  ]);
});

after(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

test.beforeEach(() => {
  warnings = [];
  progress = [];
});

describe('oci: layouts', () => {
  test('busybox resolves, names itself localhost/<dir>:<tag>, blobs match their digests', async () => {
    const dir = await fixture('busybox');
    const r = await resolveAndVerify(`oci:${dir}:latest`);
    assert.equal(r.name, 'localhost/busybox:latest');
    assert.equal(r.format, 'oci');
    assert.equal(r.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(r.layers.length, 1);
    assert.equal(r.layers[0]!.compression, 'gzip');
    assert.deepEqual(r.platform, AMD64);
    assert.equal(r.indexDigest, undefined);
    // Without a tag, the only image is taken.
    assert.equal((await resolve(`oci:${dir}`)).digest, r.digest);
  });

  test('multilayer has 5 layers, the last one uncompressed', async () => {
    const r = await resolveAndVerify(`oci:${await fixture('multilayer')}:latest`);
    assert.equal(r.layers.length, 5);
    assert.deepEqual(r.layers.map((l) => l.compression), ['gzip', 'gzip', 'gzip', 'gzip', 'none']);
  });

  test('the multilayer fixture holds the entries other tests rely on', async () => {
    const source = await open(`oci:${await fixture('multilayer')}:latest`);
    const layers: Map<string, tar.Header>[] = [];
    try {
      const r = await source.resolve(AMD64);
      for (const d of r.layers) {
        const entries = new Map<string, tar.Header>();
        const extract = tar.extract();
        extract.on('entry', (header, stream, next) => {
          entries.set(header.name.replace(/^\.\//, '').replace(/\/$/, ''), header);
          stream.on('end', () => next());
          stream.resume();
        });
        const blob = await source.openBlob(d);
        if (d.compression === 'gzip') await pipeline(blob, zlib.createGunzip(), extract);
        else await pipeline(blob, extract);
        layers.push(entries);
      }
    } finally {
      await source.close();
    }
    const [, odd, whiteouts, opaque, xattr] = layers as [unknown, Map<string, tar.Header>, Map<string, tar.Header>, Map<string, tar.Header>, Map<string, tar.Header>];
    assert.equal(odd.get('data/hardlink')?.type, 'link');
    assert.equal(odd.get('data/hardlink')?.linkname, 'data/file');
    assert.equal(odd.get('data/rel-symlink')?.linkname, 'file');
    assert.equal(odd.get('data/abs-symlink')?.linkname, '/etc/passwd');
    assert.equal(odd.get('data/fifo')?.type, 'fifo');
    assert.equal(odd.get('data/setuid')!.mode & 0o7777, 0o4755);
    assert.equal(odd.get('data/mode0000')!.mode & 0o7777, 0);
    assert.equal(odd.get('data/owned-by-app')?.uid, 1000);
    assert.equal(odd.get('data/empty')?.type, 'directory');
    assert.ok(whiteouts.has('data/.wh.deleteme') && whiteouts.has('data/.wh.deldir'));
    assert.ok(opaque.has('olddir/.wh..wh..opq') && opaque.has('olddir/b'));
    assert.deepEqual(xattr.get('data/xattr-file')?.pax, { 'SCHILY.xattr.user.gantry': 'hello', mtime: '0.5' });
  });

  test('multiarch picks amd64 or arm64/v8 from the nested index, refuses s390x', async () => {
    const dir = await fixture('multiarch');
    const amd = await resolveAndVerify(`oci:${dir}:latest`, AMD64);
    const arm = await resolveAndVerify(`oci:${dir}:latest`, ARM64);
    assert.notEqual(amd.digest, arm.digest);
    assert.ok(amd.indexDigest);
    assert.equal(amd.indexDigest, arm.indexDigest);
    assert.equal(arm.platform.architecture, 'arm64');
    assert.equal(arm.platform.variant, 'v8');
    // arm64 without a variant means v8.
    assert.equal((await resolve(`oci:${dir}:latest`, { os: 'linux', architecture: 'arm64' })).digest, arm.digest);
    const source = await open(`oci:${dir}:latest`);
    try {
      const config = JSON.parse((await streamToBuffer(await source.openBlob(arm.config))).toString()) as { architecture: string };
      assert.equal(config.architecture, 'arm64');
    } finally {
      await source.close();
    }
    await rejectsWith(resolve(`oci:${dir}:latest`, S390X), 'PLATFORM_NOT_FOUND', /linux\/amd64.*linux\/arm64/);
  });

  test('an unknown tag is IMAGE_NOT_FOUND listing the tags', async () => {
    await rejectsWith(resolve(`oci:${await fixture('busybox')}:nope`), 'IMAGE_NOT_FOUND', /"nope".*available tags: latest/);
  });

  test('several images and no tag: IMAGE_NOT_FOUND listing the tags', async () => {
    const dir = path.join(tmp, 'two-tags');
    const layer = gzip(await tarBuffer([{ name: 'a', content: 'a' }]));
    await writeOciLayout(dir, { layers: [layer], tag: 'one' });
    await writeOciLayout(dir, { layers: [layer], tag: 'two', config: { config: { Cmd: ['/two'] } }, append: true });
    await rejectsWith(resolve(`oci:${dir}`), 'IMAGE_NOT_FOUND', /one, two/);
    assert.notEqual((await resolve(`oci:${dir}:one`)).digest, (await resolve(`oci:${dir}:two`)).digest);
  });

  test('a full reference in ref.name becomes the image name', async () => {
    const dir = path.join(tmp, 'fullname');
    await writeOciLayout(dir, { layers: [await tarBuffer([{ name: 'f', content: 'x' }])], tag: 'example.com/team/app:1.0' });
    const r = await resolveAndVerify(`oci:${dir}:example.com/team/app:1.0`);
    assert.equal(r.name, 'example.com/team/app:1.0');
    assert.equal(r.layers[0]!.compression, 'none');
  });

  test('a single-platform image for another platform resolves with a warning', async () => {
    const dir = path.join(tmp, 'arm-only');
    await writeOciLayout(dir, { layers: [await tarBuffer([{ name: 'f', content: 'x' }])], config: { architecture: 'arm64' } });
    const r = await resolve(`oci:${dir}`);
    assert.equal(r.platform.architecture, 'arm64');
    assert.ok(warnings.some((w) => /linux\/arm64, not linux\/amd64/.test(w)), warnings.join('\n'));
  });

  test('broken index.json is MANIFEST_INVALID', async () => {
    const dir = await copyFixture('busybox', path.join(tmp, 'broken-index'));
    await fsp.writeFile(path.join(dir, 'index.json'), '{"schemaVersion": 2, "manifests": [');
    await rejectsWith(resolve(`oci:${dir}:latest`), 'MANIFEST_INVALID', /index\.json.*not JSON/);
  });

  test('not a layout, missing directory, missing index.json, future layout version', async () => {
    const empty = path.join(tmp, 'empty-dir');
    await fsp.mkdir(empty);
    await rejectsWith(open(`oci:${empty}`), 'ARCHIVE_INVALID', /no "oci-layout" file/);
    await rejectsWith(open(`oci:${path.join(tmp, 'does-not-exist')}`), 'IMAGE_NOT_FOUND');
    const noIndex = await copyFixture('busybox', path.join(tmp, 'no-index'));
    await fsp.rm(path.join(noIndex, 'index.json'));
    await rejectsWith(resolve(`oci:${noIndex}`), 'ARCHIVE_INVALID', /no index\.json/);
    const v2 = await copyFixture('busybox', path.join(tmp, 'layout-v2'));
    await fsp.writeFile(path.join(v2, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    await rejectsWith(open(`oci:${v2}`), 'MEDIA_TYPE_UNSUPPORTED', /2\.0\.0/);
  });

  test('missing blobs are errors naming the digest', async () => {
    const dir = await copyFixture('busybox', path.join(tmp, 'missing-layer'));
    const source = await open(`oci:${dir}:latest`);
    try {
      const r = await source.resolve(AMD64);
      const layer = r.layers[0]!;
      await fsp.rm(path.join(dir, 'blobs', 'sha256', layer.digest.slice(7)));
      await assert.rejects(source.openBlob(layer), (err: unknown) => isGantryError(err, 'ARCHIVE_INVALID') && err.message.includes(layer.digest));
    } finally {
      await source.close();
    }
    const noManifest = await copyFixture('busybox', path.join(tmp, 'missing-manifest'));
    const index = JSON.parse(await fsp.readFile(path.join(noManifest, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const digest = index.manifests[0]!.digest;
    await fsp.rm(path.join(noManifest, 'blobs', 'sha256', digest.slice(7)));
    await rejectsWith(resolve(`oci:${noManifest}:latest`), 'ARCHIVE_INVALID', new RegExp(digest));
  });

  test('a tampered manifest blob is DIGEST_MISMATCH', async () => {
    const dir = await copyFixture('busybox', path.join(tmp, 'tampered'));
    const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const file = path.join(dir, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7));
    const text = await fsp.readFile(file, 'utf8');
    await fsp.writeFile(file, text.replace('"schemaVersion":2', '"schemaVersion":2 '));
    await rejectsWith(resolve(`oci:${dir}:latest`), 'DIGEST_MISMATCH');
  });

  test('digest path traversal is refused, in index.json and in openBlob', async () => {
    const dir = await copyFixture('busybox', path.join(tmp, 'traversal'));
    await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:../../etc', size: 10, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }));
    await rejectsWith(resolve(`oci:${dir}:latest`), 'MANIFEST_INVALID', /sha256:\.\.\/\.\.\/etc/);
    const source = await open(`oci:${await fixture('busybox')}`);
    try {
      for (const digest of ['sha256:../../../../etc/passwd', 'sha256/../../x:00', '../oci-layout', 'sha256:' + 'A'.repeat(64)]) {
        await rejectsWith(source.openBlob({ mediaType: 'x', digest, size: 1 }), 'MANIFEST_INVALID');
      }
    } finally {
      await source.close();
    }
  });

  test('a manifest descriptor that is really an index loops at most a few levels', async () => {
    const dir = path.join(tmp, 'self-index');
    await writeOciLayout(dir, { layers: [await tarBuffer([{ name: 'f', content: 'x' }])] });
    // An index pointing at an index pointing at ... 6 levels.
    let target = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: '', size: 0 };
    let inner = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }));
    for (let i = 0; i < 6; i++) {
      target = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: await writeBlob(dir, inner), size: inner.length };
      inner = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ ...target, platform: AMD64 }] }));
    }
    await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...target, annotations: { 'org.opencontainers.image.ref.name': 'deep' } }] }));
    await rejectsWith(resolve(`oci:${dir}:deep`), 'MANIFEST_INVALID', /nested/);
  });

  test('openBlob resumes from an offset', async () => {
    const source = await open(`oci:${await fixture('busybox')}:latest`);
    try {
      const r = await source.resolve(AMD64);
      const layer = r.layers[0]!;
      const whole = await streamToBuffer(await source.openBlob(layer));
      const tail = await streamToBuffer(await source.openBlob(layer, 1000));
      assert.ok(whole.subarray(1000).equals(tail));
      assert.equal((await streamToBuffer(await source.openBlob(layer, layer.size))).length, 0);
    } finally {
      await source.close();
    }
  });
});

describe('oci-archive:', () => {
  test('resolves to the same manifest as the layout it was made from, without extracting', async () => {
    const archive = await fixture('busybox-oci-archive');
    const r = await resolveAndVerify(`oci-archive:${archive}:latest`);
    const layout = await resolve(`oci:${await fixture('busybox')}:latest`);
    assert.equal(r.digest, layout.digest);
    assert.equal(r.name, 'localhost/busybox-oci-archive:latest');
    assert.deepEqual(await fsp.readdir(path.join(tmp, 'state')).catch(() => []), []);
  });

  test('a gzip-compressed archive is decompressed into store/tmp and cleaned up on close', async () => {
    const file = path.join(tmp, 'busybox-oci.tar.gz');
    await fsp.writeFile(file, gzip(await fsp.readFile(await fixture('busybox-oci-archive'))));
    const source = await open(`oci-archive:${file}`);
    const tmpDir = path.join(tmp, 'state', 'store', 'tmp');
    try {
      assert.equal((await fsp.readdir(tmpDir)).length, 1);
      const r = await source.resolve(AMD64);
      assert.equal(r.name, 'localhost/busybox-oci:latest');
      const got = await streamDigest(await source.openBlob(r.layers[0]!));
      assert.equal(got.digest, r.layers[0]!.digest);
    } finally {
      await source.close();
    }
    assert.deepEqual(await fsp.readdir(tmpDir), []);
  });

  test('truncated archives are ARCHIVE_INVALID', async () => {
    const data = await fsp.readFile(await fixture('busybox-oci-archive'));
    // Cut inside the first member's data: every later member is gone.
    const cut = path.join(tmp, 'cut.tar');
    await fsp.writeFile(cut, data.subarray(0, Math.floor(data.length / 2)));
    await rejectsWith(open(`oci-archive:${cut}`), 'ARCHIVE_INVALID', /truncated/);
    const cutGz = path.join(tmp, 'cut.tar.gz');
    const gz = gzip(data);
    await fsp.writeFile(cutGz, gz.subarray(0, Math.floor(gz.length / 2)));
    await rejectsWith(open(`oci-archive:${cutGz}`), 'ARCHIVE_INVALID', /gzip/);
    assert.deepEqual(await fsp.readdir(path.join(tmp, 'state', 'store', 'tmp')), []);
  });

  test('garbage, empty files and layouts without oci-layout are ARCHIVE_INVALID', async () => {
    const garbage = path.join(tmp, 'garbage.tar');
    await fsp.writeFile(garbage, Buffer.alloc(4096, 'x'));
    await rejectsWith(open(`oci-archive:${garbage}`), 'ARCHIVE_INVALID', /not a tar archive/);
    const empty = path.join(tmp, 'empty.tar');
    await fsp.writeFile(empty, '');
    await rejectsWith(open(`oci-archive:${empty}`), 'ARCHIVE_INVALID', /empty/);
    const plain = path.join(tmp, 'plain.tar');
    await fsp.writeFile(plain, await tarBuffer([{ name: 'hello', content: 'world' }]));
    await rejectsWith(open(`oci-archive:${plain}`), 'ARCHIVE_INVALID', /oci-layout/);
    await rejectsWith(open(`oci-archive:${path.join(tmp, 'nope.tar')}`), 'IMAGE_NOT_FOUND');
    const xz = path.join(tmp, 'x.tar.xz');
    await fsp.writeFile(xz, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
    await rejectsWith(open(`oci-archive:${xz}`), 'ARCHIVE_INVALID', /xz/);
  });

  test('the tar index reads PAX long names and GNU long names', async () => {
    const long = `blobs/${'d'.repeat(150)}/file`;
    const file = path.join(tmp, 'long.tar');
    await fsp.writeFile(file, await tarBuffer([{ name: long, content: 'pax' }, { name: './x//y/', type: 'directory' }]));
    const members = await indexTar(file, 'test');
    assert.equal(members.get(long)?.size, 3);
    assert.equal(members.get('x/y')?.type, 'directory');
    const gnu = path.join(tmp, 'gnu.tar');
    const src = path.join(tmp, 'gnu-src', 'e'.repeat(120));
    await fsp.mkdir(src, { recursive: true });
    await fsp.writeFile(path.join(src, 'f'), 'gnu');
    await execFileP('tar', ['--format=gnu', '-C', path.join(tmp, 'gnu-src'), '-cf', gnu, '.']);
    assert.equal((await indexTar(gnu, 'test')).get(`${'e'.repeat(120)}/f`)?.size, 3);
  });
});

describe('docker-archive:', () => {
  test('resolves with a generated, deterministic schema 2 manifest; blobs match', async () => {
    const archive = await fixture('busybox-docker-archive');
    const r = await resolveAndVerify(`docker-archive:${archive}`);
    assert.equal(r.name, 'docker.io/library/busybox:latest');
    assert.equal(r.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(r.config.mediaType, 'application/vnd.docker.container.image.v1+json');
    assert.equal(r.layers[0]!.compression, 'none');
    const again = await resolve(`docker-archive:${archive}`);
    assert.equal(again.digest, r.digest);
    assert.ok(again.raw.equals(r.raw));
    // The layer is uncompressed, so its digest is the config's diff_id.
    const source = await open(`docker-archive:${archive}`);
    try {
      await source.resolve(AMD64);
      const config = JSON.parse((await streamToBuffer(await source.openBlob(r.config))).toString()) as { rootfs: { diff_ids: string[] } };
      assert.deepEqual(config.rootfs.diff_ids, r.layers.map((l) => l.digest));
    } finally {
      await source.close();
    }
  });

  test('selects images by name or @N, refuses unknown ones', async () => {
    const archive = await fixture('busybox-docker-archive');
    const base = await resolve(`docker-archive:${archive}`);
    assert.equal((await resolve(`docker-archive:${archive}:busybox:latest`)).digest, base.digest);
    assert.equal((await resolve(`docker-archive:${archive}:docker.io/library/busybox:latest`)).digest, base.digest);
    assert.equal((await resolve(`docker-archive:${archive}:@0`)).digest, base.digest);
    await rejectsWith(resolve(`docker-archive:${archive}:other:1`), 'IMAGE_NOT_FOUND', /docker\.io\/library\/busybox:latest/);
    await rejectsWith(resolve(`docker-archive:${archive}:@3`), 'IMAGE_NOT_FOUND', /@0\.\.@0/);
  });

  test('a gzip-compressed docker save works (docker save | gzip)', async () => {
    const file = path.join(tmp, 'docker.tar.gz');
    await fsp.writeFile(file, gzip(await fsp.readFile(await fixture('busybox-docker-archive'))));
    const r = await resolveAndVerify(`docker-archive:${file}`);
    assert.equal(r.digest, (await resolve(`docker-archive:${await fixture('busybox-docker-archive')}`)).digest);
  });

  test('without manifest.json it is ARCHIVE_INVALID (with a hint for OCI archives)', async () => {
    const file = path.join(tmp, 'no-manifest.tar');
    await fsp.writeFile(file, await tarBuffer([{ name: 'abc.json', content: '{}' }, { name: 'abc/layer.tar', content: 'x' }]));
    await rejectsWith(resolve(`docker-archive:${file}`), 'ARCHIVE_INVALID', /no manifest\.json/);
    await assert.rejects(resolve(`docker-archive:${await fixture('busybox-oci-archive')}`),
      (err: unknown) => isGantryError(err, 'ARCHIVE_INVALID') && /oci-archive/.test(err.hint ?? ''));
  });

  test('hostile or damaged archives', async () => {
    const layer = await tarBuffer([{ name: 'f', content: 'layer' }]);
    const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } });
    const manifest = (layers: string[]): string => JSON.stringify([{ Config: 'c.json', RepoTags: ['x:1'], Layers: layers }]);
    const write = async (name: string, entries: Parameters<typeof tarBuffer>[0]): Promise<string> => {
      const file = path.join(tmp, name);
      await fsp.writeFile(file, await tarBuffer(entries));
      return file;
    };
    // The good case first, so the failures below are about what they change.
    const good = await write('good-docker.tar', [{ name: 'manifest.json', content: manifest(['l/layer.tar']) }, { name: 'c.json', content: config }, { name: 'l/layer.tar', content: layer }]);
    assert.equal((await resolveAndVerify(`docker-archive:${good}`)).name, 'docker.io/library/x:1');
    // A symlinked layer.tar pointing out of the archive.
    const escape = await write('escape.tar', [
      { name: 'manifest.json', content: manifest(['l/layer.tar']) }, { name: 'c.json', content: config },
      { name: 'l/layer.tar', type: 'symlink', linkname: '../../../etc/passwd' },
    ]);
    await rejectsWith(resolve(`docker-archive:${escape}`), 'ARCHIVE_INVALID', /outside the archive/);
    // A symlink loop.
    const loop = await write('loop.tar', [
      { name: 'manifest.json', content: manifest(['a']) }, { name: 'c.json', content: config },
      { name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: 'a' },
    ]);
    await rejectsWith(resolve(`docker-archive:${loop}`), 'ARCHIVE_INVALID', /too many links/);
    // Layer listed but absent; config absent; manifest.json not JSON.
    const noLayer = await write('no-layer.tar', [{ name: 'manifest.json', content: manifest(['missing.tar']) }, { name: 'c.json', content: config }]);
    await rejectsWith(resolve(`docker-archive:${noLayer}`), 'ARCHIVE_INVALID', /missing\.tar/);
    const noConfig = await write('no-config.tar', [{ name: 'manifest.json', content: manifest([]) }]);
    await rejectsWith(resolve(`docker-archive:${noConfig}`), 'ARCHIVE_INVALID', /c\.json/);
    const badJson = await write('bad-json.tar', [{ name: 'manifest.json', content: '[{' }]);
    await rejectsWith(resolve(`docker-archive:${badJson}`), 'ARCHIVE_INVALID', /not JSON/);
    // A layer that does not match the config's diff_id.
    const tampered = await write('tampered.tar', [
      { name: 'manifest.json', content: manifest(['l/layer.tar']) }, { name: 'c.json', content: config },
      { name: 'l/layer.tar', content: await tarBuffer([{ name: 'f', content: 'evil!' }]) },
    ]);
    await rejectsWith(resolve(`docker-archive:${tampered}`), 'DIGEST_MISMATCH', /l\/layer\.tar/);
    // Truncated real archive.
    const data = await fsp.readFile(await fixture('busybox-docker-archive'));
    const cut = path.join(tmp, 'cut-docker.tar');
    await fsp.writeFile(cut, data.subarray(0, 1_000_000));
    await rejectsWith(open(`docker-archive:${cut}`), 'ARCHIVE_INVALID', /truncated/);
  });
});

describe('ACI', () => {
  test('busybox.aci resolves: config is the appc manifest, the layer is the whole file', async () => {
    const file = await fixture('busybox-aci');
    const r = await resolveAndVerify(file);
    assert.equal(r.format, 'appc');
    assert.equal(r.name, 'example.com/busybox:latest');
    assert.equal(r.config.mediaType, 'application/vnd.appc.image.manifest.v0+json');
    assert.equal(r.layers.length, 1);
    const layer = r.layers[0]!;
    assert.equal(layer.mediaType, 'application/vnd.appc.image.aci.v0+tar');
    assert.equal(layer.rootPrefix, 'rootfs/');
    assert.equal(layer.compression, 'gzip');
    const bytes = await fsp.readFile(file);
    assert.equal(layer.digest, sha256(bytes));
    assert.equal(appcImageId(r), `sha512-${createHash('sha512').update(zlib.gunzipSync(bytes)).digest('hex')}`);
    // Same file, same synthetic manifest.
    assert.equal((await resolve(`file://${file}`)).digest, r.digest);
    await rejectsWith(resolve(file, ARM64), 'PLATFORM_NOT_FOUND', /not linux\/arm64/);
  });

  test('uncompressed ACI; unsupported compressions', async () => {
    const file = path.join(tmp, 'plain.aci');
    await fsp.writeFile(file, zlib.gunzipSync(await fsp.readFile(await fixture('busybox-aci'))));
    const r = await resolveAndVerify(file);
    assert.equal(r.layers[0]!.compression, 'none');
    const bz = path.join(tmp, 'bz.aci');
    await fsp.writeFile(bz, Buffer.from('BZh91AY&SY\0\0\0\0'));
    await rejectsWith(resolve(bz), 'MEDIA_TYPE_UNSUPPORTED', /bzip2/);
  });

  test('missing, broken and invalid manifests are MANIFEST_INVALID naming the file', async () => {
    const rootfs = [{ name: 'rootfs', type: 'directory' as const }, { name: 'rootfs/hello', content: 'hi' }];
    const make = async (name: string, manifest: string | undefined): Promise<string> => {
      const file = path.join(tmp, name);
      const entries = manifest === undefined ? rootfs : [{ name: 'manifest', content: manifest }, ...rootfs];
      await fsp.writeFile(file, gzip(await tarBuffer(entries)));
      return file;
    };
    const good = JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'example.com/hello', labels: [{ name: 'os', value: 'linux' }, { name: 'arch', value: 'amd64' }, { name: 'version', value: '1.0' }] });
    assert.equal((await resolveAndVerify(await make('good.aci', good))).name, 'example.com/hello:1.0');
    await rejectsWith(resolve(await make('none.aci', undefined)), 'MANIFEST_INVALID', /none\.aci.*no "manifest"/);
    await rejectsWith(resolve(await make('json.aci', '{"acKind": ')), 'MANIFEST_INVALID', /json\.aci.*not JSON/);
    await rejectsWith(resolve(await make('kind.aci', JSON.stringify({ acKind: 'PodManifest', acVersion: '0.8.11', name: 'x' }))), 'MANIFEST_INVALID', /acKind/);
    await rejectsWith(resolve(await make('noname.aci', JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11' }))), 'MANIFEST_INVALID', /name/);
    await rejectsWith(resolve(await make('badname.aci', JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'Bad Name' }))), 'MANIFEST_INVALID', /AC identifier/);
    await rejectsWith(resolve(await make('labels.aci', JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'x', labels: { os: 'linux' } }))), 'MANIFEST_INVALID', /labels/);
    // No os/arch labels: runs anywhere.
    const anyArch = await make('any.aci', JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'example.com/any' }));
    assert.deepEqual((await resolve(anyArch, ARM64)).platform, ARM64);
    const wrongOs = await make('freebsd.aci', JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'x', labels: [{ name: 'os', value: 'freebsd' }] }));
    await rejectsWith(resolve(wrongOs), 'PLATFORM_NOT_FOUND', /freebsd\/amd64/);
    const noRootfs = path.join(tmp, 'norootfs.aci');
    await fsp.writeFile(noRootfs, await tarBuffer([{ name: 'manifest', content: good }]));
    await rejectsWith(resolve(noRootfs), 'ARCHIVE_INVALID', /rootfs/);
  });

  test('truncated and garbage ACIs are ARCHIVE_INVALID', async () => {
    const bytes = await fsp.readFile(await fixture('busybox-aci'));
    const cut = path.join(tmp, 'cut.aci');
    await fsp.writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await rejectsWith(resolve(cut), 'ARCHIVE_INVALID', /cut\.aci/);
    const plainCut = path.join(tmp, 'plain-cut.aci');
    const tarBytes = zlib.gunzipSync(bytes);
    await fsp.writeFile(plainCut, tarBytes.subarray(0, 700_000));
    await rejectsWith(resolve(plainCut), 'ARCHIVE_INVALID');
    const garbage = path.join(tmp, 'garbage.aci');
    await fsp.writeFile(garbage, Buffer.alloc(2048, 7));
    await rejectsWith(resolve(garbage), 'ARCHIVE_INVALID');
    await rejectsWith(open(path.join(tmp, 'absent.aci')), 'IMAGE_NOT_FOUND');
  });
});

describe('ACI over http(s)', () => {
  let aciBytes: Buffer;
  let httpServer: http.Server;
  let httpsServer: https.Server;
  let httpBase: string;
  let httpsBase: string;
  let caFile: string;

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    switch (req.url) {
      case '/busybox.aci':
        res.writeHead(200, { 'content-length': aciBytes.length });
        res.end(aciBytes);
        return;
      case '/redirect.aci':
        res.writeHead(302, { location: '/busybox.aci' });
        res.end();
        return;
      case '/loop.aci':
        res.writeHead(302, { location: '/loop.aci' });
        res.end();
        return;
      case '/cut.aci':
        // Promise more than is sent, then hang up.
        res.writeHead(200, { 'content-length': aciBytes.length });
        res.write(aciBytes.subarray(0, 1000), () => res.destroy());
        return;
      case '/secret.aci':
        res.writeHead(403);
        res.end();
        return;
      default:
        res.writeHead(404);
        res.end();
    }
  };

  before(async () => {
    aciBytes = await fsp.readFile(await fixture('busybox-aci'));
    const certDir = path.join(tmp, 'certs');
    await fsp.mkdir(certDir);
    caFile = path.join(certDir, 'cert.pem');
    await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', path.join(certDir, 'key.pem'), '-out', caFile, '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1']);
    httpServer = http.createServer(handler);
    httpsServer = https.createServer({ key: await fsp.readFile(path.join(certDir, 'key.pem')), cert: await fsp.readFile(caFile) }, handler);
    await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => httpsServer.listen(0, '127.0.0.1', r));
    httpBase = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
    httpsBase = `https://127.0.0.1:${(httpsServer.address() as AddressInfo).port}`;
  });

  after(async () => {
    httpServer.closeAllConnections();
    httpsServer.closeAllConnections();
    await new Promise((r) => httpServer.close(r));
    await new Promise((r) => httpsServer.close(r));
  });

  const tmpEmpty = async (): Promise<void> => {
    assert.deepEqual(await fsp.readdir(path.join(tmp, 'state', 'store', 'tmp')).catch(() => []), []);
  };

  test('http needs --insecure-options=http; downloads report progress and are removed on close', async () => {
    await rejectsWith(resolve(`${httpBase}/busybox.aci`), 'INSECURE_TRANSPORT', /plain http/);
    const r = await resolveAndVerify(`${httpBase}/busybox.aci`, AMD64, ['http']);
    assert.equal(r.layers[0]!.digest, sha256(aciBytes));
    assert.equal(r.digest, (await resolve(await fixture('busybox-aci'))).digest);
    const advanced = progress.filter((e) => e.kind === 'advance').reduce((n, e) => n + (e.kind === 'advance' ? e.bytes : 0), 0);
    assert.equal(advanced, aciBytes.length);
    assert.ok(progress.some((e) => e.kind === 'start' && e.total === aciBytes.length));
    await tmpEmpty();
  });

  test('redirects are followed, loops and errors are reported', async () => {
    assert.equal((await resolve(`${httpBase}/redirect.aci`, AMD64, ['http'])).layers[0]!.digest, sha256(aciBytes));
    await rejectsWith(resolve(`${httpBase}/loop.aci`, AMD64, ['http']), 'REGISTRY_ERROR', /redirects/);
    await rejectsWith(resolve(`${httpBase}/absent.aci`, AMD64, ['http']), 'IMAGE_NOT_FOUND', /404/);
    await rejectsWith(resolve(`${httpBase}/secret.aci`, AMD64, ['http']), 'UNAUTHORIZED');
    await rejectsWith(resolve(`${httpBase}/cut.aci`, AMD64, ['http']), 'DOWNLOAD_INTERRUPTED');
    await tmpEmpty();
    // Nothing listens on port 1.
    await rejectsWith(resolve('http://127.0.0.1:1/x.aci', AMD64, ['http']), 'REGISTRY_UNREACHABLE');
  });

  test('https verifies the certificate: GANTRY_CA_FILE or --insecure-options=tls', async () => {
    await rejectsWith(resolve(`${httpsBase}/busybox.aci`), 'REGISTRY_UNREACHABLE', /TLS/);
    const insecure = await resolve(`${httpsBase}/busybox.aci`, AMD64, ['tls']);
    assert.equal(insecure.layers[0]!.digest, sha256(aciBytes));
    assert.ok(warnings.some((w) => /not verified/.test(w)));
    const saved = process.env.GANTRY_CA_FILE;
    process.env.GANTRY_CA_FILE = caFile;
    try {
      assert.equal((await resolve(`${httpsBase}/busybox.aci`)).digest, insecure.digest);
    } finally {
      if (saved === undefined) delete process.env.GANTRY_CA_FILE;
      else process.env.GANTRY_CA_FILE = saved;
    }
    await tmpEmpty();
  });
});

test('fixtures leave no temp files behind in store/tmp', async () => {
  assert.ok(fs.existsSync(path.join(tmp, 'state')));
  assert.deepEqual(await fsp.readdir(path.join(tmp, 'state', 'store', 'tmp')).catch(() => []), []);
});
