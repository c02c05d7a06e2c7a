/**
 * Signature policy for registry images against the real docker-registry:
 * simple signing signatures written by `skopeo copy --sign-by` into a
 * lookaside directory (registries.d), and cosign-style sigstore signatures
 * made here with node:crypto and pushed through the registry's HTTP API.
 *
 * Refusals checked: the same tag with a changed manifest, a replayed
 * signature for an older digest, a signature whose identity names another
 * repository, a wrong key, a reject rule, a policy file that does not parse;
 * each before anything is unpacked. Plus the YAML subset reader, policy
 * parsing and scope/identity rules as library calls.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { isGantryError } from '../src/errors.js';
import { parseDockerName } from '../src/image/reference.js';
import { identityProblem } from '../src/trust/identity.js';
import { dockerScopes, parsePolicy, requirementsFor } from '../src/trust/policy.js';
import { lookasideFor, parseYamlSubset } from '../src/trust/registries-d.js';
import { gantry, tempDir } from './lib/cli.js';
import { startRegistry, writePlatformLayout, type TestRegistry } from './lib/registry.js';

const execFileP = promisify(execFile);
const HOST_ARCH = process.arch === 'arm64' ? 'arm64' : 'amd64';
const HTTP = '--insecure-options=http';

let work: { dir: string; cleanup: () => void };
let reg: TestRegistry;
let home: string;
let fpr: string;
let otherFpr: string;
let containers: string;
let sigDir: string;

async function gpg(args: string[]): Promise<string> {
  const { stdout } = await execFileP('gpg', ['--homedir', home, '--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { timeout: 60_000 });
  return stdout;
}

async function genKey(uid: string): Promise<string> {
  await gpg(['--quick-gen-key', uid, 'ed25519', 'sign', 'never']);
  return /^fpr:+([0-9A-F]{40}):/m.exec(await gpg(['--with-colons', '--list-keys', uid]))![1]!;
}

async function skopeoCopy(layout: string, dest: string, signBy?: string): Promise<void> {
  const args = ['--insecure-policy', '--registries.d', path.join(containers, 'registries.d'), 'copy', '--quiet', '--dest-tls-verify=false'];
  if (signBy) args.push('--sign-by', signBy);
  args.push(`oci:${layout}:latest`, `docker://${dest}`);
  await execFileP('skopeo', args, { timeout: 120_000, env: { ...process.env, GNUPGHOME: home } });
}

async function layout(name: string, content: string): Promise<string> {
  const dir = path.join(work.dir, name);
  await writePlatformLayout(dir, { files: { 'file.txt': content }, platforms: [{ os: 'linux', architecture: HOST_ARCH }] });
  return dir;
}

async function manifestDigest(repo: string, tag: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.request(`${reg.url}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } }, (res) => {
      res.resume();
      const d = res.headers['docker-content-digest'];
      if (typeof d === 'string') resolve(d);
      else reject(new Error(`no digest for ${repo}:${tag} (HTTP ${res.statusCode})`));
    }).on('error', reject).end();
  });
}

function request(method: string, url: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function pushBlob(repo: string, data: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const start = await request('POST', `${reg.url}/v2/${repo}/blobs/uploads/`);
  assert.equal(start.status, 202, start.body);
  const loc = new URL(start.headers.location!, reg.url);
  loc.searchParams.set('digest', digest);
  const put = await request('PUT', loc.href, data, { 'content-type': 'application/octet-stream' });
  assert.equal(put.status, 201, put.body);
  return digest;
}

/** Pushes a cosign-style signature manifest for `digest` signed with `key`. */
async function pushCosign(repo: string, forDigest: string, payloadDigest: string, identity: string, key: import('node:crypto').KeyObject): Promise<void> {
  const payload = Buffer.from(JSON.stringify({
    critical: { identity: { 'docker-reference': identity }, image: { 'docker-manifest-digest': payloadDigest }, type: 'cosign container image signature' },
    optional: null,
  }));
  const signature = cryptoSign('sha256', payload, key).toString('base64');
  const config = Buffer.from('{}');
  const configDigest = await pushBlob(repo, config);
  const payloadBlob = await pushBlob(repo, payload);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: configDigest },
    layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', size: payload.length, digest: payloadBlob, annotations: { 'dev.cosignproject.cosign/signature': signature } }],
  }));
  const res = await request('PUT', `${reg.url}/v2/${repo}/manifests/${forDigest.replace(':', '-')}.sig`, manifest, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
  assert.equal(res.status, 201, res.body);
}

