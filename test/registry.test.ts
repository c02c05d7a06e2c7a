import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createContext, type Context, type InsecureCheck } from '../src/context.js';
import { isGantryError, type ErrorCode } from '../src/errors.js';
import { isCode } from './lib/errors.js';
import { parseManifest, selectPlatform } from '../src/image/manifest.js';
import { MEDIA_TYPES, type Descriptor } from '../src/image/model.js';
import { parseDockerName } from '../src/image/reference.js';
import { parseWwwAuthenticate } from '../src/image/registry/auth.js';
import { findCredentials } from '../src/image/registry/credentials.js';
import { openRegistrySource, type RegistrySourceOptions } from '../src/image/registry/source.js';
import { freePort, pushOciLayout, startRegistry, writePlatformLayout, type TestLayout, type TestRegistry } from './lib/registry.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
let work: string;
const noAuthFiles = { authFiles: [] as string[] };

before(() => { work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-registry-test-')); });
after(() => fs.rmSync(work, { recursive: true, force: true }));

function ctxFor(insecure: InsecureCheck[] = ['http'], log?: string[]): Context {
  const confDir = fs.mkdtempSync(path.join(work, 'conf-'));
  return createContext({ containersConfig: confDir, insecure, ...(log ? { debug: (m: string) => log.push(m) } : {}) });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function expectCode(promise: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, isCode(code, pattern));
}

async function pull(text: string, ctx: Context, opts: RegistrySourceOptions = noAuthFiles, platform = amd64) {
  const source = await openRegistrySource(parseDockerName(text), ctx, opts);
  try {
    const m = await source.resolve(platform);
    const blobs = new Map<string, Buffer>();
    for (const d of [m.config, ...m.layers]) {
      const data = await readAll(await source.openBlob(d));
      assert.equal(sha256(data), d.digest);
      assert.equal(data.length, d.size);
      blobs.set(d.digest, data);
    }
    return { manifest: m, blobs, tokenRequests: source.tokenRequests };
  } finally {
    await source.close();
  }
}

describe('manifest parsing', () => {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const manifest = (layerType: string) => Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest,
    config: { mediaType: MEDIA_TYPES.dockerConfig, digest: d('1'), size: 10 },
    layers: [{ mediaType: layerType, digest: d('2'), size: 20 }],
  }));

  it('maps layer media types to compression', () => {
    const cases: [string, string][] = [
      [MEDIA_TYPES.dockerLayerGzip, 'gzip'], [MEDIA_TYPES.dockerLayerForeign, 'gzip'], [MEDIA_TYPES.ociLayer, 'none'],
      [MEDIA_TYPES.ociLayerGzip, 'gzip'], [MEDIA_TYPES.ociLayerZstd, 'zstd'], [MEDIA_TYPES.ociLayerNondistributableGzip, 'gzip'],
    ];
    for (const [type, compression] of cases) {
      const p = parseManifest(manifest(type), undefined, 'test');
      assert.ok(p.kind === 'manifest' && p.layers[0]!.compression === compression, type);
    }
  });

  it('rejects bad manifests with the right code', () => {
    const bad: [Buffer, string | undefined, ErrorCode, RegExp][] = [
      [Buffer.from('not json'), undefined, 'MANIFEST_INVALID', /not JSON/],
      [Buffer.from('[]'), undefined, 'MANIFEST_INVALID', /not a JSON object/],
      [Buffer.from('{"schemaVersion":1,"name":"x","fsLayers":[]}'), undefined, 'SCHEMA1_UNSUPPORTED', /re-push|schema 1/],
      [Buffer.from('{}'), MEDIA_TYPES.dockerSchema1Signed, 'SCHEMA1_UNSUPPORTED', /schema 1/],
      [manifest('application/x-tar-foo'), undefined, 'MEDIA_TYPE_UNSUPPORTED', /application\/x-tar-foo/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.example+json' })), undefined, 'MEDIA_TYPE_UNSUPPORTED', /vnd\.example/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: MEDIA_TYPES.ociConfig, digest: 'sha256:xyz', size: 1 }, layers: [] })), undefined, 'MANIFEST_INVALID', /config\.digest/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: MEDIA_TYPES.ociConfig, digest: d('1'), size: -1 }, layers: [] })), undefined, 'MANIFEST_INVALID', /size/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: MEDIA_TYPES.ociConfig, digest: d('1'), size: 1.5 }, layers: [] })), undefined, 'MANIFEST_INVALID', /size/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: d('1'), size: 1 }, layers: [] })), undefined, 'MEDIA_TYPE_UNSUPPORTED', /helm/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: {} })), undefined, 'MANIFEST_INVALID', /manifests/],
      [Buffer.from(JSON.stringify({ schemaVersion: 3 })), undefined, 'MANIFEST_INVALID', /schemaVersion/],
    ];
    for (const [raw, type, code, pattern] of bad) {
      assert.throws(() => parseManifest(raw, type, 'where'), (err: unknown) => isGantryError(err, code) && pattern.test(err.message) && err.message.startsWith('where'), raw.toString());
    }
  });

  it('selects platforms like containerd', () => {
    const entry = (architecture: string, variant?: string, os = 'linux'): Descriptor => ({
      mediaType: MEDIA_TYPES.ociManifest, digest: d(architecture === 'amd64' ? 'a' : 'b'), size: 1,
      platform: variant ? { os, architecture, variant } : { os, architecture },
    });
    const index = { manifests: [entry('amd64'), { ...entry('arm64', 'v8'), digest: d('c') }, { ...entry('arm', 'v6'), digest: d('e') }, { ...entry('unknown', undefined, 'unknown'), digest: d('f') }] };
    assert.equal(selectPlatform(index, { os: 'linux', architecture: 'x86_64' }, 'w').digest, d('a'));
    assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm64' }, 'w').digest, d('c'));
    assert.equal(selectPlatform(index, { os: 'linux', architecture: 'aarch64', variant: 'v8' }, 'w').digest, d('c'));
    // arm v7 can run v6
    assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm' }, 'w').digest, d('e'));
    assert.throws(() => selectPlatform(index, { os: 'linux', architecture: 's390x' }, 'w'),
      (err: unknown) => isGantryError(err, 'PLATFORM_NOT_FOUND') && /linux\/amd64, linux\/arm64, linux\/arm\/v6$/.test(err.message));
    assert.throws(() => selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v5' }, 'w'), (err: unknown) => isGantryError(err, 'PLATFORM_NOT_FOUND'));
  });
});

describe('auth helpers', () => {
  it('parses WWW-Authenticate robustly', () => {
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'), [
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
    ]);
    assert.deepEqual(parseWwwAuthenticate('Basic realm="x, \\"quoted\\"", Bearer realm=https://t.example/t,error=insufficient_scope'), [
      { scheme: 'basic', params: { realm: 'x, "quoted"' } },
      { scheme: 'bearer', params: { realm: 'https://t.example/t', error: 'insufficient_scope' } },
    ]);
    assert.deepEqual(parseWwwAuthenticate('Negotiate abc==, Basic'), [{ scheme: 'negotiate', params: {} }, { scheme: 'basic', params: {} }]);
    // garbage never loops and never throws
    for (const junk of ['', '"', '=,=,"', 'Bearer realm="unterminated', '\u0000\u0001;;;']) parseWwwAuthenticate(junk);
  });

  it('reads credentials files in order, most specific key first', () => {
    const a = path.join(work, 'auth-a.json');
    const b = path.join(work, 'auth-b.json');
    const enc = (s: string) => Buffer.from(s).toString('base64');
    fs.writeFileSync(a, JSON.stringify({ auths: {
      'https://reg.example:5000/v1/': { auth: enc('hostuser:hostpw') },
      'reg.example:5000/team': { auth: enc('teamuser:team:pw') },
      'reg.example:5000/team/app': { auth: enc('appuser:apppw') },
    } }));
    fs.writeFileSync(b, JSON.stringify({ auths: {
      'https://index.docker.io/v1/': { auth: enc('hub:hubpw') },
      'other.example': { username: 'u2', password: 'p2' },
    } }));
    const files = [a, path.join(work, 'missing.json'), b];
    assert.deepEqual(findCredentials('reg.example:5000', 'team/app', { files }), { username: 'appuser', password: 'apppw' });
    assert.deepEqual(findCredentials('reg.example:5000', 'team/other', { files }), { username: 'teamuser', password: 'team:pw' });
    assert.deepEqual(findCredentials('reg.example:5000', 'teammate/x', { files }), { username: 'hostuser', password: 'hostpw' });
    assert.deepEqual(findCredentials('docker.io', 'library/busybox', { files }), { username: 'hub', password: 'hubpw' });
    assert.deepEqual(findCredentials('other.example', 'x', { files }), { username: 'u2', password: 'p2' });
    assert.equal(findCredentials('nowhere.example', 'x', { files }), undefined);
    // the env order: REGISTRY_AUTH_FILE before XDG_RUNTIME_DIR before ~/.docker
    const xdg = path.join(work, 'xdg');
    fs.mkdirSync(path.join(xdg, 'containers'), { recursive: true });
    fs.writeFileSync(path.join(xdg, 'containers', 'auth.json'), JSON.stringify({ auths: { 'other.example': { auth: enc('xdg:x') } } }));
    const env = { REGISTRY_AUTH_FILE: a, XDG_RUNTIME_DIR: xdg, HOME: path.join(work, 'nohome') };
    assert.deepEqual(findCredentials('other.example', 'x', { env }), { username: 'xdg', password: 'x' });
    assert.deepEqual(findCredentials('reg.example:5000', 'y', { env }), { username: 'hostuser', password: 'hostpw' });
  });

  it('rejects broken auth files naming them', () => {
    const bad = path.join(work, 'bad-auth.json');
    for (const text of ['{not json', '{"auths": []}', `{"auths": {"x.example": {"auth": "${Buffer.from('nocolon').toString('base64')}"}}}`]) {
      fs.writeFileSync(bad, text);
      assert.throws(() => findCredentials('x.example', 'r', { files: [bad] }), (err: unknown) => isGantryError(err, 'CONFIG_INVALID') && err.message.includes(bad), text);
    }
  });
});

