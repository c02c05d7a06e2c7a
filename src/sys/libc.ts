/**
 * The few libc calls Node lacks, through koffi. Loaded lazily: commands that
 * never mount or lock do not pay for the FFI.
 *
 * Every wrapper throws a Node-style error (with `code` = errno name) so the
 * callers handle them like fs errors. flock is the exception that returns a
 * boolean for the non-blocking case, because "someone else holds it" is an
 * answer, not a failure.
 */
import { createRequire } from 'node:module';
import os from 'node:os';

type Fn = (...args: unknown[]) => number;

interface Libc {
  flock: Fn;
  mount: Fn;
  umount2: Fn;
  mknod: Fn;
  lsetxattr: Fn;
  lgetxattr: Fn;
  llistxattr: Fn;
  syscall: Fn;
  errno: () => number;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const require = createRequire(import.meta.url);
  // koffi is CommonJS and its types are not needed at this thin boundary.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const koffi = require('koffi') as any;
  const lib = koffi.load('libc.so.6');
  libc = {
    flock: lib.func('int flock(int fd, int op)'),
    mount: lib.func('int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const char *data)'),
    umount2: lib.func('int umount2(const char *target, int flags)'),
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    lsetxattr: lib.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lgetxattr: lib.func('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)'),
    llistxattr: lib.func('intptr_t llistxattr(const char *path, void *list, size_t size)'),
    syscall: lib.func('long syscall(long nr, ...)'),
    errno: () => koffi.errno() as number,
  };
  return libc;
}

const ERRNO_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(os.constants.errno).map(([name, value]) => [value, name]),
);

function fail(call: string, path: string | undefined): never {
  const errno = load().errno();
  const code = ERRNO_NAMES[errno] ?? `E${errno}`;
  const err = new Error(`${call}${path ? ` ${path}` : ''}: ${code}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = errno;
  err.syscall = call;
  if (path) err.path = path;
  throw err;
}

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/**
 * flock(2). Returns false when LOCK_NB was asked and another holder has the
 * lock; throws on real errors.
 */
export function flock(fd: number, op: number): boolean {
  const lib = load();
  for (;;) {
    if (lib.flock(fd, op) === 0) return true;
    const errno = lib.errno();
    if (errno === os.constants.errno.EINTR) continue;
    if (errno === os.constants.errno.EWOULDBLOCK) return false;
    fail('flock', undefined);
  }
}

export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MNT_DETACH = 2;

export function mount(source: string, target: string, fstype: string | null, flags: number, data: string | null): void {
  if (load().mount(source, target, fstype, flags, data) !== 0) fail('mount', target);
}

export function umount2(target: string, flags = 0): void {
  if (load().umount2(target, flags) !== 0) fail('umount2', target);
}

export function mknod(path: string, mode: number, major: number, minor: number): void {
  // glibc's makedev encoding.
  const dev =
    (BigInt(major & 0xfffff000) << 32n) | (BigInt(major & 0xfff) << 8n) |
    (BigInt(minor & 0xffffff00) << 12n) | BigInt(minor & 0xff);
  if (load().mknod(path, mode, dev) !== 0) fail('mknod', path);
}

export function lsetxattr(path: string, name: string, value: Buffer): void {
  if (load().lsetxattr(path, name, value, value.length, 0) !== 0) fail('lsetxattr', path);
}

/** Returns undefined when the attribute is absent. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  const lib = load();
  const size = lib.lgetxattr(path, name, null, 0);
  if (size < 0) {
    if (lib.errno() === os.constants.errno.ENODATA) return undefined;
    fail('lgetxattr', path);
  }
  const buf = Buffer.alloc(size);
  const got = lib.lgetxattr(path, name, buf, size);
  if (got < 0) fail('lgetxattr', path);
  return buf.subarray(0, got);
}

export function llistxattr(path: string): string[] {
  const lib = load();
  const size = lib.llistxattr(path, null, 0);
  if (size < 0) {
    if (lib.errno() === os.constants.errno.ENOTSUP) return [];
    fail('llistxattr', path);
  }
  if (size === 0) return [];
  const buf = Buffer.alloc(size);
  const got = lib.llistxattr(path, buf, size);
  if (got < 0) fail('llistxattr', path);
  return buf.subarray(0, got).toString('utf8').split('\0').filter(Boolean);
}

// x86_64 and aarch64 share these numbers (the generic syscall table).
const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;

/** pidfd_open(2); undefined when the process is gone. */
export function pidfdOpen(pid: number): number | undefined {
  const fd = load().syscall(SYS_PIDFD_OPEN, 'int', pid, 'uint', 0);
  return fd < 0 ? undefined : fd;
}

/** pidfd_getfd(2): a copy of another process's fd (same open file description); undefined on failure. */
export function pidfdGetfd(pidfd: number, targetFd: number): number | undefined {
  const fd = load().syscall(SYS_PIDFD_GETFD, 'int', pidfd, 'int', targetFd, 'uint', 0);
  return fd < 0 ? undefined : fd;
}