function writePolicy(name: string, policy: unknown): string {
  const file = path.join(work.dir, `${name}.json`);
  fs.writeFileSync(file, typeof policy === 'string' ? policy : JSON.stringify(policy));
  return file;
}

function noSnapshots(dir: string): void {
  const snaps = path.join(dir, 'store', 'snapshots');
  const entries = fs.existsSync(snaps) ? fs.readdirSync(snaps).filter((e) => !e.startsWith('.') && e !== 'tmp') : [];
  assert.deepEqual(entries, [], 'something was unpacked before the signature check');
}

async function fetchWith(policyFile: string | undefined, ref: string): Promise<{ code: number; stdout: string; stderr: string; dir: string; cleanup: () => void }> {
  const t = tempDir('gantry-policy-state-');
  const args = ['--dir', t.dir, '--local-config', path.join(t.dir, 'config'), HTTP, 'fetch'];
  if (policyFile) args.push('--signature-policy', policyFile);
  const r = await gantry([...args, `docker://${ref}`], { env: { GANTRY_CONTAINERS_CONFIG: containers } });
  return { ...r, dir: t.dir, cleanup: t.cleanup };
}

before(async () => {
  work = tempDir('gantry-trust-policy-');
  home = path.join(work.dir, 'gnupg');
  fs.mkdirSync(home, { mode: 0o700 });
  fpr = await genKey('Signer <signer@example.com>');
  otherFpr = await genKey('Other <other@example.com>');
  fs.writeFileSync(path.join(work.dir, 'signer.asc'), await gpg(['--armor', '--export', fpr]));
  fs.writeFileSync(path.join(work.dir, 'other.asc'), await gpg(['--armor', '--export', otherFpr]));
  reg = await startRegistry();
  containers = path.join(work.dir, 'containers');
  sigDir = path.join(work.dir, 'sigstore');
  fs.mkdirSync(path.join(containers, 'registries.d'), { recursive: true });
  fs.writeFileSync(path.join(containers, 'registries.d', 'test.yaml'),
    `# lookaside for the test registry\ndocker:\n  ${reg.host}:\n    lookaside: file://${sigDir}\n    lookaside-staging: file://${sigDir}\n`);
});

after(async () => {
  await reg?.stop();
  if (home) await execFileP('gpgconf', ['--homedir', home, '--kill', 'all'], { timeout: 30_000 }).catch(() => {});
  work?.cleanup();
});

