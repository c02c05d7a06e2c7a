/**
 * appc trust end to end, with real keys made by gpg (temp GNUPGHOME) and an
 * HTTPS server of the test's own on 127.0.0.1:443 (self-signed CA passed as
 * GANTRY_CA_FILE) serving discovery pages, ACIs, signatures and keys.
 *
 * Refusals: unsigned ACI, untrusted key, key trusted for another prefix,
 * signature over other bytes, expired key, revoked key, discovery pages
 * without meta tags / with bad templates / redirecting to http. Each one
 * happens before anything is unpacked (no snapshot in <dir>/store/snapshots).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { gantry, tempDir } from './lib/cli.js';
import { tarBuffer } from './lib/fixtures.js';

const execFileP = promisify(execFile);
const ARCH = process.arch === 'arm64' ? 'aarch64' : 'amd64';

interface Gpg {
  home: string;
  run(args: string[]): Promise<string>;
  genKey(uid: string, opts?: { expire?: string; fakedTime?: string }): Promise<string>;
  exportKey(fpr: string, file: string): Promise<void>;
  sign(fpr: string, file: string, out: string, fakedTime?: string): Promise<void>;
  stop(): Promise<void>;
}

async function makeGpg(dir: string): Promise<Gpg> {
  const home = path.join(dir, 'gnupg');
  fs.mkdirSync(home, { mode: 0o700 });
  const run = async (args: string[]): Promise<string> => {
    const { stdout } = await execFileP('gpg', ['--homedir', home, '--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { timeout: 60_000 });
    return stdout;
  };
  return {
    home,
    run,
    async genKey(uid, opts = {}) {
      await run([...(opts.fakedTime ? ['--faked-system-time', opts.fakedTime] : []), '--quick-gen-key', uid, 'ed25519', 'sign', opts.expire ?? 'never']);
      const out = await run(['--with-colons', '--list-keys', uid]);
      const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(out)?.[1];
      assert.ok(fpr, `no fingerprint for ${uid}`);
      return fpr.toLowerCase();
    },
    async exportKey(fpr, file) {
      fs.writeFileSync(file, await run(['--armor', '--export', fpr]));
    },
    async sign(fpr, file, out, fakedTime) {
      await run([...(fakedTime ? ['--faked-system-time', fakedTime] : []), '--yes', '--local-user', fpr, '--armor', '--detach-sign', '--output', out, file]);
    },
    async stop() {
      await execFileP('gpgconf', ['--homedir', home, '--kill', 'all'], { timeout: 30_000 }).catch(() => {});
    },
  };
}

async function makeAci(file: string, name: string, version = '1.0', content = 'hello'): Promise<void> {
  const manifest = {
    acKind: 'ImageManifest', acVersion: '0.8.11', name,
    labels: [{ name: 'version', value: version }, { name: 'os', value: 'linux' }, { name: 'arch', value: ARCH }],
    app: { exec: ['/hello'], user: '0', group: '0' },
  };
  fs.writeFileSync(file, await tarBuffer([
    { name: 'manifest', content: JSON.stringify(manifest) },
    { name: 'rootfs', type: 'directory' },
    { name: 'rootfs/hello', content, mode: 0o755 },
  ]));
}

function noSnapshots(dir: string): void {
  const snaps = path.join(dir, 'store', 'snapshots');
  const entries = fs.existsSync(snaps) ? fs.readdirSync(snaps).filter((e) => !e.startsWith('.') && e !== 'tmp') : [];
  assert.deepEqual(entries, [], 'something was unpacked before the signature check');
}

let work: { dir: string; cleanup: () => void };
let gpg: Gpg;
let fpr: string;
let other: string;
let keyFile: string;
let otherKeyFile: string;

before(async () => {
  work = tempDir('gantry-trust-aci-');
  gpg = await makeGpg(work.dir);
  fpr = await gpg.genKey('Publisher <pub@example.com>');
  other = await gpg.genKey('Stranger <stranger@example.com>');
  keyFile = path.join(work.dir, 'pub.asc');
  otherKeyFile = path.join(work.dir, 'stranger.asc');
  await gpg.exportKey(fpr, keyFile);
  await gpg.exportKey(other, otherKeyFile);
});

after(async () => {
  await gpg?.stop();
  work?.cleanup();
});

/** A fresh state dir and config dir for one test. */
function state(): { args: string[]; dir: string; config: string; cleanup: () => void } {
  const t = tempDir('gantry-trust-state-');
  const config = path.join(t.dir, 'config');
  const env = path.join(t.dir, 'containers');
  fs.mkdirSync(env);
  return { dir: t.dir, config, cleanup: t.cleanup, args: ['--dir', path.join(t.dir, 'state'), '--local-config', config] };
}

