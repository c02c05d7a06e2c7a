/**
 * Layer extraction, snapshots and rendering against real tarballs, including
 * hostile ones built here with tar-stream's packer. Every hostile case must
 * fail with the right code, leave no snapshot and no temp dir, and touch
 * nothing outside the store.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { isGantryError, type ErrorCode } from '../src/errors.js';
import { isCode } from './lib/errors.js';
import { MEDIA_TYPES } from '../src/image/model.js';
import { ContentStore } from '../src/store/content.js';
import { OPAQUE_XATTR } from '../src/store/extract.js';
import { renderSnapshots } from '../src/store/render.js';
import { SnapshotStore } from '../src/store/snapshots.js';
import { lgetxattr, llistxattr, lsetxattr, mount, MS_RDONLY, umount2, MNT_DETACH } from '../src/sys/libc.js';

interface Entry {
  name: string;
  type?: tar.Header['type'];
  body?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  mtime?: Date;
  pax?: Record<string, string>;
}

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const { body, ...header } = e;
    await new Promise<void>((resolve, reject) => {
      pack.entry({ mtime: new Date(1_600_000_000_000), ...header } as Partial<tar.Header> & { name: string }, body ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let tmp: string;
let storeRoot: string;
let outside: string;
let content: ContentStore;
let snaps: SnapshotStore;

before(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'gantry-extract-'));
  storeRoot = path.join(tmp, 'state', 'store');
  outside = path.join(tmp, 'outside');
  await fsp.mkdir(outside, { recursive: true });
  await fsp.writeFile(path.join(outside, 'secret'), 'do not touch');
  content = new ContentStore(storeRoot);
  snaps = new SnapshotStore(storeRoot);
});

after(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function layerFrom(tarBytes: Buffer, compression: 'none' | 'gzip' | 'zstd' = 'none') {
  let blob = tarBytes;
  let mediaType: string = MEDIA_TYPES.ociLayer;
  if (compression === 'gzip') {
    blob = zlib.gzipSync(tarBytes);
    mediaType = MEDIA_TYPES.ociLayerGzip;
  } else if (compression === 'zstd') {
    const r = spawnSync('zstd', ['-q', '-c'], { input: tarBytes, maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, String(r.stderr));
    blob = r.stdout;
    mediaType = MEDIA_TYPES.ociLayerZstd;
  }
  const digest = sha256(blob);
  const blobPath = await content.putBytes({ digest, size: blob.length }, blob);
  return { layer: { digest, mediaType, compression }, blobPath, diffId: sha256(tarBytes) };
}

async function unpackEntries(entries: Entry[], parent?: string) {
  const t = await tarOf(entries);
  const { layer, blobPath, diffId } = await layerFrom(t);
  const res = await snaps.unpack(layer, blobPath, parent, diffId);
  return { ...res, fs: snaps.fsPath(res.chainId) };
}

/** Asserts the unpack fails with `code` and leaves no snapshot, no temp dir, nothing outside. */
async function expectRejected(blob: { layer: { digest: string; mediaType: string; compression: 'none' | 'gzip' | 'zstd' }; blobPath: string }, code: ErrorCode, pattern?: RegExp, expectedDiffId?: string) {
  const before = await snaps.list();
  await assert.rejects(snaps.unpack(blob.layer, blob.blobPath, undefined, expectedDiffId), isCode(code, pattern));
  assert.deepEqual(await snaps.list(), before, 'no snapshot may appear');
  assert.deepEqual(await fsp.readdir(path.join(storeRoot, 'tmp')), [], 'temp dir must be removed');
  assert.deepEqual((await fsp.readdir(outside)).sort(), ['secret'], 'nothing may appear outside');
  assert.equal(await fsp.readFile(path.join(outside, 'secret'), 'utf8'), 'do not touch');
  assert.deepEqual((await fsp.readdir(tmp)).sort(), ['outside', 'state']);
}