describe('signedBy: skopeo --sign-by simple signing with lookaside storage', () => {
  let signedPolicy: string;
  before(() => {
    signedPolicy = writePolicy('signed', {
      default: [{ type: 'reject' }],
      transports: { docker: { [`${reg.host}/test`]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: path.join(work.dir, 'signer.asc') }] } },
    });
  });

  test('a signed image verifies; the signer is printed and audited', async () => {
    await skopeoCopy(await layout('v1', 'one'), `${reg.host}/test/signed:latest`, fpr);
    const r = await fetchWith(signedPolicy, `${reg.host}/test/signed:latest`);
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`signature verified: Signer <signer@example.com> \\(${fpr.toLowerCase()}\\)`));
      const audit = JSON.parse((await gantry(['--dir', r.dir, 'audit', 'show', '--format', 'json'])).stdout) as { details: { verification: { method: string } } }[];
      assert.equal(audit[0]!.details.verification.method, 'signedBy');
    } finally {
      r.cleanup();
    }
  });

  test('the same tag with a changed manifest is refused; so is the old signature replayed for it', async () => {
    await skopeoCopy(await layout('v1b', 'one-b'), `${reg.host}/test/changing:latest`, fpr);
    const old = await manifestDigest('test/changing', 'latest');
    await skopeoCopy(await layout('v2b', 'two-b'), `${reg.host}/test/changing:latest`);
    const now = await manifestDigest('test/changing', 'latest');
    assert.notEqual(old, now);
    let r = await fetchWith(signedPolicy, `${reg.host}/test/changing:latest`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /has no signature/);
      noSnapshots(r.dir);
    } finally {
      r.cleanup();
    }
    // Replay: the old, genuine signature placed where the new digest's would be.
    const from = path.join(sigDir, 'test', `changing@${old.replace(':', '=')}`);
    const to = path.join(sigDir, 'test', `changing@${now.replace(':', '=')}`);
    fs.cpSync(from, to, { recursive: true });
    r = await fetchWith(signedPolicy, `${reg.host}/test/changing:latest`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`is for manifest ${old}, not ${now} \\(a replayed or stale signature\\)`));
      noSnapshots(r.dir);
    } finally {
      r.cleanup();
    }
  });

  test('a signature whose identity names another repository is refused', async () => {
    const dir = await layout('v3', 'three');
    await skopeoCopy(dir, `${reg.host}/test/original:latest`, fpr);
    await skopeoCopy(dir, `${reg.host}/test/copy:latest`);
    const digest = await manifestDigest('test/copy', 'latest');
    assert.equal(digest, await manifestDigest('test/original', 'latest'));
    fs.cpSync(path.join(sigDir, 'test', `original@${digest.replace(':', '=')}`), path.join(sigDir, 'test', `copy@${digest.replace(':', '=')}`), { recursive: true });
    const r = await fetchWith(signedPolicy, `${reg.host}/test/copy:latest`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`the signature is for "${reg.host}/test/original:latest", not for ${reg.host}/test/copy:latest`));
      noSnapshots(r.dir);
    } finally {
      r.cleanup();
    }
    // matchRepository does not help either (other repository); exactRepository naming the original does.
    const remap = writePolicy('exactrepo', {
      default: [{ type: 'reject' }],
      transports: { docker: { [`${reg.host}/test/copy`]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: path.join(work.dir, 'signer.asc'), signedIdentity: { type: 'exactRepository', dockerRepository: `${reg.host}/test/original` } }] } },
    });
    const ok = await fetchWith(remap, `${reg.host}/test/copy:latest`);
    try {
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      ok.cleanup();
    }
  });

  test('a signature by a key the policy does not name is refused, naming the key', async () => {
    const otherPolicy = writePolicy('other', {
      default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: path.join(work.dir, 'other.asc') }],
    });
    const r = await fetchWith(otherPolicy, `${reg.host}/test/signed:latest`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`key ${fpr.toLowerCase()}, which is not trusted`));
      noSnapshots(r.dir);
    } finally {
      r.cleanup();
    }
  });

  test('reject rules, unparseable policies, and the default policy warning', async () => {
    await skopeoCopy(await layout('elsewhere', 'elsewhere'), `${reg.host}/elsewhere/image:latest`);
    let r = await fetchWith(signedPolicy, `${reg.host}/elsewhere/image:latest`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /rejected by signature policy rule .*signed\.json: default/);
    } finally {
      r.cleanup();
    }
    for (const [name, text, problem] of [
      ['broken', '{"default": [', /not valid JSON/],
      ['unknown-type', '{"default": [{"type": "acceptIfSunny"}]}', /unknown requirement type/],
      ['empty', '{"default": []}', /empty list/],
      ['nodefault', '{"transports": {}}', /"default" requirement list is missing/],
      ['twokeys', JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/a', keyData: 'eA==' }] }), /exactly one of/],
      ['typo', '{"default": [{"type": "reject", "keyPth": "/x"}]}', /unknown field "keyPth"/],
    ] as [string, string, RegExp][]) {
      r = await fetchWith(writePolicy(name, text), `${reg.host}/test/signed:latest`);
      try {
        assert.equal(r.code, 14, `${name}: ${r.stderr}`);
        assert.match(r.stderr, problem);
        assert.match(r.stderr, new RegExp(`${name}\\.json`));
        noSnapshots(r.dir);
      } finally {
        r.cleanup();
      }
    }
    // No policy anywhere: accepted, with a warning that says so.
    r = await fetchWith(undefined, `${reg.host}/test/signed:latest`);
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /accepted WITHOUT a signature check \(policy rule built-in default policy: default: insecureAcceptAnything\)/);
    } finally {
      r.cleanup();
    }
    // --insecure-options=image: skipped, loudly, even under a reject policy.
    const t = tempDir('gantry-policy-state-');
    try {
      const s = await gantry(['--dir', t.dir, `${HTTP},image`, 'fetch', '--signature-policy', signedPolicy, `docker://${reg.host}/elsewhere/image:latest`], { env: { GANTRY_CONTAINERS_CONFIG: containers } });
      assert.equal(s.code, 0, s.stderr);
      assert.match(s.stderr, /signature verification disabled by --insecure-options=image/);
    } finally {
      t.cleanup();
    }
  });
});