describe('registry source against docker-registry', () => {
  let registry: TestRegistry;
  let layout: TestLayout;
  let multi: TestLayout;

  before(async () => {
    registry = await startRegistry();
    layout = await writePlatformLayout(path.join(work, 'layout'), { files: { 'a.txt': 'A'.repeat(5000) } });
    multi = await writePlatformLayout(path.join(work, 'multi'), { platforms: [amd64, { os: 'linux', architecture: 'arm64', variant: 'v8' }] });
    await pushOciLayout(layout.dir, 'latest', registry.host, { format: 'v2s2', repository: 'test/docker' });
    await pushOciLayout(layout.dir, 'latest', registry.host, { format: 'oci', repository: 'test/oci' });
    await pushOciLayout(multi.dir, 'latest', registry.host, { format: 'oci', repository: 'test/multi', all: true });
  });
  after(async () => { await registry?.stop(); });

  it('pulls a Docker v2s2 image', async () => {
    const log: string[] = [];
    const { manifest, blobs } = await pull(`${registry.host}/test/docker:latest`, ctxFor(['http'], log));
    assert.equal(manifest.mediaType, MEDIA_TYPES.dockerManifest);
    assert.equal(manifest.config.mediaType, MEDIA_TYPES.dockerConfig);
    assert.equal(manifest.layers[0]!.compression, 'gzip');
    assert.equal(manifest.digest, sha256(manifest.raw));
    assert.equal(manifest.name, `${registry.host}/test/docker:latest`);
    assert.equal(blobs.get(manifest.layers[0]!.digest)!.equals(layout.images[0]!.layers[0]!.data), true);
    assert.ok(log.some((l) => /GET http:\/\/127\.0\.0\.1:\d+\/v2\/test\/docker\/manifests\/latest -> 200/.test(l)), 'debug logs requests');
  });

  it('pulls an OCI image byte-identical to the layout, and by digest', async () => {
    const { manifest } = await pull(`${registry.host}/test/oci:latest`, ctxFor());
    assert.equal(manifest.mediaType, MEDIA_TYPES.ociManifest);
    assert.equal(manifest.digest, layout.images[0]!.manifest.digest);
    const byDigest = await pull(`${registry.host}/test/oci@${manifest.digest}`, ctxFor());
    assert.equal(byDigest.manifest.digest, manifest.digest);
  });

  it('selects the platform from an index', async () => {
    const arm = await pull(`${registry.host}/test/multi:latest`, ctxFor(), noAuthFiles, { os: 'linux', architecture: 'arm64' });
    assert.equal(arm.manifest.digest, multi.images[1]!.manifest.digest);
    assert.equal(arm.manifest.indexDigest, multi.digest);
    assert.deepEqual(arm.manifest.platform, { os: 'linux', architecture: 'arm64' });
    const x86 = await pull(`${registry.host}/test/multi:latest`, ctxFor());
    assert.equal(x86.manifest.digest, multi.images[0]!.manifest.digest);
    await expectCode(pull(`${registry.host}/test/multi:latest`, ctxFor(), noAuthFiles, { os: 'linux', architecture: 's390x' }),
      'PLATFORM_NOT_FOUND', /linux\/amd64, linux\/arm64/);
  });

  it('resumes a blob with Range', async () => {
    const source = await openRegistrySource(parseDockerName(`${registry.host}/test/docker:latest`), ctxFor(), noAuthFiles);
    try {
      const m = await source.resolve(amd64);
      const layer = m.layers[0]!;
      const full = layout.images[0]!.layers[0]!.data;
      const tail = await readAll(await source.openBlob(layer, 17));
      assert.ok(tail.equals(full.subarray(17)));
    } finally {
      await source.close();
    }
  });

  it('reports missing images and tags as IMAGE_NOT_FOUND', async () => {
    await expectCode(pull(`${registry.host}/test/docker:nope`, ctxFor()), 'IMAGE_NOT_FOUND', /test\/docker:nope/);
    await expectCode(pull(`${registry.host}/no/such:latest`, ctxFor()), 'IMAGE_NOT_FOUND', /no\/such/);
  });

  it('refuses plain http without --insecure-options=http', async () => {
    await expectCode(pull(`${registry.host}/test/docker:latest`, ctxFor([])), 'INSECURE_TRANSPORT', /insecure-options=http|plain http/);
  });

  it('uses a mirror when the location is dead, and rewrites prefixes', async () => {
    const dead = await freePort();
    const ctx = ctxFor([]);
    fs.writeFileSync(path.join(ctx.containersConfig, 'registries.conf'), `
[[registry]]
prefix = "127.0.0.1:${dead}"
location = "127.0.0.1:${dead}"
[[registry.mirror]]
location = "${registry.host}"
insecure = true

[[registry]]
prefix = "images.example.test/team"
location = "${registry.host}/test"
insecure = true
`);
    const log: string[] = [];
    const ctxLog = createContext({ containersConfig: ctx.containersConfig, debug: (m) => log.push(m) });
    const viaMirror = await pull(`127.0.0.1:${dead}/test/docker:latest`, ctxLog);
    assert.equal(viaMirror.manifest.name, `127.0.0.1:${dead}/test/docker:latest`);
    assert.ok(log.some((l) => l.includes('using mirror')));
    const rewritten = await pull('images.example.test/team/oci:latest', ctx);
    assert.equal(rewritten.manifest.digest, layout.images[0]!.manifest.digest);
    // mirror without the image, dead location: the mirror's 404 is the meaningful error
    await expectCode(pull(`127.0.0.1:${dead}/missing/image:latest`, ctx), 'IMAGE_NOT_FOUND');
  });

  it('refuses blocked registries before any request', async () => {
    const ctx = ctxFor();
    fs.writeFileSync(path.join(ctx.containersConfig, 'registries.conf'), `[[registry]]\nlocation = "${registry.host}"\nblocked = true\n`);
    await expectCode(openRegistrySource(parseDockerName(`${registry.host}/test/docker`), ctx, noAuthFiles), 'REGISTRY_BLOCKED');
  });

  it('reports a dead registry as REGISTRY_UNREACHABLE', async () => {
    const dead = await freePort();
    await expectCode(pull(`127.0.0.1:${dead}/x/y:latest`, ctxFor()), 'REGISTRY_UNREACHABLE', new RegExp(`127\\.0\\.0\\.1:${dead}`));
  });
});

