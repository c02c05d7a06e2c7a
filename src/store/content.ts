/**
 * The content store: immutable blobs named by their digest, like containerd's.
 *
 * Layout under `<dir>/store`: `blobs/<alg>/<hex>` for committed blobs and
 * `ingest/` for blobs being written. A blob only ever appears under `blobs/`
 * after it was written to a temp file in `ingest/`, checked against the
 * expected size and digest, fsynced and renamed into place, so anything under
 * `blobs/` has been verified once; readers that hand bytes to a parser
 * (`readBytes`) verify again, because the disk is not trusted (`verify`).
 *
 * Concurrency: writers of the same digest serialise on a per-digest flock in
 * `<dir>/locks/`; the second one finds the blob present and returns. Writers
 * of different digests never wait for each other. Removal is a plain unlink:
 * deciding what is unreferenced is the garbage collector's job.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { errnoCode, GantryError, isGantryError, translateFsError } from '../errors.js';
import { DIGEST_ALGORITHMS, digestOf, isValidDigest, parseDigest } from '../image/digest.js';
import type { Digest } from '../image/model.js';
import { FileLock } from './lock.js';


/** How much of a blob ingest gathers before writing, hashing and passing it on. */
const WRITE_BATCH_BYTES = 1 << 20;

export interface IngestOptions {
  /** Called with the number of new bytes each time some are written. */
  onBytes?: (n: number) => void;
  /**
   * Called with each chunk once it is on disk and hashed, in blob order and
   * exactly once per byte even across resumes, so a consumer (the unpacker)
   * can work on the blob while it downloads. Awaited: a slow consumer slows
   * the download instead of buffering it in memory.
   */
  onData?: (chunk: Buffer) => void | Promise<void>;
  /** How many times the stream may be opened in total (default 3). */
  maxAttempts?: number;
  signal?: AbortSignal;
  /** Where the blob comes from, for error messages ("docker://host/repo:tag"). */
  description?: string;
}