describe('sigstoreSigned: cosign-style signatures in the registry', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const wrong = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  let policy: string;
  let wrongPolicy: string;
  before(() => {
    policy = writePolicy('sigstore', {
      default: [{ type: 'reject' }],
      transports: { docker: { [`${reg.host}/cosign`]: [{ type: 'sigstoreSigned', keyData: Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })).toString('base64') }] } },
    });
    const keyPath = path.join(work.dir, 'wrong.pub');
    fs.writeFileSync(keyPath, wrong.publicKey.export({ type: 'spki', format: 'pem' }));
    wrongPolicy = writePolicy('sigstore-wrong', { default: [{ type: 'sigstoreSigned', keyPath }] });
  });

  test('verifies with the right key; refused with another key, a replayed signature, another identity', async () => {
    await skopeoCopy(await layout('c1', 'cosign-one'), `${reg.host}/cosign/app:v1`);
    const d1 = await manifestDigest('cosign/app', 'v1');
    await pushCosign('cosign/app', d1, d1, `${reg.host}/cosign/app:v1`, privateKey);
    let r = await fetchWith(policy, `${reg.host}/cosign/app:v1`);
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /signature verified: sigstore key sha256:/);
    } finally {
      r.cleanup();
    }
    r = await fetchWith(wrongPolicy, `${reg.host}/cosign/app:v1`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /does not verify with the key/);
      noSnapshots(r.dir);
    } finally {
      r.cleanup();
    }
    // v2: its signature tag holds a genuine signature of v1's digest (replay).
    await skopeoCopy(await layout('c2', 'cosign-two'), `${reg.host}/cosign/app:v2`);
    const d2 = await manifestDigest('cosign/app', 'v2');
    await pushCosign('cosign/app', d2, d1, `${reg.host}/cosign/app:v2`, privateKey);
    r = await fetchWith(policy, `${reg.host}/cosign/app:v2`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`is for manifest ${d1}, not ${d2}`));
      noSnapshots(r.dir);
    } finally {
      r.cleanup();
    }
    // v3: signed correctly but for another repository's name.
    await skopeoCopy(await layout('c3', 'cosign-three'), `${reg.host}/cosign/app:v3`);
    const d3 = await manifestDigest('cosign/app', 'v3');
    await pushCosign('cosign/app', d3, d3, `${reg.host}/cosign/evil:v3`, privateKey);
    r = await fetchWith(policy, `${reg.host}/cosign/app:v3`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /the signature is for ".*cosign\/evil:v3"/);
    } finally {
      r.cleanup();
    }
    // v4: no signature at all.
    await skopeoCopy(await layout('c4', 'cosign-four'), `${reg.host}/cosign/app:v4`);
    r = await fetchWith(policy, `${reg.host}/cosign/app:v4`);
    try {
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /has no sigstore signature/);
    } finally {
      r.cleanup();
    }
  });
});

