/**
 * Content store and file locks: verification on ingest (digest, short and
 * long size), resume after a dropped stream, two processes ingesting the
 * same blob, hostile digests, and the lock semantics the store relies on.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { GantryError } from '../src/errors.js';
import { ContentStore } from '../src/store/content.js';
import { FileLock } from '../src/store/lock.js';
import { isCode } from './lib/errors.js';
import { mount, umount2, MNT_DETACH } from '../src/sys/libc.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let tmp: string;
let root: string;
let store: ContentStore;

before(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'gantry-content-'));
  root = path.join(tmp, 'state', 'store');
  store = new ContentStore(root);
});

after(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function ingestLeftovers(): Promise<string[]> {
  return fsp.readdir(path.join(root, 'ingest')).catch(() => []);
}

function chunksOf(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

describe('ContentStore', () => {
  it('stores, lists, reads, verifies, sizes and removes blobs', async () => {
    const data = Buffer.from('{"hello":"world"}');
    const digest = sha256(data);
    assert.equal(await store.has(digest), false);
    const p = await store.putBytes({ digest, size: data.length }, data);
    assert.equal(p, path.join(root, 'blobs', 'sha256', digest.slice(7)));
    assert.equal(await store.has(digest), true);
    assert.deepEqual(await store.readBytes(digest), data);
    assert.equal(await store.size(digest), data.length);
    assert.equal(await store.verify(digest), true);
    assert.ok((await store.list()).includes(digest));
    // Stored once: a second put is a no-op.
    await store.putBytes({ digest }, data);
    assert.equal((await store.list()).filter((d) => d === digest).length, 1);

    // Tampering on disk is noticed.
    await fsp.writeFile(p, 'tampered');
    assert.equal(await store.verify(digest), false);
    await assert.rejects(store.readBytes(digest), isCode('STORE_CORRUPT'));

    await store.remove(digest);
    assert.equal(await store.has(digest), false);
    assert.equal(await store.verify(digest), false);
    await assert.rejects(store.readBytes(digest), isCode('STORE_CORRUPT', /missing/));
    await store.remove(digest); // idempotent
  });

  it('accepts sha512 and rejects malformed digests before touching a path', async () => {
    const data = Buffer.from('sha512 content');
    const d512 = `sha512:${createHash('sha512').update(data).digest('hex')}`;
    await store.putBytes({ digest: d512 }, data);
    assert.ok(await store.verify(d512));
    for (const bad of ['sha256:../../x', 'sha256:' + '../'.repeat(21) + 'x', '../../etc/passwd', 'sha256:' + 'A'.repeat(64),
      'sha256:' + 'a'.repeat(63), 'md5:' + 'a'.repeat(32), 'sha256:' + 'a'.repeat(64) + '/', 'sha256:' + 'a'.repeat(64) + '\0', '']) {
      assert.throws(() => store.blobPath(bad), isCode('MANIFEST_INVALID'), bad);
      await assert.rejects(store.has(bad), isCode('MANIFEST_INVALID'));
      await assert.rejects(store.ingest({ digest: bad, size: 1 }, async () => Readable.from([Buffer.from('x')])), isCode('MANIFEST_INVALID'));
      await assert.rejects(store.putBytes({ digest: bad }, Buffer.from('x')), isCode('MANIFEST_INVALID'));
      await assert.rejects(store.remove(bad), isCode('MANIFEST_INVALID'));
    }
    assert.deepEqual((await fsp.readdir(tmp)).sort(), ['state']);
  });

  it('ingests a stream, reporting progress', async () => {
    const data = Buffer.alloc(300_000, 3);
    const digest = sha256(data);
    let bytes = 0;
    const offsets: number[] = [];
    const p = await store.ingest({ digest, size: data.length }, async (offset) => {
      offsets.push(offset);
      return Readable.from(chunksOf(data, 65536));
    }, { onBytes: (n) => (bytes += n) });
    assert.equal(bytes, data.length);
    assert.deepEqual(offsets, [0]);
    assert.deepEqual(await fsp.readFile(p), data);
    assert.deepEqual(await ingestLeftovers(), []);
    // Present now: not opened again.
    await store.ingest({ digest, size: data.length }, async () => assert.fail('must not open a present blob'));
  });

  it('rejects a digest mismatch and leaves nothing behind', async () => {
    const data = Buffer.from('actual content');
    const claimed = sha256(Buffer.from('other content'));
    await assert.rejects(
      store.ingest({ digest: claimed, size: data.length }, async () => Readable.from([data]), { description: 'docker://127.0.0.1:5000/x:1' }),
      isCode('DIGEST_MISMATCH', /from docker:\/\/127\.0\.0\.1:5000\/x:1/),
    );
    assert.equal(await store.has(claimed), false);
    assert.deepEqual(await ingestLeftovers(), []);
    await assert.rejects(store.putBytes({ digest: claimed }, data), isCode('DIGEST_MISMATCH'));
    await assert.rejects(store.putBytes({ digest: sha256(data), size: 3 }, data), isCode('SIZE_MISMATCH'));
  });

  it('rejects short and long streams with SIZE_MISMATCH', async () => {
    const data = Buffer.alloc(1000, 9);
    const digest = sha256(data);
    await assert.rejects(
      store.ingest({ digest, size: data.length }, async () => Readable.from([data.subarray(0, 600)])),
      isCode('SIZE_MISMATCH', /expected 1000 bytes, got 600/),
    );
    // A stream that would never end: the store stops at the first byte too many.
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 4096;
        this.push(produced > 100 * 4096 ? null : Buffer.alloc(4096, 1));
      },
    });
    await assert.rejects(store.ingest({ digest, size: data.length }, async () => endless), isCode('SIZE_MISMATCH', /expected 1000 bytes, got at least 4096/));
    assert.ok(produced < 100 * 4096, 'stopped reading early');
    assert.equal(await store.has(digest), false);
    assert.deepEqual(await ingestLeftovers(), []);
  });

  it('resumes at the right offset after a stream breaks, keeping the hash state', async () => {
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const digest = sha256(data);
    const offsets: number[] = [];
    const p = await store.ingest({ digest, size: data.length }, async (offset) => {
      offsets.push(offset);
      const breakAfter = offsets.length < 3 ? 3 : Infinity; // two broken transfers, then a good one
      let sent = 0;
      const chunks = chunksOf(data.subarray(offset), 10_000);
      return new Readable({
        read() {
          if (sent === breakAfter) {
            this.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
            return;
          }
          this.push(chunks[sent++] ?? null);
        },
      });
    }, { maxAttempts: 3 });
    assert.deepEqual(offsets, [0, 30_000, 60_000]);
    assert.deepEqual(await fsp.readFile(p), data);
  });

  it('gives up with DOWNLOAD_INTERRUPTED when attempts run out, and does not retry typed errors', async () => {
    const data = Buffer.alloc(5000, 5);
    const digest = sha256(data);
    let opens = 0;
    await assert.rejects(
      store.ingest({ digest, size: data.length }, async () => {
        opens++;
        return new Readable({ read() { this.destroy(new Error('connection reset')); } });
      }, { maxAttempts: 2 }),
      isCode('DOWNLOAD_INTERRUPTED', /2 times.*connection reset/),
    );
    assert.equal(opens, 2);
    opens = 0;
    await assert.rejects(
      store.ingest({ digest, size: data.length }, async () => {
        opens++;
        throw new GantryError('UNAUTHORIZED', 'denied');
      }),
      isCode('UNAUTHORIZED'),
    );
    assert.equal(opens, 1);
    assert.deepEqual(await ingestLeftovers(), []);
  });

  it('stops on abort', async () => {
    const data = Buffer.alloc(5000, 6);
    const ac = new AbortController();
    const slow = new Readable({ read() { /* never delivers: only the abort ends it */ } });
    const pending = store.ingest({ digest: sha256(data), size: data.length }, async () => slow, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('user pressed ^C')), 20);
    await assert.rejects(pending, /user pressed/);
    assert.deepEqual(await ingestLeftovers(), []);
  });

  it('reports a full disk as NO_SPACE and cleans up', async () => {
    const small = path.join(tmp, 'small');
    await fsp.mkdir(small);
    mount('tmpfs', small, 'tmpfs', 0, 'size=256k');
    try {
      const smallStore = new ContentStore(path.join(small, 'store'));
      const data = Buffer.alloc(1024 * 1024, 1);
      await assert.rejects(
        smallStore.ingest({ digest: sha256(data), size: data.length }, async () => Readable.from(chunksOf(data, 65536))),
        isCode('NO_SPACE', /blob sha256:/),
      );
      assert.deepEqual(await fsp.readdir(path.join(small, 'store', 'ingest')), []);
      assert.equal(await smallStore.has(sha256(data)), false);
    } finally {
      umount2(small, MNT_DETACH);
    }
  });

  it('stores a blob once when two processes ingest it at the same time', async () => {
    const contentJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'store', 'content.js');
    const script = path.join(tmp, 'child.mjs');
    await fsp.writeFile(script, `
      import { Readable } from 'node:stream';
      import { setTimeout as sleep } from 'node:timers/promises';
      const { ContentStore } = await import(${JSON.stringify(contentJs)});
      const [root, digest, size] = process.argv.slice(2);
      let opens = 0;
      const store = new ContentStore(root);
      await store.ingest({ digest, size: Number(size) }, async () => {
        opens++;
        return Readable.from((async function* () {
          for (let i = 0; i < 20; i++) { await sleep(10); yield Buffer.alloc(Number(size) / 20, 42); }
        })());
      });
      process.stdout.write(JSON.stringify({ opens }));
    `);
    const size = 20 * 1024;
    const digest = sha256(Buffer.alloc(size, 42));
    const run = () => new Promise<{ opens: number }>((resolve, reject) => {
      const child = spawn(process.execPath, [script, root, digest, String(size)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.stderr.on('data', (c: Buffer) => (err += c));
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(JSON.parse(out) as { opens: number });
        else reject(new Error(`child exited ${code}: ${err}`));
      });
    });
    const results = await Promise.all([run(), run()]);
    assert.equal(results[0].opens + results[1].opens, 1, 'exactly one process downloaded');
    assert.ok(await store.verify(digest));
    assert.deepEqual(await ingestLeftovers(), []);
    assert.deepEqual(await fsp.readdir(path.join(tmp, 'state', 'locks')), [], 'per-blob lock files are cleaned up');
  });
});