export class ContentStore {
  readonly root: string;
  private readonly lockDir: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    // Locks live beside the store (<dir>/locks), where every other gantry lock is.
    this.lockDir = path.join(path.dirname(this.root), 'locks');
  }

  blobPath(digest: Digest): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.root, 'blobs', algorithm, hex);
  }

  async has(digest: Digest): Promise<boolean> {
    try {
      return (await fsp.lstat(this.blobPath(digest))).isFile();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  async ingest(
    expected: { digest: Digest; size: number },
    open: (offset: number) => Promise<Readable>,
    opts: IngestOptions = {},
  ): Promise<string> {
    const { algorithm } = parseDigest(expected.digest);
    const target = this.blobPath(expected.digest);
    if (!Number.isSafeInteger(expected.size) || expected.size < 0) {
      throw new GantryError('MANIFEST_INVALID', `blob ${expected.digest}: invalid size ${String(expected.size)}`, {
        hint: 'the manifest that describes this blob is malformed',
      });
    }
    if (await this.has(expected.digest)) return target;

    const lock = await this.lockDigest(expected.digest);
    try {
      // Whoever held the lock before us may have stored it meanwhile.
      if (await this.has(expected.digest)) return target;
      return await this.writeBlob(expected.digest, target, async (handle) => {
        const hash = createHash(algorithm);
        await this.receive(expected, open, opts, handle, hash);
        const got = `${algorithm}:${hash.digest('hex')}`;
        if (got !== expected.digest) {
          throw new GantryError('DIGEST_MISMATCH', `blob ${expected.digest} from ${opts.description ?? 'the source'}: content has digest ${got}`, {
            hint: 'the source served different content than its manifest describes; retry, and if it persists the image or the registry is corrupt or tampered with',
          });
        }
      });
    } finally {
      lock?.release({ unlink: true });
    }
  }

  async putBytes(expected: { digest: Digest; size?: number }, bytes: Buffer): Promise<string> {
    const { algorithm } = parseDigest(expected.digest);
    const target = this.blobPath(expected.digest);
    if (expected.size !== undefined && expected.size !== bytes.length) {
      throw new GantryError('SIZE_MISMATCH', `blob ${expected.digest}: expected ${expected.size} bytes, got ${bytes.length}`, {
        hint: 'the content does not match its descriptor; the image is corrupt or was tampered with',
      });
    }
    const got = digestOf(bytes, algorithm);
    if (got !== expected.digest) {
      throw new GantryError('DIGEST_MISMATCH', `blob ${expected.digest}: content has digest ${got}`, {
        hint: 'the content does not match its descriptor; the image is corrupt or was tampered with',
      });
    }
    if (await this.has(expected.digest)) return target;
    // No lock needed: identical bytes, and rename(2) replaces atomically.
    return this.writeBlob(expected.digest, target, async (handle) => {
      await handle.writeFile(bytes);
    });
  }

  /**
   * The one way a blob reaches its place: written by `fill` into a temp file
   * under ingest/, fsynced, renamed; on any failure the temp file goes and a
   * full disk becomes NO_SPACE.
   */
  private async writeBlob(digest: Digest, target: string, fill: (handle: fsp.FileHandle) => Promise<void>): Promise<string> {
    let tmp: string | undefined = await this.tempFile(digest);
    try {
      const handle = await fsp.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
      try {
        await fill(handle);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.commit(tmp, target, digest);
      tmp = undefined;
      return target;
    } catch (err) {
      throw translateFsError(err, `blob ${digest}`);
    } finally {
      if (tmp !== undefined) await fsp.rm(tmp, { force: true }).catch(() => {});
    }
  }

  /** Reads a whole blob, verifying it on the way (STORE_CORRUPT if it does not match). */
  async readBytes(digest: Digest): Promise<Buffer> {
    const { algorithm } = parseDigest(digest);
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(this.blobPath(digest));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw missing(digest);
      throw err;
    }
    if (digestOf(bytes, algorithm) !== digest) throw corrupt(digest);
    return bytes;
  }

  async remove(digest: Digest): Promise<void> {
    await fsp.rm(this.blobPath(digest), { force: true });
  }

  async list(): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const algorithm of DIGEST_ALGORITHMS) {
      let names: string[];
      try {
        names = await fsp.readdir(path.join(this.root, 'blobs', algorithm));
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      for (const name of names.sort()) {
        const digest = `${algorithm}:${name}`;
        if (isValidDigest(digest)) out.push(digest);
      }
    }
    return out;
  }

  async verify(digest: Digest): Promise<boolean> {
    const { algorithm } = parseDigest(digest);
    const hash = createHash(algorithm);
    try {
      for await (const chunk of fs.createReadStream(this.blobPath(digest))) hash.update(chunk as Buffer);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EISDIR') return false;
      throw err;
    }
    return `${algorithm}:${hash.digest('hex')}` === digest;
  }

  async size(digest: Digest): Promise<number> {
    try {
      return (await fsp.stat(this.blobPath(digest))).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw missing(digest);
      throw err;
    }
  }

  /** Writes the stream into `handle`, reopening at the current offset after transient errors. */
  private async receive(
    expected: { digest: Digest; size: number },
    open: (offset: number) => Promise<Readable>,
    opts: IngestOptions,
    handle: fsp.FileHandle,
    hash: Hash,
  ): Promise<void> {
    const from = opts.description ?? 'the source';
    const maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    let offset = 0;
    let lastError: unknown;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      opts.signal?.throwIfAborted();
      let stream: Readable | undefined;
      const onAbort = () => stream?.destroy(opts.signal?.reason as Error);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        stream = await open(offset);
        // Network reads arrive in small pieces; writing, hashing and handing
        // them on in batches of about a megabyte costs far fewer round trips.
        // Only what is written counts (offset, hash), so a transfer that
        // breaks resumes exactly after the last batch on disk.
        let batch: Buffer[] = [];
        let batchBytes = 0;
        const flush = async () => {
          if (batchBytes === 0) return;
          const chunks = batch;
          const bytes = batchBytes;
          batch = [];
          batchBytes = 0;
          const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes);
          for (let done = 0; done < bytes; ) done += (await handle.write(data, done, bytes - done, offset + done)).bytesWritten;
          hash.update(data);
          offset += bytes;
          opts.onBytes?.(bytes);
          if (opts.onData) await opts.onData(data);
        };
        try {
          for await (const raw of stream) {
            const chunk = typeof raw === 'string' ? Buffer.from(raw) : (raw as Buffer);
            if (offset + batchBytes + chunk.length > expected.size) {
              throw new GantryError('SIZE_MISMATCH', `blob ${expected.digest} from ${from}: expected ${expected.size} bytes, got at least ${offset + batchBytes + chunk.length}`, {
                hint: 'the source sent more data than its manifest describes; the image or the registry is corrupt or tampered with',
              });
            }
            batch.push(chunk);
            batchBytes += chunk.length;
            if (batchBytes >= WRITE_BATCH_BYTES) await flush();
          }
        } catch (err) {
          // A broken connection does not spoil what arrived before it: keep
          // it, so the resume asks only for the rest.
          if (!isGantryError(err) && !opts.signal?.aborted) await flush();
          throw err;
        }
        await flush();
        if (offset !== expected.size) {
          throw new GantryError('SIZE_MISMATCH', `blob ${expected.digest} from ${from}: expected ${expected.size} bytes, got ${offset}`, {
            hint: 'the source ended the blob early; retry, and if it persists the image or the registry is corrupt',
          });
        }
        return;
      } catch (err) {
        stream?.destroy();
        if (opts.signal?.aborted) throw opts.signal.reason;
        // Our own verdicts, the source's typed errors (404, 401 ...) and local
        // disk errors are final; anything else is a broken transfer worth resuming.
        if (isGantryError(err) || isLocalFsError(err)) throw err;
        lastError = err;
      } finally {
        opts.signal?.removeEventListener('abort', onAbort);
      }
    }
    throw new GantryError('DOWNLOAD_INTERRUPTED', `blob ${expected.digest} from ${from}: transfer failed ${maxAttempts} times, last at byte ${offset} of ${expected.size}: ${describe(lastError)}`, {
      hint: 'check the network connection to the source and run the command again',
      cause: lastError,
    });
  }

  private async lockDigest(digest: Digest): Promise<FileLock> {
    const { algorithm, hex } = parseDigest(digest);
    const lock = await FileLock.acquire(path.join(this.lockDir, `blob-${algorithm}-${hex}.lock`), 'exclusive', { what: `blob ${digest}` });
    // wait=true never yields undefined.
    return lock as FileLock;
  }

  private async tempFile(digest: Digest): Promise<string> {
    const dir = path.join(this.root, 'ingest');
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const { hex } = parseDigest(digest);
    return path.join(dir, `${hex.slice(0, 16)}-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  }

  private async commit(tmp: string, target: string, digest: Digest): Promise<void> {
    const dir = path.dirname(target);
    await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    await fsp.rename(tmp, target);
    // Make the rename itself durable, or a crash could forget a blob the metadata already names.
    const dh = await fsp.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await dh.sync();
    } catch (err) {
      throw new GantryError('STORE_CORRUPT', `could not sync the directory of blob ${digest}`, { cause: err });
    } finally {
      await dh.close();
    }
  }
}

const LOCAL_FS_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EACCES', 'EPERM', 'EBADF', 'EFBIG']);

function isLocalFsError(err: unknown): boolean {
  const code = errnoCode(err);
  return code !== undefined && LOCAL_FS_ERRORS.has(code) && typeof err === 'object' && err !== null && 'syscall' in err
    && ['write', 'open', 'fsync', 'close'].includes(String((err as { syscall: unknown }).syscall));
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

function missing(digest: Digest): GantryError {
  return new GantryError('STORE_CORRUPT', `blob ${digest} is missing from the store`, {
    hint: 'remove the image that uses it (gantry image rm) and fetch it again',
  });
}

function corrupt(digest: Digest): GantryError {
  return new GantryError('STORE_CORRUPT', `blob ${digest} in the store does not match its digest`, {
    hint: 'the store is damaged; remove the image that uses it (gantry image rm) and fetch it again',
  });
}