const ENV = (extra: Record<string, string> = {}) => ({ GANTRY_SYSTEM_TRUSTED_KEYS: '/nonexistent', ...extra });

describe('ACI files: signature beside the image', () => {
  test('unsigned ACI is refused; signed with a trusted key is accepted and audited', async () => {
    const s = state();
    try {
      const aci = path.join(s.dir, 'app.aci');
      await makeAci(aci, 'example.com/app');
      let r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /example\.com\/app .*is not signed: no signature at .*app\.aci\.asc/);
      noSnapshots(path.join(s.dir, 'state'));

      await gpg.sign(fpr, aci, `${aci}.asc`);
      r = await gantry([...s.args, 'trust', '--prefix', 'example.com/app', '--skip-fingerprint-review', keyFile], { env: ENV() });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), fpr);
      assert.match(r.stderr, new RegExp(`fingerprint: ${fpr}`));
      assert.ok(fs.existsSync(path.join(s.config, 'trustedkeys', 'prefix.d', 'example.com', 'app', fpr)));

      r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`signature verified: Publisher <pub@example.com> \\(${fpr}\\)`));

      const list = JSON.parse((await gantry([...s.args, 'trust', 'list', '--format', 'json'], { env: ENV() })).stdout) as { fingerprint: string; scope: string }[];
      assert.deepEqual(list.map((k) => [k.fingerprint, k.scope]), [[fpr, 'example.com/app']]);

      const audit = await gantry([...s.args, 'audit', 'verify']);
      assert.equal(audit.code, 0, audit.stderr + audit.stdout);
      const records = JSON.parse((await gantry([...s.args, 'audit', 'show', '--format', 'json'])).stdout) as { event: string; details: { result?: string; verification?: { fingerprint?: string } } }[];
      assert.deepEqual(records.map((x) => `${x.event}:${x.details.result ?? ''}`), ['fetch:refused', 'trust-add:', 'fetch:stored']);
      assert.equal(records[2]!.details.verification?.fingerprint, fpr);
      assert.equal((records[1]!.details as { scope?: string }).scope, 'example.com/app');

      r = await gantry([...s.args, 'trust', 'rm', fpr], { env: ENV() });
      assert.equal(r.code, 0, r.stderr);
      r = await gantry([...s.args, 'fetch', '--pull-policy=update', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.equal((await gantry([...s.args, 'audit', 'verify'])).code, 0);
    } finally {
      s.cleanup();
    }
  });

  test('untrusted key, key for another prefix, signature over other bytes: refused, naming the fingerprint', async () => {
    const s = state();
    try {
      const aci = path.join(s.dir, 'app.aci');
      await makeAci(aci, 'example.com/app');
      await gpg.sign(other, aci, `${aci}.asc`);
      assert.equal((await gantry([...s.args, 'trust', '--prefix', 'example.com/app', '--skip-fingerprint-review', keyFile], { env: ENV() })).code, 0);
      let r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`signed by key ${other}, which is not trusted`));

      // The stranger's key, trusted only for another prefix (and a prefix that is a string- but not a path-prefix).
      assert.equal((await gantry([...s.args, 'trust', '--prefix', 'example.com/ap', '--skip-fingerprint-review', otherKeyFile], { env: ENV() })).code, 0);
      assert.equal((await gantry([...s.args, 'trust', '--prefix', 'example.org', '--skip-fingerprint-review', otherKeyFile], { env: ENV() })).code, 0);
      r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(other));

      // A valid signature by the trusted key, but over other bytes.
      const decoy = path.join(s.dir, 'decoy.aci');
      await makeAci(decoy, 'example.com/app', '1.0', 'other content');
      await gpg.sign(fpr, decoy, `${aci}.asc`);
      r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`signature by ${fpr} does not verify`));

      // Garbage signature file.
      fs.writeFileSync(`${aci}.asc`, '-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n');
      r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      noSnapshots(path.join(s.dir, 'state'));

      // A root key signs everything.
      await gpg.sign(other, aci, `${aci}.asc`);
      assert.equal((await gantry([...s.args, 'trust', '--root', '--skip-fingerprint-review', otherKeyFile], { env: ENV() })).code, 0);
      r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /signature verified: Stranger/);
    } finally {
      s.cleanup();
    }
  });

  test('expired and revoked keys are refused at verification time', async () => {
    const s = state();
    try {
      // Made and used in 2020, valid for one day: the signature was good then, the key is not now.
      const old = await gpg.genKey('Old <old@example.com>', { expire: '1d', fakedTime: '20200101T000000' });
      const oldFile = path.join(s.dir, 'old.asc');
      await gpg.exportKey(old, oldFile);
      const aci = path.join(s.dir, 'old.aci');
      await makeAci(aci, 'example.com/old');
      await gpg.sign(old, aci, `${aci}.asc`, '20200101T010000');
      let r = await gantry([...s.args, 'trust', '--prefix', 'example.com/old', '--skip-fingerprint-review', oldFile], { env: ENV() });
      assert.equal(r.code, 9, 'an expired key must not be trusted');
      assert.match(r.stderr, new RegExp(`key ${old} expired`));
      // Put there by other means (it was trusted while it was valid).
      const keyDir = path.join(s.config, 'trustedkeys', 'prefix.d', 'example.com', 'old');
      fs.mkdirSync(keyDir, { recursive: true });
      fs.copyFileSync(oldFile, path.join(keyDir, old));
      r = await gantry([...s.args, 'fetch', aci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`signed by ${old}, but key ${old} expired on 2020-01-02`));

      // Revoked: trusted while valid, then the publisher's revocation arrives with the updated key.
      const rev = await gpg.genKey('Revoked <revoked@example.com>');
      const revFile = path.join(s.dir, 'rev.asc');
      await gpg.exportKey(rev, revFile);
      const raci = path.join(s.dir, 'rev.aci');
      await makeAci(raci, 'example.com/rev');
      await gpg.sign(rev, raci, `${raci}.asc`);
      assert.equal((await gantry([...s.args, 'trust', '--prefix', 'example.com/rev', '--skip-fingerprint-review', revFile], { env: ENV() })).code, 0);
      assert.equal((await gantry([...s.args, 'fetch', raci], { env: ENV() })).code, 0);
      const cert = fs.readFileSync(path.join(gpg.home, 'openpgp-revocs.d', `${rev.toUpperCase()}.rev`), 'utf8').replace(/^:-----BEGIN/m, '-----BEGIN');
      const certFile = path.join(s.dir, 'rev.rev');
      fs.writeFileSync(certFile, cert);
      await gpg.run(['--import', certFile]);
      await gpg.exportKey(rev, path.join(s.config, 'trustedkeys', 'prefix.d', 'example.com', 'rev', rev));
      r = await gantry([...s.args, 'fetch', '--pull-policy=update', raci], { env: ENV() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`key ${rev} has been revoked`));
      r = await gantry([...s.args, 'trust', 'list'], { env: ENV() });
      assert.match(r.stdout, new RegExp(`${rev}.*revoked`));
    } finally {
      s.cleanup();
    }
  });

  test('trust refuses bad input: no scope, bad prefix, non-key file, non-TTY without review flag', async () => {
    const s = state();
    try {
      let r = await gantry([...s.args, 'trust', keyFile]);
      assert.equal(r.code, 2);
      r = await gantry([...s.args, 'trust', '--prefix', '../etc', '--skip-fingerprint-review', keyFile]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /not a valid image name prefix/);
      const junk = path.join(s.dir, 'junk.asc');
      fs.writeFileSync(junk, 'not a key');
      r = await gantry([...s.args, 'trust', '--prefix', 'example.com', '--skip-fingerprint-review', junk]);
      assert.equal(r.code, 14);
      r = await gantry([...s.args, 'trust', '--prefix', 'example.com', keyFile]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /stdin is not a terminal/);
      r = await gantry([...s.args, 'trust', 'rm', 'abcd']);
      assert.equal(r.code, 2);
      assert.equal(fs.existsSync(path.join(s.config, 'trustedkeys', 'prefix.d')), false);
    } finally {
      s.cleanup();
    }
  });
});

