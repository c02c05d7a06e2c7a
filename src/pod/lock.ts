/**
 * The pod lock: `<podDir>/lock`, a plain file whose flock(2) says whether
 * the pod is alive (rkt's model, with a file instead of the directory).
 *
 * Lifecycle: the creator makes the file (O_EXCL) and holds LOCK_EX while the
 * pod is being prepared and for as long as it runs; a detached pod's keeper
 * process inherits the fd, so the lock outlives the CLI exactly as long as
 * the apps. Everybody else only probes: a shared non-blocking attempt that
 * fails means "held". Locks follow the inode, so renaming the pod dir to
 * another state does not disturb them; after locking, callers check that
 * the path still names the locked inode to know the pod did not move.
 *
 * The file is opened without O_CREAT by probes so that a probe can never
 * resurrect a pod dir that another process just deleted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode } from '../errors.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN } from '../sys/libc.js';

const LOCK_FILE = 'lock';

export function lockPath(podDir: string): string {
  return path.join(podDir, LOCK_FILE);
}

/** Creates the lock file of a new pod and takes it exclusively; returns the fd. */
export function createPodLock(podDir: string): number {
  const fd = fs.openSync(lockPath(podDir), fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  if (!flock(fd, LOCK_EX | LOCK_NB)) {
    fs.closeSync(fd);
    throw new Error(`fresh pod lock ${lockPath(podDir)} is held by someone else`);
  }
  return fd;
}

/** Opens an existing pod's lock file; undefined when the pod dir (or its lock) is gone. */
function openLock(podDir: string): number | undefined {
  try {
    return fs.openSync(lockPath(podDir), fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * True when some process holds the pod's lock. A pod without a lock file
 * (a crash between mkdir and lock creation) counts as not held.
 */
export function isPodLocked(podDir: string): boolean {
  const fd = openLock(podDir);
  if (fd === undefined) return false;
  try {
    if (flock(fd, LOCK_SH | LOCK_NB)) {
      flock(fd, LOCK_UN);
      return false;
    }
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

export type TryLockResult = { fd: number } | { busy: true } | { gone: true };

/**
 * Tries to take the pod's lock exclusively without waiting for its holder.
 * A few quick retries ride over other processes' momentary probes (they
 * hold a shared lock for microseconds). `gone` means the pod is no longer
 * at `podDir` (moved or deleted): the caller looks it up again.
 */
export async function tryLockPod(podDir: string, retries = 5): Promise<TryLockResult> {
  for (let attempt = 0; ; attempt++) {
    const fd = openLock(podDir);
    if (fd === undefined) return { gone: true };
    let locked = false;
    try {
      locked = flock(fd, LOCK_EX | LOCK_NB);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    if (locked) {
      if (stillAt(fd, podDir)) return { fd };
      flock(fd, LOCK_UN);
      fs.closeSync(fd);
      return { gone: true };
    }
    fs.closeSync(fd);
    if (attempt >= retries) return { busy: true };
    await sleep(5 + attempt * 10);
  }
}

/** Whether `<podDir>/lock` still names the inode `fd` refers to. */
function stillAt(fd: number, podDir: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.lstatSync(lockPath(podDir));
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/** Drops the lock for everyone (LOCK_UN) and closes the fd. */
export function unlockPod(fd: number): void {
  try {
    flock(fd, LOCK_UN);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Closes stage0's fd without LOCK_UN: a keeper process that inherited the
 * same open file description keeps holding the lock.
 */
export function handOverPodLock(fd: number): void {
  fs.closeSync(fd);
}