describe('registry authentication', () => {
  const creds = { user: 'alice', password: 's3cret:pw' };
  let basic: TestRegistry;
  let token: TestRegistry;
  let layout: TestLayout;

  before(async () => {
    layout = await writePlatformLayout(path.join(work, 'auth-layout'));
    [basic, token] = await Promise.all([startRegistry({ htpasswd: creds }), startRegistry({ tokenAuth: true, htpasswd: creds })]);
    await pushOciLayout(layout.dir, 'latest', basic.host, { format: 'v2s2', repository: 'private/app', creds });
    await pushOciLayout(layout.dir, 'latest', token.host, { format: 'oci', repository: 'private/app', creds });
  });
  after(async () => {
    await basic?.stop();
    await token?.stop();
  });

  it('basic auth with credentials from an auth file', async () => {
    const file = path.join(work, 'basic-auth.json');
    fs.writeFileSync(file, JSON.stringify({ auths: { [basic.host]: { auth: Buffer.from(`${creds.user}:${creds.password}`).toString('base64') } } }));
    const { manifest } = await pull(`${basic.host}/private/app:latest`, ctxFor(), { authFiles: [file] });
    assert.equal(manifest.layers.length, 1);
  });

  it('basic auth: wrong or missing credentials are UNAUTHORIZED', async () => {
    await expectCode(pull(`${basic.host}/private/app:latest`, ctxFor(), { authFiles: [], credentials: { username: 'alice', password: 'wrong' } }),
      'UNAUTHORIZED', /"alice" were rejected/);
    await assert.rejects(pull(`${basic.host}/private/app:latest`, ctxFor(), noAuthFiles), (err: unknown) => {
      assert.ok(isGantryError(err, 'UNAUTHORIZED'));
      assert.match(err.message, /no credentials/);
      assert.match(err.hint ?? '', /auth\.json|config\.json/);
      return true;
    });
  });

  it('bearer tokens are fetched once and reused', async () => {
    const before = token.tokenServer!.requests;
    const result = await pull(`${token.host}/private/app:latest`, ctxFor(), { authFiles: [], credentials: { username: creds.user, password: creds.password } });
    assert.equal(result.blobs.size, 2);
    assert.equal(result.tokenRequests, 1);
    assert.equal(token.tokenServer!.requests - before, 1);
    assert.deepEqual(token.tokenServer!.scopes.at(-1), ['repository:private/app:pull']);
  });

  it('bearer auth: wrong credentials are UNAUTHORIZED', async () => {
    await expectCode(pull(`${token.host}/private/app:latest`, ctxFor(), { authFiles: [], credentials: { username: 'alice', password: 'nope' } }),
      'UNAUTHORIZED', /rejected the credentials/);
  });
});