// ---------------------------------------------------------------- https + discovery

interface Site {
  routes: Map<string, { status?: number; body?: Buffer | string; location?: string }>;
  caFile: string;
  server: https.Server;
}

async function startSite(dir: string): Promise<Site> {
  const key = path.join(dir, 'site.key');
  const cert = path.join(dir, 'site.crt');
  await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { timeout: 30_000 });
  const routes: Site['routes'] = new Map();
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    const route = routes.get(req.url ?? '');
    if (!route) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(route.status ?? 200, route.location ? { location: route.location } : {}).end(route.body ?? '');
  });
  // Discovery derives the URL from the image name, so the site must be on the default https port.
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(443, '127.0.0.1', () => resolve());
      });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return { routes, caFile: cert, server };
}

function page(metas: [string, string][]): string {
  return `<!DOCTYPE html><html><head>${metas.map(([n, c]) => `<meta name="${n}" content="${c}">`).join('\n')}</head><body></body></html>`;
}

describe('appc discovery over https', () => {
  let site: Site;
  let aciBytes: Buffer;
  let ascBytes: Buffer;
  before(async () => {
    site = await startSite(work.dir);
    const aci = path.join(work.dir, 'disc.aci');
    await makeAci(aci, '127.0.0.1/app', '1.0');
    await gpg.sign(fpr, aci, `${aci}.asc`);
    aciBytes = fs.readFileSync(aci);
    ascBytes = fs.readFileSync(`${aci}.asc`);
    const tmpl = 'https://127.0.0.1/images/{name}-{version}-{os}-{arch}.{ext}';
    // The name's own page has no tags: discovery falls back to the host's page.
    site.routes.set('/app?ac-discovery=1', { body: page([]) });
    site.routes.set('/?ac-discovery=1', { body: page([['ac-discovery', `127.0.0.1/app ${tmpl}`], ['ac-discovery-pubkeys', '127.0.0.1/app https://127.0.0.1/pubkeys.asc']]) });
    site.routes.set(`/images/127.0.0.1/app-1.0-linux-${ARCH}.aci`, { body: aciBytes });
    site.routes.set(`/images/127.0.0.1/app-1.0-linux-${ARCH}.aci.asc`, { body: ascBytes });
    site.routes.set('/pubkeys.asc', { body: fs.readFileSync(keyFile) });
    site.routes.set('/direct/app.aci', { body: aciBytes });
    site.routes.set('/direct/app.aci.asc', { body: ascBytes });
    site.routes.set('/direct/unsigned.aci', { body: aciBytes });
  });
  after(async () => {
    site?.server.closeAllConnections();
    await new Promise<void>((resolve) => (site ? site.server.close(() => resolve()) : resolve()));
  });

  const env = () => ENV({ GANTRY_CA_FILE: site.caFile });
  const NAME = `127.0.0.1/app:1.0,os=linux,arch=${ARCH}`;

  test('discovery with prefix fallback; key discovered by gantry trust --prefix; verified', async () => {
    const s = state();
    try {
      let r = await gantry([...s.args, 'fetch', NAME], { env: env() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /not trusted/);
      noSnapshots(path.join(s.dir, 'state'));
      r = await gantry([...s.args, 'trust', '--prefix', '127.0.0.1/app', '--skip-fingerprint-review'], { env: env() });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), fpr);
      r = await gantry([...s.args, 'fetch', NAME], { env: env() });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`signature verified: Publisher <pub@example.com> \\(${fpr}\\)`));
      const images = JSON.parse((await gantry([...s.args, 'image', 'list', '--format', 'json'])).stdout) as { names: string[] }[];
      assert.ok(images.some((i) => i.names.includes('127.0.0.1/app:1.0')), JSON.stringify(images));
    } finally {
      s.cleanup();
    }
  });

  test('--trust-keys-from-https trusts the discovered key on first use, and says so', async () => {
    const s = state();
    try {
      const r = await gantry([...s.args, 'fetch', '--trust-keys-from-https', NAME], { env: env() });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`trusting key ${fpr}.*--trust-keys-from-https`));
      assert.ok(fs.existsSync(path.join(s.config, 'trustedkeys', 'prefix.d', '127.0.0.1', 'app', fpr)));
      const audit = JSON.parse((await gantry([...s.args, 'audit', 'show', '--format', 'json'])).stdout) as { event: string; details: { scope?: string; via?: string } }[];
      assert.deepEqual(audit.map((a) => a.event), ['trust-add', 'fetch']);
      // The same record shape as a key added with gantry trust.
      assert.equal(audit[0]!.details.scope, '127.0.0.1/app');
      assert.equal(audit[0]!.details.via, 'trust-keys-from-https');
    } finally {
      s.cleanup();
    }
  });

  test('https ACI URL: signature fetched alongside; missing signature refused', async () => {
    const s = state();
    try {
      assert.equal((await gantry([...s.args, 'trust', '--prefix', '127.0.0.1', '--skip-fingerprint-review', keyFile], { env: env() })).code, 0);
      let r = await gantry([...s.args, 'fetch', 'https://127.0.0.1/direct/app.aci'], { env: env() });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /signature verified/);
      r = await gantry([...s.args, 'fetch', 'https://127.0.0.1/direct/unsigned.aci'], { env: env() });
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /is not signed: no signature at https:\/\/127\.0\.0\.1\/direct\/unsigned\.aci\.asc/);
    } finally {
      s.cleanup();
    }
  });

  test('hostile discovery: no meta tags, bad templates, redirect to http, wrong image name', async () => {
    const s = state();
    try {
      site.routes.set('/none?ac-discovery=1', { body: '<html><head><title>nothing</title></head></html>' });
      let r = await gantry([...s.args, 'fetch', '127.0.0.1/none,os=linux'], { env: env() });
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /no ac-discovery meta tag/);

      site.routes.set('/bad?ac-discovery=1', { body: page([
        ['ac-discovery', '127.0.0.1/bad https://127.0.0.1/{name}-{nosuchlabel}.{ext}'],
        ['ac-discovery', '127.0.0.1/bad not-a-url-{name}.{ext}'],
        ['ac-discovery', '127.0.0.1/bad http://127.0.0.1/{name}.{ext}'],
        ['ac-discovery', 'just-one-field'],
      ]) });
      r = await gantry([...s.args, 'fetch', '127.0.0.1/bad,os=linux'], { env: env() });
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /no usable template/);
      assert.match(r.stderr, /nosuchlabel|names a label/);

      site.routes.set('/redir?ac-discovery=1', { status: 302, location: 'http://127.0.0.1:1/redir?ac-discovery=1' });
      r = await gantry([...s.args, 'fetch', '127.0.0.1/redir,os=linux'], { env: env() });
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /never follows https to http/);
      r = await gantry([...s.args, '--insecure-options=http', 'fetch', '127.0.0.1/redir,os=linux'], { env: env() });
      assert.equal(r.code, 4, r.stderr);

      // The page points at an ACI with another name (signed by a trusted key): refused.
      site.routes.set('/impostor?ac-discovery=1', { body: page([['ac-discovery', `127.0.0.1/impostor https://127.0.0.1/images/127.0.0.1/app-1.0-linux-${ARCH}.{ext}`]]) });
      assert.equal((await gantry([...s.args, 'trust', '--root', '--skip-fingerprint-review', keyFile], { env: env() })).code, 0);
      r = await gantry([...s.args, 'fetch', '127.0.0.1/impostor,os=linux'], { env: env() });
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, /returned an ACI named "127\.0\.0\.1\/app"/);

      // Without the CA the TLS check fails.
      r = await gantry([...s.args, 'fetch', NAME], { env: ENV() });
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /TLS/);
      noSnapshots(path.join(s.dir, 'state'));

      // Invalid appc names and labels are usage errors.
      for (const bad of ['127.0.0.1/App,os=linux', '127.0.0.1/app,os', '127.0.0.1/app,os=linux,os=linux', '127.0.0.1/app:,os=linux']) {
        r = await gantry([...s.args, 'fetch', bad], { env: env() });
        assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      }
    } finally {
      s.cleanup();
    }
  });
});
