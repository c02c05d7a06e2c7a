/**
 * stage0 end to end through the CLI: a real docker-registry on 127.0.0.1,
 * the fixtures built from Debian packages, and the commands a user types.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { gantry, tempDir } from './lib/cli.js';
import { fixture } from './lib/fixtures.js';
import { pushOciLayout, startRegistry, type TestRegistry } from './lib/registry.js';

const HTTP = '--insecure-options=http';

interface TreeEntry { type: string; mode: number; uid: number; gid: number; size: number; link?: string; sha?: string }

/** Every path under root with what a user can observe of it. */
function describeTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const walk = (rel: string) => {
    const full = path.join(root, rel);
    const st = fs.lstatSync(full);
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chr' : st.isBlockDevice() ? 'blk' : 'other';
    const entry: TreeEntry = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: type === 'file' ? st.size : 0 };
    if (type === 'symlink') entry.link = fs.readlinkSync(full);
    if (type === 'file') entry.sha = execFileSync('sha256sum', [full]).toString().split(' ')[0];
    if (rel !== '') out.set(rel, entry);
    if (type === 'dir') for (const name of fs.readdirSync(full)) walk(path.join(rel, name));
  };
  walk('');
  return out;
}

function blobCount(dir: string): number {
  const blobs = path.join(dir, 'store', 'blobs', 'sha256');
  return fs.existsSync(blobs) ? fs.readdirSync(blobs).length : 0;
}

