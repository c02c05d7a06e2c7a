/**
 * Advisory file locks (flock(2)) that make two gantry processes safe against
 * each other without a daemon.
 *
 * Lifecycle: `FileLock.acquire(path, mode)` opens (creating) the lock file and
 * takes the lock; the holder calls `release()` exactly once (further calls are
 * no-ops). The lock also disappears when the process dies, which is what
 * makes it a liveness signal.
 *
 * Waiting polls with LOCK_NB and a short back-off instead of a blocking
 * flock: a blocking FFI call would freeze Node's event loop (and so every
 * download in flight) for as long as the other holder keeps the lock.
 *
 * Lock files may be unlinked by their holder (`release({ unlink: true })`):
 * after taking the lock, `acquire` checks that the path still names the inode
 * it locked and starts over if not, so a waiter never ends up holding a lock
 * on a file nobody else can see.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GantryError } from '../errors.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN } from '../sys/libc.js';

export type LockMode = 'shared' | 'exclusive';

export interface AcquireOptions {
  /** Wait for the lock (default true); with false, a busy lock returns undefined. */
  wait?: boolean;
  /** Give up waiting after this long with STORE_LOCKED (default: wait indefinitely). */
  timeoutMs?: number;
  /** Names the thing being locked in the STORE_LOCKED message. */
  what?: string;
}

const MAX_POLL_MS = 100;

export class FileLock {
  private released = false;

  private constructor(
    readonly fd: number,
    readonly path: string,
    readonly mode: LockMode,
  ) {}

  static async acquire(lockPath: string, mode: LockMode, opts: AcquireOptions = {}): Promise<FileLock | undefined> {
    const wait = opts.wait ?? true;
    const timeoutMs = opts.timeoutMs ?? Number.POSITIVE_INFINITY;
    const deadline = Date.now() + timeoutMs;
    await fsp.mkdir(path.dirname(lockPath), { recursive: true, mode: 0o700 });
    const op = (mode === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB;
    let delay = 2;
    for (;;) {
      const fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
      let locked = false;
      try {
        locked = flock(fd, op);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      if (locked) {
        if (sameInode(fd, lockPath)) return new FileLock(fd, lockPath, mode);
        // The previous holder unlinked the file after we opened it: our lock
        // guards nothing. Retry at once on whatever the path names now.
        fs.closeSync(fd);
        continue;
      }
      fs.closeSync(fd);
      if (!wait) return undefined;
      if (Date.now() >= deadline) {
        throw new GantryError('STORE_LOCKED', `timed out after ${timeoutMs} ms waiting for the lock on ${opts.what ?? lockPath}`, {
          hint: 'another gantry process is working on it; wait for it to finish, or check for a stuck gantry process',
        });
      }
      await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
  }

  /**
   * Releases the lock. With `unlink`, the lock file is removed first, while
   * still held, so that lock files for one-off keys (a blob digest) do not
   * pile up; only an exclusive holder may do that.
   */
  release(opts: { unlink?: boolean } = {}): void {
    if (this.released) return;
    this.released = true;
    try {
      if (opts.unlink && this.mode === 'exclusive') {
        try {
          fs.unlinkSync(this.path);
        } catch {
          // Already gone is fine; anything else only leaves a stale empty file.
        }
      }
      flock(this.fd, LOCK_UN);
    } finally {
      fs.closeSync(this.fd);
    }
  }
}

function sameInode(fd: number, lockPath: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.lstatSync(lockPath);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}