describe('FileLock', () => {
  it('excludes, shares, times out and survives the file being unlinked by its holder', async () => {
    const lockPath = path.join(tmp, 'locks', 'test.lock');
    const ex = await FileLock.acquire(lockPath, 'exclusive');
    assert.ok(ex);
    assert.equal(await FileLock.acquire(lockPath, 'shared', { wait: false }), undefined);
    assert.equal(await FileLock.acquire(lockPath, 'exclusive', { wait: false }), undefined);
    await assert.rejects(FileLock.acquire(lockPath, 'exclusive', { timeoutMs: 50, what: 'the test thing' }), isCode('STORE_LOCKED', /the test thing/));

    // A waiter that opened the old file must end up holding the new one.
    const waiting = FileLock.acquire(lockPath, 'exclusive', { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 20));
    ex.release({ unlink: true });
    ex.release(); // idempotent
    const next = await waiting;
    assert.ok(next);
    const third = await FileLock.acquire(lockPath, 'exclusive', { wait: false });
    assert.equal(third, undefined, 'the new holder really excludes others');
    next.release();

    const s1 = await FileLock.acquire(lockPath, 'shared');
    const s2 = await FileLock.acquire(lockPath, 'shared', { wait: false });
    assert.ok(s1 && s2);
    assert.equal(await FileLock.acquire(lockPath, 'exclusive', { wait: false }), undefined);
    s1.release();
    s2.release();
    const last = await FileLock.acquire(lockPath, 'exclusive', { wait: false });
    assert.ok(last);
    last.release();
  });
});