async function expectHostile(entries: Entry[], code: ErrorCode, pattern?: RegExp) {
  const t = await tarOf(entries);
  await expectRejected(await layerFrom(t), code, pattern);
}

describe('unpack', () => {
  it('extracts types, owners, modes, times and xattrs, and computes diffId and chainId', async () => {
    const mtime = new Date(1_500_000_000_000);
    const t = await tarOf([
      { name: 'bin/', type: 'directory', mode: 0o755, mtime },
      { name: 'bin/su', body: 'suid', mode: 0o4755, uid: 0, gid: 0, mtime },
      { name: 'home/user/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000, mtime },
      { name: 'home/user/file', body: 'hello', mode: 0o640, uid: 1000, gid: 1001, mtime },
      { name: 'home/user/link', type: 'symlink', linkname: '/etc/passwd', uid: 1000, gid: 1000 },
      { name: 'home/user/hard', type: 'link', linkname: 'home/user/file' },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 },
      { name: 'run/fifo', type: 'fifo', mode: 0o620 },
      { name: 'x/attr', body: 'x', pax: { 'SCHILY.xattr.user.note': 'hi', 'SCHILY.xattr.trusted.overlay.redirect': '/etc' } },
      { name: 'long/' + 'd'.repeat(150) + '/file', body: 'long name via pax' },
    ]);
    const blob = await layerFrom(t, 'gzip');
    let progressed = 0;
    const res = await snaps.unpack(blob.layer, blob.blobPath, undefined, undefined, (n) => (progressed += n));
    assert.equal(res.diffId, blob.diffId);
    assert.equal(res.chainId, blob.diffId, 'a bottom layer\'s chainID is its diffID');
    assert.equal(progressed, (await fsp.stat(blob.blobPath)).size);
    const root = snaps.fsPath(res.chainId);
    const su = await fsp.stat(path.join(root, 'bin/su'));
    assert.equal(su.mode & 0o7777, 0o4755);
    const f = await fsp.stat(path.join(root, 'home/user/file'));
    assert.equal(f.mode & 0o7777, 0o640);
    assert.equal(f.uid, 1000);
    assert.equal(f.gid, 1001);
    assert.equal(Math.round(f.mtimeMs), mtime.getTime());
    assert.equal(f.nlink, 2);
    assert.equal((await fsp.stat(path.join(root, 'home/user/hard'))).ino, f.ino);
    const d = await fsp.stat(path.join(root, 'home/user'));
    assert.equal(d.mode & 0o7777, 0o700);
    assert.equal(Math.round(d.mtimeMs), mtime.getTime(), 'directory mtime survives its children');
    assert.equal(await fsp.readlink(path.join(root, 'home/user/link')), '/etc/passwd');
    assert.equal((await fsp.lstat(path.join(root, 'home/user/link'))).uid, 1000);
    const nul = await fsp.lstat(path.join(root, 'dev/null'));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, (1 << 8) | 3);
    assert.ok((await fsp.lstat(path.join(root, 'dev/sda'))).isBlockDevice());
    assert.ok((await fsp.lstat(path.join(root, 'run/fifo'))).isFIFO());
    assert.equal(lgetxattr(path.join(root, 'x/attr'), 'user.note')?.toString(), 'hi');
    assert.equal(lgetxattr(path.join(root, 'x/attr'), 'trusted.overlay.redirect'), undefined, 'the archive may not steer overlay');
    assert.equal(await fsp.readFile(path.join(root, 'long', 'd'.repeat(150), 'file'), 'utf8'), 'long name via pax');
    const meta = JSON.parse(await fsp.readFile(path.join(path.dirname(root), 'meta.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(meta.diffId, blob.diffId);
    assert.equal(meta.digest, blob.layer.digest);
    assert.equal(res.unpackedSize, 4 + 5 + 1 + 'long name via pax'.length);
    assert.ok(await snaps.has(res.chainId));
    assert.deepEqual(await fsp.readdir(path.join(storeRoot, 'tmp')), []);

    // Same layer again, with the diffId known: served from the snapshot.
    const again = await snaps.unpack(blob.layer, blob.blobPath, undefined, blob.diffId);
    assert.deepEqual(again, res);
  });

  it('keeps binary xattrs from GNU tar (security.capability, user.*)', async () => {
    const src = path.join(tmp, 'xsrc');
    await fsp.mkdir(src);
    try {
      await fsp.writeFile(path.join(src, 'ping'), 'bin');
      // VFS_CAP_REVISION_2 | effective; permitted = CAP_NET_RAW | CAP_SETFCAP (bit 31: a byte >= 0x80).
      const cap = Buffer.alloc(20);
      cap.writeUInt32LE(0x02000001, 0);
      cap.writeUInt32LE(((1 << 13) | 0x80000000) >>> 0, 4);
      lsetxattr(path.join(src, 'ping'), 'security.capability', cap);
      const bin = Buffer.from([0xff, 0x00, 0x80, 0x41]);
      lsetxattr(path.join(src, 'ping'), 'user.bin', bin);
      const r = spawnSync('tar', ['--xattrs', '--xattrs-include=*', '-C', src, '-cf', '-', '.'], { maxBuffer: 16 << 20 });
      assert.equal(r.status, 0, String(r.stderr));
      const blob = await layerFrom(r.stdout);
      const res = await snaps.unpack(blob.layer, blob.blobPath, undefined, blob.diffId);
      const ping = path.join(snaps.fsPath(res.chainId), 'ping');
      assert.deepEqual(lgetxattr(ping, 'user.bin'), bin);
      assert.deepEqual(lgetxattr(ping, 'security.capability'), cap);
    } finally {
      await fsp.rm(src, { recursive: true, force: true });
    }
  });

  it('gives the same diffId for none, gzip and zstd and chains chainIds', async () => {
    const t = await tarOf([{ name: 'etc/os-release', body: 'ID=test\n' }, { name: 'etc/hostname', body: 'x\n' }]);
    const results = [];
    for (const c of ['none', 'gzip', 'zstd'] as const) {
      const blob = await layerFrom(t, c);
      results.push(await snaps.unpack(blob.layer, blob.blobPath, 'sha256:' + 'a'.repeat(64)));
    }
    assert.equal(new Set(results.map((r) => r.diffId)).size, 1);
    assert.equal(results[0].diffId, sha256(t));
    const expected = 'sha256:' + createHash('sha256').update(`sha256:${'a'.repeat(64)} ${sha256(t)}`).digest('hex');
    assert.equal(results[0].chainId, expected);
    assert.equal(SnapshotStore.chainId('sha256:' + 'a'.repeat(64), sha256(t)), expected);
  });

  it('converts whiteouts and opaque markers to the overlay form', async () => {
    const res = await unpackEntries([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/.wh.passwd', body: '' },
      { name: 'opt/', type: 'directory' },
      { name: 'opt/.wh..wh..opq', body: '' },
      { name: 'opt/kept', body: 'k' },
      { name: 'var/.wh..wh.plnk', body: '' },
      { name: 'gone/.wh.sub', body: '' },
      { name: '.wh.recreated', body: '' },
      { name: 'recreated/', type: 'directory' },
      { name: 'recreated/new', body: 'n' },
    ]);
    const wh = await fsp.lstat(path.join(res.fs, 'etc/passwd'));
    assert.ok(wh.isCharacterDevice());
    assert.equal(wh.rdev, 0);
    assert.equal(lgetxattr(path.join(res.fs, 'opt'), OPAQUE_XATTR)?.toString(), 'y');
    assert.equal(lgetxattr(path.join(res.fs, 'etc'), OPAQUE_XATTR), undefined);
    assert.deepEqual(await fsp.readdir(path.join(res.fs, 'opt')), ['kept']);
    assert.deepEqual(await fsp.readdir(path.join(res.fs, 'var')), [], 'other .wh..wh. names are ignored');
    assert.ok((await fsp.lstat(path.join(res.fs, 'gone/sub'))).isCharacterDevice());
    assert.equal(lgetxattr(path.join(res.fs, 'recreated'), OPAQUE_XATTR)?.toString(), 'y', 'deleted then recreated = opaque');
  });

  it('lets a later entry replace an earlier one (file over dir and back, file over symlink)', async () => {
    const res = await unpackEntries([
      { name: 'd/', type: 'directory' },
      { name: 'd/old', body: 'old' },
      { name: 'd', body: 'now a file' },
      { name: 'd/', type: 'directory' },
      { name: 'd/new', body: 'new' },
      { name: 's', type: 'symlink', linkname: path.join(outside, 'secret') },
      { name: 's', body: 'replaced, not followed' },
      { name: 'l', type: 'symlink', linkname: outside },
      { name: 'l/', type: 'directory' },
      { name: 'l/inside', body: 'in the layer' },
    ]);
    assert.deepEqual(await fsp.readdir(path.join(res.fs, 'd')), ['new']);
    assert.equal(await fsp.readFile(path.join(res.fs, 's'), 'utf8'), 'replaced, not followed');
    assert.ok((await fsp.lstat(path.join(res.fs, 'l'))).isDirectory());
    assert.deepEqual((await fsp.readdir(outside)).sort(), ['secret']);
    assert.equal(await fsp.readFile(path.join(outside, 'secret'), 'utf8'), 'do not touch');
  });

  it('links a symlink itself when a hardlink names one', async () => {
    const res = await unpackEntries([
      { name: 'sym', type: 'symlink', linkname: path.join(outside, 'secret') },
      { name: 'hard', type: 'link', linkname: 'sym' },
    ]);
    const a = await fsp.lstat(path.join(res.fs, 'sym'));
    const b = await fsp.lstat(path.join(res.fs, 'hard'));
    assert.ok(b.isSymbolicLink());
    assert.equal(a.ino, b.ino);
    assert.equal((await fsp.stat(path.join(outside, 'secret'))).nlink, 1);
  });

  it('extracts only rootfs/ of an ACI, without whiteout conversion', async () => {
    const t = await tarOf([
      { name: 'manifest', body: '{"acKind":"ImageManifest"}' },
      { name: 'rootfs/', type: 'directory', mode: 0o755 },
      { name: 'rootfs/bin/app', body: 'app', mode: 0o755 },
      { name: 'rootfs/bin/app2', type: 'link', linkname: 'rootfs/bin/app' },
      { name: 'rootfs/.wh.file', body: 'just a name in appc' },
      { name: 'other/thing', body: 'not part of the tree' },
    ]);
    const blob = await layerFrom(t);
    const res = await snaps.unpack({ ...blob.layer, mediaType: MEDIA_TYPES.aci, rootPrefix: 'rootfs/' }, blob.blobPath, undefined);
    const root = snaps.fsPath(res.chainId);
    assert.deepEqual((await fsp.readdir(root)).sort(), ['.wh.file', 'bin']);
    assert.equal((await fsp.stat(path.join(root, 'bin/app2'))).ino, (await fsp.stat(path.join(root, 'bin/app'))).ino);

    const hostile = await tarOf([{ name: 'manifest', body: '{}' }, { name: 'rootfs/m', type: 'link', linkname: 'manifest' }]);
    const hb = await layerFrom(hostile);
    await expectRejected({ layer: { ...hb.layer, mediaType: MEDIA_TYPES.aci, rootPrefix: 'rootfs/' } as typeof hb.layer, blobPath: hb.blobPath }, 'LAYER_UNSAFE', /outside rootfs/);
  });

  it('survives two concurrent unpacks of the same layer (one snapshot)', async () => {
    const t = await tarOf([{ name: 'race/a', body: 'a' }, { name: 'race/b', body: 'b' }]);
    const blob = await layerFrom(t);
    const [a, b] = await Promise.all([
      snaps.unpack(blob.layer, blob.blobPath, undefined),
      snaps.unpack(blob.layer, blob.blobPath, undefined),
    ]);
    assert.deepEqual(a, b);
    assert.deepEqual(await fsp.readdir(path.join(storeRoot, 'tmp')), []);
    assert.deepEqual((await fsp.readdir(snaps.fsPath(a.chainId))).sort(), ['race']);
    await snaps.remove(a.chainId);
    assert.equal(await snaps.has(a.chainId), false);
    assert.ok(!(await snaps.list()).includes(a.chainId));
  });
});

describe('hostile layers', () => {
  it('rejects ".." components', async () => {
    await expectHostile([{ name: '../evil', body: 'x' }], 'LAYER_UNSAFE', /"\.\.\/evil" escapes the layer root/);
    await expectHostile([{ name: 'a/', type: 'directory' }, { name: 'a/../../outside/evil', body: 'x' }], 'LAYER_UNSAFE', /escapes/);
  });

  it('rejects ".." hidden in a PAX long name', async () => {
    await expectHostile([{ name: 'a'.repeat(120) + '/../../../../outside/evil', body: 'x' }], 'LAYER_UNSAFE', /escapes/);
  });

  it('rejects absolute paths', async () => {
    await expectHostile([{ name: path.join(outside, 'evil'), body: 'x' }], 'LAYER_UNSAFE', /absolute path/);
  });

  it('never writes through a symlink from the archive', async () => {
    await expectHostile(
      [{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/evil', body: 'x' }],
      'LAYER_UNSAFE', /"link\/evil" goes through "link", a symlink/,
    );
    await expectHostile(
      [{ name: 'up', type: 'symlink', linkname: '../../../..' }, { name: 'up/tmp/evil/', type: 'directory' }],
      'LAYER_UNSAFE', /a symlink/,
    );
    await expectHostile([{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/.wh.secret', body: '' }], 'LAYER_UNSAFE');
    await expectHostile([{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/.wh..wh..opq', body: '' }], 'LAYER_UNSAFE');
  });

  it('rejects hardlinks out of the layer', async () => {
    await expectHostile([{ name: 'h', type: 'link', linkname: '../outside/secret' }], 'LAYER_UNSAFE', /outside the layer root/);
    await expectHostile([{ name: 'h', type: 'link', linkname: path.join(outside, 'secret') }], 'LAYER_UNSAFE', /absolute/);
    await expectHostile(
      [{ name: 'l', type: 'symlink', linkname: outside }, { name: 'h', type: 'link', linkname: 'l/secret' }],
      'LAYER_UNSAFE', /goes through "l", a symlink/,
    );
    await expectHostile([{ name: 'h', type: 'link', linkname: 'not/there' }], 'ARCHIVE_INVALID');
    await expectHostile([{ name: 'dir/', type: 'directory' }, { name: 'h', type: 'link', linkname: 'dir' }], 'LAYER_UNSAFE', /directory/);
  });

  it('rejects a path through a non-directory and whiteouts of "." or ".."', async () => {
    await expectHostile([{ name: 'f', body: 'x' }, { name: 'f/g', body: 'y' }], 'LAYER_UNSAFE', /not a directory/);
    await expectHostile([{ name: '.wh..', body: '' }], 'LAYER_UNSAFE');
  });

  it('rejects an entry whose size claim exceeds the data', async () => {
    const t = await tarOf([{ name: 'big', body: Buffer.alloc(4096, 1) }]);
    // Header + 1000 bytes of a body that claims 4096.
    await expectRejected(await layerFrom(t.subarray(0, 512 + 1000)), 'ARCHIVE_INVALID', /truncated/);
    const gz = await layerFrom(t.subarray(0, 512 + 1000), 'gzip');
    await expectRejected(gz, 'ARCHIVE_INVALID', /truncated/);
  });

  it('rejects corrupt and truncated gzip, corrupt zstd, and non-tar data', async () => {
    const t = await tarOf([{ name: 'f', body: Buffer.alloc(100_000, 7) }]);
    const gz = zlib.gzipSync(t);
    const corrupt = Buffer.from(gz);
    corrupt.fill(0x55, 20, 60);
    for (const bytes of [corrupt, gz.subarray(0, gz.length - 30)]) {
      const digest = sha256(bytes);
      const blobPath = await content.putBytes({ digest }, bytes);
      await expectRejected({ layer: { digest, mediaType: MEDIA_TYPES.ociLayerGzip, compression: 'gzip' }, blobPath }, 'ARCHIVE_INVALID');
    }
    const zst = (await layerFrom(t, 'zstd'));
    const zbytes = Buffer.from(await fsp.readFile(zst.blobPath));
    zbytes.fill(0xaa, 8, 40);
    const zd = sha256(zbytes);
    await expectRejected({ layer: { digest: zd, mediaType: MEDIA_TYPES.ociLayerZstd, compression: 'zstd' }, blobPath: await content.putBytes({ digest: zd }, zbytes) }, 'ARCHIVE_INVALID');
    const garbage = Buffer.alloc(2048, 0x41);
    const gd = sha256(garbage);
    await expectRejected({ layer: { digest: gd, mediaType: MEDIA_TYPES.ociLayer, compression: 'none' }, blobPath: await content.putBytes({ digest: gd }, garbage) }, 'ARCHIVE_INVALID');
  });

  it('rejects entry types it does not know instead of guessing', async () => {
    const t = Buffer.from(await tarOf([{ name: 'sparse', body: 'data' }]));
    t[156] = 'S'.charCodeAt(0); // GNU sparse file
    t.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += t[i];
    t.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    await expectRejected(await layerFrom(t), 'ARCHIVE_INVALID', /"sparse" has an unsupported type/);
  });

  it('reports a full disk as NO_SPACE and leaves no temp dir', async () => {
    const t = await tarOf([{ name: 'big', body: Buffer.alloc(1024 * 1024, 2) }]);
    const blob = await layerFrom(t, 'gzip');
    const small = path.join(tmp, 'small');
    await fsp.mkdir(small);
    mount('tmpfs', small, 'tmpfs', 0, 'size=256k');
    try {
      const smallSnaps = new SnapshotStore(path.join(small, 'store'));
      await assert.rejects(smallSnaps.unpack(blob.layer, blob.blobPath, undefined, blob.diffId), (err: unknown) => isGantryError(err, 'NO_SPACE'));
      assert.deepEqual(await fsp.readdir(path.join(small, 'store', 'tmp')), []);
      assert.deepEqual(await smallSnaps.list(), []);
    } finally {
      umount2(small, MNT_DETACH);
      await fsp.rmdir(small);
    }
  });

  it('rejects a diffId mismatch and a blob that does not match its digest', async () => {
    const t = await tarOf([{ name: 'f', body: 'x' }]);
    const blob = await layerFrom(t);
    await expectRejected(blob, 'DIGEST_MISMATCH', /image config says/, 'sha256:' + 'b'.repeat(64));
    const liar = { ...blob, layer: { ...blob.layer, digest: 'sha256:' + 'c'.repeat(64) } };
    await expectRejected(liar, 'DIGEST_MISMATCH', /blob on disk/);
  });
});

/** Walks a tree into comparable records (what an overlay mount shows). */
async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    const abs = path.join(root, rel);
    const st = await fsp.lstat(abs);
    const xattrs = llistxattr(abs).filter((n) => !n.startsWith('trusted.overlay.')).sort()
      .map((n) => `${n}=${lgetxattr(abs, n)?.toString('hex')}`).join(',');
    let kind = 'other';
    let extra = '';
    if (st.isDirectory()) kind = 'dir';
    else if (st.isFile()) {
      kind = 'file';
      extra = createHash('sha256').update(await fsp.readFile(abs)).digest('hex').slice(0, 12);
    } else if (st.isSymbolicLink()) {
      kind = 'symlink';
      extra = await fsp.readlink(abs);
    } else if (st.isCharacterDevice()) kind = `chr:${st.rdev}`;
    else if (st.isFIFO()) kind = 'fifo';
    const mtime = st.isDirectory() ? '' : String(Math.round(st.mtimeMs));
    out[rel || '.'] = `${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${extra} ${mtime} [${xattrs}]`;
    if (st.isDirectory()) for (const n of (await fsp.readdir(abs)).sort()) await walk(rel ? `${rel}/${n}` : n);
  }
  await walk('');
  return out;
}

describe('renderSnapshots', () => {
  it('gives what an overlay mount of the snapshots shows', async () => {
    const lower = await unpackEntries([
      { name: 'a/', type: 'directory', mode: 0o755 },
      { name: 'a/x', body: 'x1' },
      { name: 'a/y', body: 'y1', uid: 5, gid: 6 },
      { name: 'b/', type: 'directory' },
      { name: 'b/1', body: 'b1' },
      { name: 'c', body: 'c-file' },
      { name: 's', type: 'symlink', linkname: 'c' },
      { name: 'o/', type: 'directory' },
      { name: 'o/old', body: 'old' },
      { name: 'o/sub/deep', body: 'deep' },
      { name: 'h1', body: 'linked', mode: 0o4755 },
      { name: 'h2', type: 'link', linkname: 'h1' },
      { name: 'p', type: 'fifo', mode: 0o600 },
      { name: 'x', body: 'xa', pax: { 'SCHILY.xattr.user.k': 'v' } },
      { name: 'dl', type: 'symlink', linkname: '/etc' },
    ]);
    const upper = await unpackEntries([
      { name: 'a/', type: 'directory', mode: 0o750, uid: 7 },
      { name: 'a/.wh.x', body: '' },
      { name: 'a/y', body: 'y2', mode: 0o600 },
      { name: 'b', body: 'b is a file now' },
      { name: 'c/', type: 'directory' },
      { name: 'c/z', body: 'z' },
      { name: 'o/', type: 'directory' },
      { name: 'o/.wh..wh..opq', body: '' },
      { name: 'o/new', body: 'new' },
      { name: 'dl/', type: 'directory' },
      { name: 'dl/f', body: 'in a real dir' },
      { name: '.wh.p', body: '' },
      { name: 'n/', type: 'directory' },
      { name: 'n/n', body: 'n' },
    ], lower.chainId);

    const target = path.join(tmp, 'rendered');
    await renderSnapshots([lower.fs, upper.fs], target);
    const rendered = await describeTree(target);
    assert.equal(rendered['a/x'], undefined);
    assert.match(rendered['a/y'], /^file 600 0:0/);
    assert.match(rendered['a'], /^dir 750 7:0/);
    assert.match(rendered['b'], /^file /);
    assert.equal(rendered['o/old'], undefined);
    assert.equal(rendered['o/sub'], undefined);
    assert.ok(rendered['o/new']);
    assert.equal(rendered['p'], undefined);
    assert.match(rendered['h1'], /^file 4755/);
    assert.equal((await fsp.stat(path.join(target, 'h1'))).ino, (await fsp.stat(path.join(target, 'h2'))).ino);
    assert.match(rendered['x'], /user\.k=76/);
    assert.match(rendered['dl'], /^dir /);
    assert.ok(!fs.existsSync('/etc/f'));
    await assert.rejects(renderSnapshots([lower.fs], target), /not empty/);

    // The reference: the kernel's own overlay of the same snapshot dirs.
    const mnt = path.join(tmp, 'mnt');
    await fsp.mkdir(mnt);
    let mounted = false;
    try {
      mount('overlay', mnt, 'overlay', MS_RDONLY, `lowerdir=${upper.fs}:${lower.fs}`);
      mounted = true;
      const overlay = await describeTree(mnt);
      delete overlay['.'];
      delete rendered['.'];
      assert.deepEqual(rendered, overlay);
    } finally {
      if (mounted) umount2(mnt, MNT_DETACH);
    }
  });
});