describe('fetch from a registry', () => {
  let registry: TestRegistry;
  let dockerRef: string;
  let ociRef: string;
  before(async () => {
    registry = await startRegistry();
    const busybox = await fixture('busybox');
    dockerRef = await pushOciLayout(busybox, 'latest', registry.host, { format: 'v2s2', repository: 'library/busybox' });
    ociRef = await pushOciLayout(busybox, 'latest', registry.host, { format: 'oci', repository: 'oci/busybox' });
  });
  after(async () => {
    await registry?.stop();
  });

  test('docker and OCI manifests fetch, list, and fetch again without transfer', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const first = await gantry(['--dir', dir, HTTP, 'fetch', `docker://${dockerRef}`]);
      assert.equal(first.code, 0, first.stderr);
      const id = first.stdout.trim();
      assert.match(id, /^sha256:[0-9a-f]{64}$/);
      // Not on a TTY: no progress display, only the per-fetch signature notice.
      assert.doesNotMatch(first.stderr, /\x1b\[|downloading|ETA/);
      assert.match(first.stderr, /without a signature|unsigned|not signed/i);

      const oci = await gantry(['--dir', dir, HTTP, 'fetch', `docker://${ociRef}`]);
      assert.equal(oci.code, 0, oci.stderr);

      const list = await gantry(['--dir', dir, 'image', 'list', '--format', 'json']);
      const images = JSON.parse(list.stdout) as { id: string; names: string[]; manifestMediaType: string }[];
      assert.equal(images.length, 2);
      assert.ok(images.some((i) => i.manifestMediaType.includes('docker')));
      assert.ok(images.some((i) => i.manifestMediaType.includes('oci')));
      const blobsBefore = blobCount(dir);

      const again = await gantry(['--dir', dir, HTTP, '--format', 'json', 'fetch', `docker://${dockerRef}`]);
      assert.equal(again.code, 0, again.stderr);
      const [result] = JSON.parse(again.stdout) as { id: string; transferred: boolean }[];
      assert.equal(result!.id, id);
      assert.equal(result!.transferred, false);
      assert.equal(blobCount(dir), blobsBefore, 'identical blobs are stored once');

      // By ID prefix and by name: no network (the registry is not even asked).
      const byPrefix = await gantry(['--dir', dir, 'fetch', '--pull-policy=never', id.slice(7, 19)]);
      assert.equal(byPrefix.stdout.trim(), id);
      const never = await gantry(['--dir', dir, 'fetch', '--pull-policy=never', 'docker://127.0.0.1:1/nothing:here']);
      assert.equal(never.code, 3, never.stderr);
      assert.match(never.stderr, /not in the store/);
    } finally {
      cleanup();
    }
  });

  test('plain HTTP is refused without --insecure-options=http', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const r = await gantry(['--dir', dir, 'fetch', `docker://${dockerRef}`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /http|TLS|tls|https/i);
      assert.equal(blobCount(dir), 0);
    } finally {
      cleanup();
    }
  });

  test('a missing image and a dead registry give their documented exit codes', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const missing = await gantry(['--dir', dir, HTTP, 'fetch', `docker://${registry.host}/no/such:image`]);
      assert.equal(missing.code, 3, missing.stderr);
      assert.match(missing.stderr, /no\/such/);
      const dead = await gantry(['--dir', dir, HTTP, 'fetch', 'docker://127.0.0.1:1/x:y']);
      assert.equal(dead.code, 4, dead.stderr);
      const bad = await gantry(['--dir', dir, 'fetch', 'docker://UPPER/Case']);
      assert.equal(bad.code, 2, bad.stderr);
    } finally {
      cleanup();
    }
  });

  test('two processes fetching the same image at once both succeed and store each blob once', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const [a, b] = await Promise.all([
        gantry(['--dir', dir, HTTP, 'fetch', `docker://${dockerRef}`]),
        gantry(['--dir', dir, HTTP, 'fetch', `docker://${dockerRef}`]),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      assert.equal(a.stdout, b.stdout);
      // manifest + config + 1 layer
      assert.equal(blobCount(dir), 3);
      const v = await gantry(['--dir', dir, 'image', 'verify']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    } finally {
      cleanup();
    }
  });

  test('a full disk fails with NO_SPACE and leaves nothing half-written', async () => {
    const { dir, cleanup } = tempDir();
    fs.mkdirSync(path.join(dir, 'small'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=600k', 'tmpfs', path.join(dir, 'small')]);
    try {
      const state = path.join(dir, 'small', 'state');
      const r = await gantry(['--dir', state, HTTP, 'fetch', `docker://${dockerRef}`]);
      assert.equal(r.code, 10, r.stderr);
      assert.match(r.stderr, /no space/i);
      const list = await gantry(['--dir', state, 'image', 'list', '--format', 'json']);
      assert.deepEqual(JSON.parse(list.stdout), []);
      const ingest = path.join(state, 'store', 'ingest');
      assert.deepEqual(fs.existsSync(ingest) ? fs.readdirSync(ingest).filter((n) => !n.endsWith('.lock')) : [], []);
    } finally {
      execFileSync('umount', [path.join(dir, 'small')]);
      cleanup();
    }
  });
});

describe('multi-layer and multi-arch images', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    await registry?.stop();
  });

  test('the rendered multi-layer image is file-for-file what umoci unpack produces', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const layout = await fixture('multilayer');
      const ref = await pushOciLayout(layout, 'latest', registry.host, { format: 'oci', repository: 'multi/layer' });
      const fetched = await gantry(['--dir', dir, HTTP, 'fetch', `docker://${ref}`]);
      assert.equal(fetched.code, 0, fetched.stderr);
      const rendered = path.join(dir, 'rendered');
      const r = await gantry(['--dir', dir, 'image', 'render', fetched.stdout.trim(), rendered]);
      assert.equal(r.code, 0, r.stderr);

      const bundle = path.join(dir, 'umoci-bundle');
      execFileSync('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
      const ours = describeTree(rendered);
      const theirs = describeTree(path.join(bundle, 'rootfs'));
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
      for (const [p, entry] of theirs) {
        const mine = ours.get(p)!;
        // umoci keeps directory mtimes/sizes differently; compare what the spec fixes.
        assert.deepEqual({ ...mine }, { ...entry }, `entry ${p} differs`);
      }

      // The same snapshots stacked by a real overlay mount give the same tree.
      const again = await gantry(['--dir', dir, 'image', 'render', fetched.stdout.trim(), rendered]);
      assert.notEqual(again.code, 0, 'render refuses a non-empty target');
    } finally {
      cleanup();
    }
  });

  test('a multi-arch index selects the platform asked for', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const layout = await fixture('multiarch');
      const ref = await pushOciLayout(layout, 'latest', registry.host, { repository: 'multi/arch', all: true });
      const amd = await gantry(['--dir', dir, HTTP, '--format', 'json', 'fetch', '--platform', 'linux/amd64', `docker://${ref}`]);
      const arm = await gantry(['--dir', dir, HTTP, '--format', 'json', 'fetch', '--platform', 'linux/arm64/v8', `docker://${ref}`]);
      assert.equal(amd.code, 0, amd.stderr);
      assert.equal(arm.code, 0, arm.stderr);
      assert.notEqual(JSON.parse(amd.stdout)[0].id, JSON.parse(arm.stdout)[0].id);
      const inspect = await gantry(['--dir', dir, 'image', 'inspect', JSON.parse(arm.stdout)[0].id]);
      assert.equal(JSON.parse(inspect.stdout).config.architecture, 'arm64');
      const none = await gantry(['--dir', dir, HTTP, 'fetch', '--platform', 'linux/s390x', `docker://${ref}`]);
      assert.equal(none.code, 7, none.stderr);
      assert.match(none.stderr, /s390x/);
      assert.match(none.stderr, /arm64/);
    } finally {
      cleanup();
    }
  });
});