describe('policy, scopes, identities and registries.d as library calls', () => {
  test('scopes go from the most specific to the transport default, then default', () => {
    assert.deepEqual(dockerScopes('reg.example.com:5000', 'ns/repo', 'tag'),
      ['reg.example.com:5000/ns/repo:tag', 'reg.example.com:5000/ns/repo', 'reg.example.com:5000/ns', 'reg.example.com:5000', '*.example.com', '*.com']);
    const policy = parsePolicy(JSON.stringify({
      default: [{ type: 'reject' }],
      transports: { docker: { '': [{ type: 'insecureAcceptAnything' }], 'reg.example.com:5000/ns': [{ type: 'reject' }], '*.example.com': [{ type: 'insecureAcceptAnything' }] } },
    }), 'p.json');
    assert.match(requirementsFor(policy, 'docker', dockerScopes('reg.example.com:5000', 'ns/repo', 'tag')).rule, /ns"\]$/);
    assert.match(requirementsFor(policy, 'docker', dockerScopes('other.example.com', 'x', 'tag')).rule, /\*\.example\.com/);
    assert.match(requirementsFor(policy, 'docker', dockerScopes('docker.io', 'library/busybox', 'latest')).rule, /docker\[""\]/);
    assert.match(requirementsFor(policy, 'oci', ['/a/b']).rule, /default$/);
  });

  test('signedIdentity rules', () => {
    const tagged = parseDockerName('reg.io/ns/app:1.0');
    const digested = parseDockerName(`reg.io/ns/app@sha256:${'a'.repeat(64)}`);
    assert.equal(identityProblem({ type: 'matchRepoDigestOrExact' }, tagged, 'reg.io/ns/app:1.0'), undefined);
    assert.ok(identityProblem({ type: 'matchRepoDigestOrExact' }, tagged, 'reg.io/ns/app:2.0'));
    assert.equal(identityProblem({ type: 'matchRepoDigestOrExact' }, digested, 'reg.io/ns/app:anything'), undefined);
    assert.ok(identityProblem({ type: 'matchExact' }, digested, 'reg.io/ns/app:anything'));
    assert.equal(identityProblem({ type: 'matchRepository' }, tagged, 'reg.io/ns/app'), undefined);
    assert.ok(identityProblem({ type: 'matchRepository' }, tagged, 'reg.io/ns/other:1.0'));
    assert.equal(identityProblem({ type: 'exactReference', dockerReference: 'signed.io/x:7' }, tagged, 'signed.io/x:7'), undefined);
    assert.equal(identityProblem({ type: 'remapIdentity', prefix: 'reg.io/ns', signedPrefix: 'upstream.io/team' }, tagged, 'upstream.io/team/app:1.0'), undefined);
    assert.ok(identityProblem({ type: 'remapIdentity', prefix: 'reg.io/ns', signedPrefix: 'upstream.io/team' }, tagged, 'upstream.io/other/app:1.0'));
    assert.equal(identityProblem({ type: 'matchRepoDigestOrExact' }, parseDockerName('busybox'), 'docker.io/library/busybox:latest'), undefined);
    assert.ok(identityProblem({ type: 'matchRepoDigestOrExact' }, tagged, 'not a reference!'));
  });

  test('the registries.d YAML subset: maps, quotes, comments; refuses what it does not know', () => {
    const doc = parseYamlSubset([
      '# comment',
      'default-docker:',
      '  lookaside: "file:///var/lib/sigs"   # trailing comment',
      'docker:',
      "  'reg.io/ns':",
      '    lookaside: https://sigs.example.com/x#not-a-comment',
      '    use-sigstore-attachments: true',
      '  reg.io:',
      '    sigstore: file:///old/name',
    ].join('\n'), 't.yaml');
    assert.deepEqual(doc, {
      'default-docker': { lookaside: 'file:///var/lib/sigs' },
      docker: { 'reg.io/ns': { lookaside: 'https://sigs.example.com/x#not-a-comment', 'use-sigstore-attachments': 'true' }, 'reg.io': { sigstore: 'file:///old/name' } },
    });
    const config = { docker: new Map([['reg.io/ns', 'https://a'], ['reg.io', 'file:///b']]), defaultDocker: 'file:///c' };
    assert.equal(lookasideFor(config, parseDockerName('reg.io/ns/app:1')), 'https://a');
    assert.equal(lookasideFor(config, parseDockerName('reg.io/other/app:1')), 'file:///b');
    assert.equal(lookasideFor(config, parseDockerName('busybox')), 'file:///c');
    for (const bad of ['docker:\n  - item', 'docker: [a, b]', 'a: 1\na: 2', 'docker:\n    x: 1\n  y: 2', 'novalue']) {
      assert.throws(() => parseYamlSubset(bad, 'bad.yaml'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID') && /bad\.yaml:\d+/.test(e.message), bad);
    }
  });
});