describe('registry over TLS', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry({ tls: true });
    const layout = await writePlatformLayout(path.join(work, 'tls-layout'));
    await pushOciLayout(layout.dir, 'latest', registry.host, { repository: 'tls/app' });
  });
  after(async () => { await registry?.stop(); });

  it('verifies certificates unless told otherwise', async () => {
    await expectCode(pull(`${registry.host}/tls/app:latest`, ctxFor([])), 'INSECURE_TRANSPORT', /certificate/);
    // insecure http does not imply skipping verification
    await expectCode(pull(`${registry.host}/tls/app:latest`, ctxFor(['http'])), 'INSECURE_TRANSPORT', /certificate/);
    await pull(`${registry.host}/tls/app:latest`, ctxFor(['tls']));
    await pull(`${registry.host}/tls/app:latest`, ctxFor([]), { authFiles: [], caFile: registry.caFile! });
  });
});

/** A registry of our own that misbehaves on purpose. */
describe('misbehaving registry', () => {
  let server: http.Server;
  let host: string;
  const requests: { url: string; range?: string }[] = [];
  const layer = Buffer.alloc(200_000);
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 7919) % 251;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const desc = (mediaType: string, data: Buffer) => ({ mediaType, digest: sha256(data), size: data.length });
  const manifestWith = (layerType: string) => Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest, config: desc(MEDIA_TYPES.dockerConfig, config), layers: [desc(layerType, layer)],
  }));
  const good = manifestWith(MEDIA_TYPES.dockerLayerGzip);
  const manifests: Record<string, { body: Buffer; type: string; headers?: Record<string, string> }> = {
    good: { body: good, type: MEDIA_TYPES.dockerManifest },
    schema1: { body: Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [], history: [] })), type: MEDIA_TYPES.dockerSchema1Signed },
    notjson: { body: Buffer.from('<html>oops</html>'), type: 'text/html' },
    unknownlayer: { body: manifestWith('application/vnd.example.layer.v1+squashfs'), type: MEDIA_TYPES.dockerManifest },
    index: {
      body: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [
        { ...desc(MEDIA_TYPES.ociManifest, good), platform: { os: 'linux', architecture: 's390x' } },
        { ...desc(MEDIA_TYPES.ociManifest, good), platform: { os: 'linux', architecture: 'ppc64le' } },
      ] })),
      type: MEDIA_TYPES.ociIndex,
    },
    lying: { body: good, type: MEDIA_TYPES.dockerManifest, headers: { 'docker-content-digest': `sha256:${'0'.repeat(64)}` } },
  };
  let blobMode: 'cut' | 'ignore-range' | 'error' = 'cut';

  before(async () => {
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      requests.push({ url, ...(req.headers.range ? { range: req.headers.range } : {}) });
      if (url === '/v2/') { res.writeHead(200).end('{}'); return; }
      const m = /^\/v2\/bad\/image\/manifests\/(.+)$/.exec(url);
      if (m) {
        if (m[1] === 'e500') { res.writeHead(500, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}'); return; }
        const entry = manifests[m[1]!] ?? Object.values(manifests).find((e) => sha256(e.body) === m[1]);
        if (!entry) { res.writeHead(404).end(); return; }
        res.writeHead(200, { 'content-type': entry.type, 'content-length': entry.body.length, ...entry.headers }).end(entry.body);
        return;
      }
      if (url === `/v2/bad/image/blobs/${sha256(config)}`) { res.writeHead(200, { 'content-length': config.length }).end(config); return; }
      if (url === `/v2/bad/image/blobs/${sha256(layer)}`) {
        if (blobMode === 'error') { res.writeHead(503).end('busy'); return; }
        const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (range && blobMode === 'cut') {
          const from = Number(range[1]);
          res.writeHead(206, { 'content-length': layer.length - from, 'content-range': `bytes ${from}-${layer.length - 1}/${layer.length}` }).end(layer.subarray(from));
          return;
        }
        res.writeHead(200, { 'content-length': layer.length });
        if (blobMode === 'ignore-range') { res.end(layer); return; }
        // send half, then drop the connection
        res.write(layer.subarray(0, layer.length / 2), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const address = server.address();
    host = `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const resolveTag = async (tag: string) => {
    const source = await openRegistrySource(parseDockerName(`${host}/bad/image:${tag}`), ctxFor(), noAuthFiles);
    try {
      return await source.resolve(amd64);
    } finally {
      await source.close();
    }
  };

  it('maps broken manifests to codes', async () => {
    await expectCode(resolveTag('e500'), 'REGISTRY_ERROR', /HTTP 500.*disk on fire/);
    await expectCode(resolveTag('schema1'), 'SCHEMA1_UNSUPPORTED', /schema 1/);
    await expectCode(resolveTag('notjson'), 'MANIFEST_INVALID', /not JSON/);
    await expectCode(resolveTag('unknownlayer'), 'MEDIA_TYPE_UNSUPPORTED', /vnd\.example\.layer\.v1\+squashfs/);
    await expectCode(resolveTag('index'), 'PLATFORM_NOT_FOUND', /linux\/s390x, linux\/ppc64le/);
    await expectCode(resolveTag('lying'), 'DIGEST_MISMATCH', /Docker-Content-Digest/);
    await expectCode(resolveTag('missing'), 'IMAGE_NOT_FOUND', /bad\/image:missing/);
    const pinned = `sha256:${'1'.repeat(64)}`;
    manifests[pinned] = { body: good, type: MEDIA_TYPES.dockerManifest };
    const source = await openRegistrySource(parseDockerName(`${host}/bad/image@${pinned}`), ctxFor(), noAuthFiles);
    await expectCode(source.resolve(amd64).finally(() => source.close()), 'DIGEST_MISMATCH', new RegExp(pinned));
  });

  it('resumes a blob cut mid-stream with a Range request', async () => {
    blobMode = 'cut';
    const source = await openRegistrySource(parseDockerName(`${host}/bad/image:good`), ctxFor(), noAuthFiles);
    try {
      const m = await source.resolve(amd64);
      const first = await source.openBlob(m.layers[0]!);
      const got: Buffer[] = [];
      let received = 0;
      await assert.rejects((async () => {
        for await (const c of first) { got.push(c as Buffer); received += (c as Buffer).length; }
      })(), (err: unknown) => isGantryError(err, 'DOWNLOAD_INTERRUPTED') && /closed after/.test(err.message));
      assert.ok(received > 0 && received < layer.length, `received ${received}`);
      requests.length = 0;
      const rest = await readAll(await source.openBlob(m.layers[0]!, received));
      assert.deepEqual(requests.map((r) => r.range), [`bytes=${received}-`]);
      assert.ok(Buffer.concat([...got, rest]).equals(layer));
    } finally {
      await source.close();
    }
  });

  it('skips the bytes itself when the server ignores Range', async () => {
    blobMode = 'ignore-range';
    const source = await openRegistrySource(parseDockerName(`${host}/bad/image:good`), ctxFor(), noAuthFiles);
    try {
      const m = await source.resolve(amd64);
      const rest = await readAll(await source.openBlob(m.layers[0]!, 12345));
      assert.ok(rest.equals(layer.subarray(12345)));
    } finally {
      await source.close();
    }
  });

  it('stops a blob that is longer than its descriptor', async () => {
    blobMode = 'ignore-range';
    const source = await openRegistrySource(parseDockerName(`${host}/bad/image:good`), ctxFor(), noAuthFiles);
    try {
      const m = await source.resolve(amd64);
      const shortened = { ...m.layers[0]!, size: 1000 };
      await expectCode(readAll(await source.openBlob(shortened)), 'SIZE_MISMATCH', /more than the 1000 bytes/);
    } finally {
      await source.close();
    }
  });

  it('reports blob server errors', async () => {
    blobMode = 'error';
    const source = await openRegistrySource(parseDockerName(`${host}/bad/image:good`), ctxFor(), noAuthFiles);
    try {
      const m = await source.resolve(amd64);
      await expectCode(source.openBlob(m.layers[0]!), 'REGISTRY_ERROR', /HTTP 503/);
    } finally {
      await source.close();
    }
  });
});