describe('local transports and image commands', () => {
  test('oci:, oci-archive:, docker-archive: and an ACI fetch from disk', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const refs = [
        `oci:${await fixture('busybox')}:latest`,
        `oci-archive:${await fixture('busybox-oci-archive')}`,
        `docker-archive:${await fixture('busybox-docker-archive')}`,
        await fixture('busybox-aci'),
      ];
      for (const ref of refs) {
        // The fixture ACI is unsigned: trust-*.test.ts covers signed ones.
        const r = await gantry(['--dir', dir, '--insecure-options=image', 'fetch', ref]);
        assert.equal(r.code, 0, `${ref}: ${r.stderr}`);
        assert.match(r.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
      }
      const list = JSON.parse((await gantry(['--dir', dir, 'image', 'list', '--format', 'json'])).stdout) as { format: string }[];
      assert.ok(list.some((i) => i.format === 'appc'));
    } finally {
      cleanup();
    }
  });

  test('rm by one of an image\'s names, written short, drops only that name', async () => {
    const { dir, cleanup } = tempDir();
    try {
      // The layout and the archive hold the same manifest: one image, two names.
      for (const ref of [`oci:${await fixture('busybox')}:latest`, `oci-archive:${await fixture('busybox-oci-archive')}`]) {
        const r = await gantry(['--dir', dir, '--insecure-options=image', 'fetch', ref]);
        assert.equal(r.code, 0, r.stderr);
      }
      const names = async () => (JSON.parse((await gantry(['--dir', dir, 'image', 'list', '--format', 'json'])).stdout) as { names: string[] }[]).map((i) => i.names);
      assert.deepEqual(await names(), [['localhost/busybox-oci-archive:latest', 'localhost/busybox:latest']]);
      // Without the tag: the stored name is the normalised one.
      const rm = await gantry(['--dir', dir, 'image', 'rm', 'localhost/busybox-oci-archive']);
      assert.equal(rm.code, 0, rm.stderr);
      assert.deepEqual(await names(), [['localhost/busybox:latest']]);
      assert.ok(blobCount(dir) > 0);
    } finally {
      cleanup();
    }
  });

  test('export writes an OCI archive skopeo reads back; rm and gc empty the store', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const id = (await gantry(['--dir', dir, 'fetch', `oci:${await fixture('busybox')}:latest`])).stdout.trim();
      const archive = path.join(dir, 'export.tar');
      const e = await gantry(['--dir', dir, 'image', 'export', id, archive]);
      assert.equal(e.code, 0, e.stderr);
      const copy = spawnSync('skopeo', ['--insecure-policy', 'copy', '-q', `oci-archive:${archive}:latest`, `oci:${path.join(dir, 'back')}:latest`]);
      assert.equal(copy.status, 0, copy.stderr.toString());
      // And gantry reads its own export.
      const back = await gantry(['--dir', dir, 'fetch', `oci-archive:${archive}:latest`]);
      assert.equal(back.code, 0, back.stderr);

      const cat = await gantry(['--dir', dir, 'image', 'cat-manifest', id]);
      assert.equal(JSON.parse(cat.stdout).schemaVersion, 2);

      const rm = await gantry(['--dir', dir, 'image', 'rm', id, back.stdout.trim()]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal(blobCount(dir), 0);
      const rmAgain = await gantry(['--dir', dir, 'image', 'rm', id]);
      assert.equal(rmAgain.code, 3);
    } finally {
      cleanup();
    }
  });

  test('verify reports a corrupted blob and gc removes images past the grace period', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const id = (await gantry(['--dir', dir, 'fetch', `oci:${await fixture('busybox')}:latest`])).stdout.trim();
      const inspect = JSON.parse((await gantry(['--dir', dir, 'image', 'inspect', id])).stdout) as { layers: { digest: string }[] };
      const blob = path.join(dir, 'store', 'blobs', 'sha256', inspect.layers[0]!.digest.slice(7));
      const fd = fs.openSync(blob, 'r+');
      fs.writeSync(fd, Buffer.from('corrupt'), 0, 7, 100);
      fs.closeSync(fd);
      const v = await gantry(['--dir', dir, 'image', 'verify']);
      assert.equal(v.code, 11, v.stdout + v.stderr);
      assert.match(v.stdout, new RegExp(`corrupt: ${inspect.layers[0]!.digest}`));

      const keep = await gantry(['--dir', dir, 'image', 'gc']);
      assert.equal(keep.code, 0, keep.stderr);
      assert.equal((JSON.parse((await gantry(['--dir', dir, 'image', 'list', '--format', 'json'])).stdout) as unknown[]).length, 1);
      const gc = await gantry(['--dir', dir, 'image', 'gc', '--grace-period=0']);
      assert.equal(gc.code, 0, gc.stderr);
      assert.equal(blobCount(dir), 0);
      assert.deepEqual(fs.readdirSync(path.join(dir, 'store', 'snapshots')), []);
    } finally {
      cleanup();
    }
  });

  test('bad arguments are usage errors', async () => {
    const { dir, cleanup } = tempDir();
    try {
      assert.equal((await gantry(['--dir', dir, 'fetch'])).code, 2);
      assert.equal((await gantry(['--dir', dir, 'nosuch'])).code, 2);
      assert.equal((await gantry(['--dir', dir, '--insecure-options=bogus', 'fetch', 'x'])).code, 2);
      assert.equal((await gantry(['--dir', dir, 'fetch', '--platform', 'linux', 'x'])).code, 2);
      const json = await gantry(['--dir', dir, '--format', 'json', 'image', 'rm', 'nothing']);
      assert.equal(json.code, 3);
      assert.equal(JSON.parse(json.stderr.trim().split('\n').pop()!).error.code, 'IMAGE_NOT_FOUND');
      // An image verify does not know is an error, not "0 blobs checked".
      const verify = await gantry(['--dir', dir, 'image', 'verify', 'nothing']);
      assert.equal(verify.code, 3, verify.stderr);
      assert.match(verify.stderr, /no image "nothing" in the store/);
    } finally {
      cleanup();
    }
  });
});
