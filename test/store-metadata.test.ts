/**
 * The metadata index: records round-trip, lookups by id, prefix and name,
 * ambiguous prefixes, tags moving between images, the references gc uses,
 * schema versioning, and two connections (as two processes would have).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { isGantryError } from '../src/errors.js';
import { MetadataStore, SCHEMA_VERSION, type ImageRecord } from '../src/store/metadata.js';

const hex = (c: string) => c.repeat(64).slice(0, 64);

function image(id: string, names: string[], layerChar = 'e'): ImageRecord {
  return {
    id: `sha256:${id}`,
    names,
    manifestDigest: `sha256:${id}`,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: `sha256:${hex('c' + id.slice(0, 1))}`,
    indexDigest: `sha256:${hex('d')}`,
    format: 'oci',
    platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
    layers: [
      { digest: `sha256:${hex(layerChar + '1')}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 10, diffId: `sha256:${hex('f1')}`, chainId: `sha256:${hex('f1')}` },
      { digest: `sha256:${hex(layerChar + '2')}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 20, diffId: `sha256:${hex('f2')}`, chainId: `sha256:${hex('9' + layerChar)}` },
    ],
    size: 1234,
    unpackedSize: 5678,
    fetchedAt: '2026-01-02T03:04:05.000Z',
    lastUsedAt: '2026-01-02T03:04:05.000Z',
    labels: { 'org.opencontainers.image.title': 'test' },
    source: 'docker://127.0.0.1:5000/test:1',
  };
}

let tmp: string;
let dbPath: string;
let db: MetadataStore;

before(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'gantry-meta-'));
  dbPath = path.join(tmp, 'meta.db');
  db = MetadataStore.open(dbPath);
});

after(async () => {
  db.close();
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('MetadataStore', () => {
  const a = image('abcdef01' + hex('1').slice(8), ['docker.io/library/busybox:latest']);
  const b = image('abcdef02' + hex('2').slice(8), ['docker.io/library/alpine:3'], 'a');

  it('round-trips an image record', () => {
    db.putImage(a);
    assert.deepEqual(db.getImage(a.id), a);
    const minimal: ImageRecord = { ...image(hex('7'), []), layers: [], labels: {}, platform: { os: 'linux', architecture: 'amd64' } };
    delete minimal.indexDigest;
    db.putImage(minimal);
    assert.deepEqual(db.getImage(minimal.id), minimal);
    db.removeImage(minimal.id);
    assert.equal(db.getImage(minimal.id), undefined);
  });

  it('finds by full id, id prefix (with or without sha256:), and name', () => {
    db.putImage(b);
    assert.equal(db.findImage(a.id)?.id, a.id);
    assert.equal(db.findImage('docker.io/library/busybox:latest')?.id, a.id);
    assert.equal(db.findImage('abcdef01')?.id, a.id);
    assert.equal(db.findImage('sha256:abcdef02')?.id, b.id);
    assert.equal(db.findImage('ABCDEF02')?.id, b.id);
    assert.equal(db.findImage('abcde'), undefined, 'fewer than 6 hex digits is not a prefix');
    assert.equal(db.findImage('sha512:abcdef01'), undefined);
    assert.equal(db.findImage('docker.io/library/nothing:latest'), undefined);
    assert.equal(db.findImage("abcdef' OR 1=1 --"), undefined);
    assert.equal(db.findImage(''), undefined);
  });

  it('reports an ambiguous prefix with the candidates', () => {
    assert.throws(() => db.findImage('abcdef'), (err: unknown) => {
      assert.ok(isGantryError(err, 'AMBIGUOUS_IMAGE'));
      assert.match(err.message, /matches 2 images/);
      assert.match(err.message, /busybox:latest/);
      assert.match(err.message, /alpine:3/);
      return true;
    });
  });

  it('moves a name to the image it is put with, like a tag, and removes names', () => {
    const a2 = image(hex('3'), ['docker.io/library/busybox:latest', 'docker.io/library/busybox:1.36']);
    db.putImage(a2);
    assert.equal(db.findImage('docker.io/library/busybox:latest')?.id, a2.id);
    assert.deepEqual(db.getImage(a.id)?.names, [], 'the old image keeps existing, untagged');
    assert.deepEqual(db.getImage(a2.id)?.names.sort(), ['docker.io/library/busybox:1.36', 'docker.io/library/busybox:latest']);
    // Putting again with one name adds, never drops, names.
    db.putImage({ ...a2, names: ['localhost/mine:1'] });
    assert.equal(db.getImage(a2.id)?.names.length, 3);
    db.removeName('docker.io/library/busybox:1.36');
    assert.deepEqual(db.getImage(a2.id)?.names, ['docker.io/library/busybox:latest', 'localhost/mine:1']);
    assert.equal(db.findImage('docker.io/library/busybox:1.36'), undefined);
  });

  it('lists images and updates last use', () => {
    const ids = db.listImages().map((i) => i.id).sort();
    assert.deepEqual(ids, [a.id, b.id, `sha256:${hex('3')}`].sort());
    const when = new Date('2026-06-01T00:00:00Z');
    db.touch(a.id, when);
    assert.equal(db.getImage(a.id)?.lastUsedAt, when.toISOString());
    const listed = db.listImages().find((i) => i.id === b.id);
    assert.deepEqual(listed, db.getImage(b.id));
    assert.equal(listed?.layers.length, 2);
  });

  it('reports every referenced blob and snapshot, and forgets them with the image', () => {
    const blobs = db.referencedBlobs();
    for (const img of [a, b]) {
      assert.ok(blobs.has(img.manifestDigest));
      assert.ok(blobs.has(img.configDigest));
      assert.ok(blobs.has(img.indexDigest as string));
      for (const l of img.layers) assert.ok(blobs.has(l.digest));
    }
    const snaps = db.referencedSnapshots();
    for (const l of [...a.layers, ...b.layers]) assert.ok(snaps.has(l.chainId));
    db.removeImage(b.id);
    assert.equal(db.findImage('docker.io/library/alpine:3'), undefined, 'names go with the image');
    assert.equal(db.referencedBlobs().has(b.layers[0].digest), false);
    assert.equal(db.referencedSnapshots().has(b.layers[1].chainId), false);
    assert.equal(db.referencedSnapshots().has(b.layers[0].chainId), true, 'still used by another image');
  });

  it('is shared safely by a second connection (another process) in WAL mode', () => {
    const other = MetadataStore.open(dbPath);
    try {
      const c = image(hex('4'), ['example.com/c:1']);
      other.putImage(c);
      assert.equal(db.findImage('example.com/c:1')?.id, c.id);
      const raw = new Database(dbPath, { readonly: true });
      try {
        assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
        assert.equal(raw.pragma('user_version', { simple: true }), SCHEMA_VERSION);
      } finally {
        raw.close();
      }
    } finally {
      other.close();
    }
  });

  it('refuses a database from a newer schema', () => {
    const newer = path.join(tmp, 'newer.db');
    const raw = new Database(newer);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    assert.throws(() => MetadataStore.open(newer), (err: unknown) => isGantryError(err, 'STORE_CORRUPT') && /newer gantry/.test(err.hint ?? ''));
    const garbage = path.join(tmp, 'garbage.db');
    return fsp.writeFile(garbage, 'this is not a database'.repeat(100)).then(() => {
      assert.throws(() => MetadataStore.open(garbage), (err: unknown) => isGantryError(err, 'STORE_CORRUPT'));
    });
  });
});
