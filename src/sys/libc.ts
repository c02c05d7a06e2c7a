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
  unshare: Fn;
  setns: Fn;
  sethostname: Fn;
  socket: Fn;
  ioctl: Fn;
  close: Fn;
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
    unshare: lib.func('int unshare(int flags)'),
    setns: lib.func('int setns(int fd, int nstype)'),
    sethostname: lib.func('int sethostname(const char *name, size_t len)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    // ioctl is variadic; on the SysV x86-64/aarch64 ABIs a pointer third argument is passed the same way.
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
    close: lib.func('int close(int fd)'),
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
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;
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

export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWNET = 0x40000000;

/**
 * unshare(2) of the calling thread. Only for the per-thread namespace kinds
 * (net, ipc, uts): in a multi-threaded process they move the calling thread
 * alone, and the caller must setns() back before yielding to the event loop.
 */
export function unshare(flags: number): void {
  if (load().unshare(flags) !== 0) fail('unshare', undefined);
}

/** setns(2) of the calling thread. */
export function setns(fd: number, nstype: number): void {
  if (load().setns(fd, nstype) !== 0) fail('setns', undefined);
}

export function sethostname(name: string): void {
  const buf = Buffer.from(name, 'utf8');
  if (load().sethostname(buf, buf.length) !== 0) fail('sethostname', undefined);
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 1;
/** sizeof(struct ifreq) on Linux 64-bit; ifr_flags (short) follows the 16-byte name. */
const IFREQ_SIZE = 40;

/** Sets a network interface of the calling thread's network namespace up (what `ip link set NAME up` does). */
export function interfaceUp(name: string): void {
  const lib = load();
  if (Buffer.byteLength(name) >= 16) throw Object.assign(new Error(`interface name ${name}: ENAMETOOLONG`), { code: 'ENAMETOOLONG' });
  const fd = lib.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail('socket', undefined);
  try {
    const req = Buffer.alloc(IFREQ_SIZE);
    req.write(name, 0, 'utf8');
    if (lib.ioctl(fd, SIOCGIFFLAGS, req) !== 0) fail('ioctl(SIOCGIFFLAGS)', name);
    // ifr_flags is a native-endian short.
    if (os.endianness() === 'LE') req.writeUInt16LE(req.readUInt16LE(16) | IFF_UP, 16);
    else req.writeUInt16BE(req.readUInt16BE(16) | IFF_UP, 16);
    if (lib.ioctl(fd, SIOCSIFFLAGS, req) !== 0) fail('ioctl(SIOCSIFFLAGS)', name);
  } finally {
    lib.close(fd);
  }
}
