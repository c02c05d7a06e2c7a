/**
 * Test helper: real registries on 127.0.0.1 for tests and benchmarks.
 *
 * `startRegistry` runs Debian's `docker-registry serve` (distribution 2.8)
 * with filesystem storage in a fresh temp dir on a free port, optionally
 * with htpasswd Basic auth, token auth (a token server of our own issuing
 * RS256 JWTs), or TLS with a self-signed certificate. `stop()` kills it by
 * PID and removes everything. `pushOciLayout` copies an OCI layout into it
 * with skopeo; `writeOciLayout` builds small layouts without any tool.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { sha256, tarBuffer } from './fixtures.js';

const execFileP = promisify(execFile);

export interface Creds {
  user: string;
  password: string;
}

export interface TokenServer {
  /** http://127.0.0.1:PORT/token */
  realm: string;
  service: string;
  /** Number of token requests served (any outcome). */
  requests: number;
  /** The scope parameters of every request, in order. */
  scopes: string[][];
  stop(): Promise<void>;
}

export interface TestRegistry {
  /** 127.0.0.1:PORT */
  host: string;
  /** http(s)://127.0.0.1:PORT */
  url: string;
  dataDir: string;
  pid: number;
  tls: boolean;
  /** PEM of the self-signed certificate when tls is on (for GANTRY_CA_FILE tests). */
  caFile?: string;
  creds?: Creds;
  tokenServer?: TokenServer;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  htpasswd?: Creds;
  tokenAuth?: boolean;
  tls?: boolean;
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function selfSignedCert(dir: string, name: string, cn: string, rsa: boolean): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const keyArgs = rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  await execFileP('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { timeout: 30_000 });
  return { cert, key };
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** A token server that signs JWTs the registry trusts through `rootcertbundle`. */
async function startTokenServer(dir: string, creds: Creds | undefined): Promise<TokenServer & { certFile: string; issuer: string }> {
  const { cert, key } = await selfSignedCert(dir, 'token', 'gantry-test-token', true);
  const keyPem = fs.readFileSync(key, 'utf8');
  const der = Buffer.from(fs.readFileSync(cert, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const service = 'gantry-test-registry';
  const issuer = 'gantry-test-issuer';
  const state = { requests: 0, scopes: [] as string[][] };
  const server = http.createServer((req, res) => {
    state.requests++;
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const scopes = url.searchParams.getAll('scope');
    state.scopes.push(scopes);
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    let subject = '';
    if (creds) {
      const auth = req.headers.authorization ?? '';
      const expected = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`;
      if (auth !== expected) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
        return;
      }
      subject = creds.user;
    }
    const access = scopes.flatMap((s) => s.split(' ')).filter(Boolean).map((s) => {
      const [type, ...rest] = s.split(':');
      const actions = rest.pop() ?? '';
      return { type, name: rest.join(':'), actions: actions.split(',').filter(Boolean) };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] };
    const claims = { iss: issuer, sub: subject, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(input).sign(keyPem);
    const token = `${input}.${b64url(signature)}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const ts = {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile: cert,
    get requests() { return state.requests; },
    get scopes() { return state.scopes; },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  return ts;
}

function probe(url: string): Promise<number> {
  return new Promise((resolve) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { rejectUnauthorized: false, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000));
  if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Starts a docker-registry on 127.0.0.1; waits (at most ~15 s) until /v2/ answers. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-registry-'));
  let tokenServer: (TokenServer & { certFile: string; issuer: string }) | undefined;
  try {
    const lines: string[] = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dataDir, 'storage')}`,
      '  delete:',
      '    enabled: true',
    ];
    let tlsFiles: { cert: string; key: string } | undefined;
    if (opts.tls) tlsFiles = await selfSignedCert(dataDir, 'tls', '127.0.0.1', false);
    if (opts.tokenAuth) {
      tokenServer = await startTokenServer(dataDir, opts.htpasswd);
      lines.push('auth:', '  token:', `    realm: ${tokenServer.realm}`, `    service: ${tokenServer.service}`,
        `    issuer: ${tokenServer.issuer}`, `    rootcertbundle: ${tokenServer.certFile}`);
    } else if (opts.htpasswd) {
      const { stdout } = await execFileP('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password], { timeout: 30_000 });
      fs.writeFileSync(path.join(dataDir, 'htpasswd'), stdout);
      lines.push('auth:', '  htpasswd:', '    realm: gantry-test', `    path: ${path.join(dataDir, 'htpasswd')}`);
    }
    const scheme = opts.tls ? 'https' : 'http';
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const config = [...lines, 'http:', `  addr: 127.0.0.1:${port}`, `  secret: ${randomBytes(16).toString('hex')}`];
      if (tlsFiles) config.push('  tls:', `    certificate: ${tlsFiles.cert}`, `    key: ${tlsFiles.key}`);
      const configFile = path.join(dataDir, 'config.yml');
      fs.writeFileSync(configFile, `${config.join('\n')}\n`);
      const log = fs.openSync(path.join(dataDir, 'registry.log'), 'a');
      const child = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', log, log] });
      fs.closeSync(log);
      let exited = false;
      child.once('exit', () => { exited = true; });
      const url = `${scheme}://127.0.0.1:${port}`;
      const deadline = Date.now() + 15_000;
      let ready = false;
      for (let i = 0; i < 300 && Date.now() < deadline && !exited; i++) {
        const status = await probe(`${url}/v2/`);
        if (status === 200 || status === 401) {
          ready = true;
          break;
        }
        await sleep(50);
      }
      if (!ready) {
        await killChild(child);
        continue; // port taken in between, or a slow start: try another port
      }
      const registry: TestRegistry = {
        host: `127.0.0.1:${port}`,
        url,
        dataDir,
        pid: child.pid!,
        tls: !!opts.tls,
        stop: async () => {
          await killChild(child);
          if (tokenServer) await tokenServer.stop();
          fs.rmSync(dataDir, { recursive: true, force: true });
        },
      };
      if (tlsFiles) registry.caFile = tlsFiles.cert;
      if (opts.htpasswd) registry.creds = opts.htpasswd;
      if (tokenServer) registry.tokenServer = tokenServer;
      return registry;
    }
    const log = fs.existsSync(path.join(dataDir, 'registry.log')) ? fs.readFileSync(path.join(dataDir, 'registry.log'), 'utf8').slice(-2000) : '';
    throw new Error(`docker-registry did not start after 3 attempts:\n${log}`);
  } catch (err) {
    if (tokenServer) await tokenServer.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

export interface PushOptions {
  format?: 'v2s2' | 'oci';
  /** Repository path in the registry (default "test/image"). */
  repository?: string;
  /** Destination tag (default: the source tag). */
  destTag?: string;
  creds?: Creds;
  /** Copy every manifest of an index (skopeo --all). */
  all?: boolean;
}

/** Copies oci:layoutDir:tag to docker://host/repository:tag with skopeo; returns "host/repository:tag". */
export async function pushOciLayout(layoutDir: string, tag: string, registryHost: string, opts: PushOptions = {}): Promise<string> {
  const repository = opts.repository ?? 'test/image';
  const dest = `${registryHost}/${repository}:${opts.destTag ?? tag}`;
  const args = ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false'];
  if (opts.format) args.push('--format', opts.format);
  if (opts.all) args.push('--all');
  if (opts.creds) args.push('--dest-creds', `${opts.creds.user}:${opts.creds.password}`);
  args.push(`oci:${layoutDir}:${tag}`, `docker://${dest}`);
  // An empty auth file keeps the host's logins out of the test.
  const authFile = path.join(os.tmpdir(), `gantry-skopeo-auth-${process.pid}.json`);
  fs.writeFileSync(authFile, '{"auths":{}}');
  try {
    await execFileP('skopeo', args, { timeout: 120_000, env: { ...process.env, REGISTRY_AUTH_FILE: authFile } });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  } finally {
    fs.rmSync(authFile, { force: true });
  }
  return dest;
}

export interface LayoutBlob {
  mediaType: string;
  digest: string;
  size: number;
  data: Buffer;
}

export interface TestLayout {
  dir: string;
  tag: string;
  /** Digest of what the tag points to (the manifest, or the index for several platforms). */
  digest: string;
  /** One entry per platform. */
  images: { platform: { os: string; architecture: string; variant?: string }; manifest: LayoutBlob; config: LayoutBlob; layers: LayoutBlob[] }[];
}

/**
 * Writes an OCI layout by hand for registry tests: for each platform a config
 * and one gzip layer holding `files` (plus a file naming the platform); with
 * several platforms the tag points to an image index. (fixtures.ts's
 * writeOciLayout builds single-manifest layouts from given layers.)
 */
export async function writePlatformLayout(dir: string, opts: {
  tag?: string;
  files?: Record<string, string>;
  platforms?: { os: string; architecture: string; variant?: string }[];
} = {}): Promise<TestLayout> {
  const tag = opts.tag ?? 'latest';
  const platforms = opts.platforms ?? [{ os: 'linux', architecture: 'amd64' }];
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const put = (mediaType: string, data: Buffer): LayoutBlob => {
    const digest = sha256(data);
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', digest.slice(7)), data);
    return { mediaType, digest, size: data.length, data };
  };
  const images: TestLayout['images'] = [];
  for (const platform of platforms) {
    const platformName = `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
    const files = { ...(opts.files ?? { 'hello.txt': 'hello from gantry\n' }), 'etc/platform': `${platformName}\n` };
    const tar = await tarBuffer(Object.entries(files).map(([name, content]) => ({ name, content })));
    const layer = put('application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(tar));
    const config = put('application/vnd.oci.image.config.v1+json', Buffer.from(JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      ...platform,
      config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin'] },
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    })));
    const manifest = put('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    })));
    images.push({ platform, manifest, config, layers: [layer] });
  }
  let top: LayoutBlob;
  if (images.length === 1) {
    top = images[0]!.manifest;
  } else {
    top = put('application/vnd.oci.image.index.v1+json', Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: images.map((i) => ({ mediaType: i.manifest.mediaType, digest: i.manifest.digest, size: i.manifest.size, platform: i.platform })),
    })));
  }
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: top.mediaType, digest: top.digest, size: top.size, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { dir, tag, digest: top.digest, images };
}
