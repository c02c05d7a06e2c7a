/**
 * Rendering: flattens a stack of snapshot trees into one plain directory,
 * for stage1s that cannot mount overlay (fly, or kernels without overlayfs).
 *
 * The result equals what `mount -t overlay -o lowerdir=<top>:...:<bottom>`
 * shows: layers are applied bottom first; a 0:0 character device deletes
 * the path below it; a directory marked trusted.overlay.opaque=y hides what
 * lower layers had under it; a directory over a directory merges, taking the
 * upper one's metadata; anything else replaces what was there.
 *
 * Each layer is walked parents-before-children and every parent in a
 * snapshot is a real directory (the extractor guarantees it), so by the time
 * a child is written its parent in the target is a real directory too: a
 * symlink left by a lower layer is replaced, never followed. Files are created
 * with COPYFILE_EXCL after removing what was there.
 *
 * Kept: types, modes (setuid too: chmod follows chown), owners, mtimes and
 * atimes, xattrs (except trusted.overlay.*), symlinks, device nodes, fifos,
 * and hardlinks between names of the same layer. Sockets are skipped.
 *
 * The walk uses synchronous fs calls (a thread-pool round trip per call costs
 * more than the call) and yields to the event loop every few hundred entries.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { errnoCode, GantryError, translateFsError } from '../errors.js';
import { lgetxattr, llistxattr, lsetxattr, mknod } from '../sys/libc.js';
import { OPAQUE_XATTR } from './extract.js';

interface Times {
  atime: number;
  mtime: number;
}

export async function renderSnapshots(layerFsPaths: string[], target: string): Promise<void> {
  const root = path.resolve(target);
  let existing: string[] | undefined;
  try {
    existing = await fsp.readdir(root);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  if (existing !== undefined && existing.length > 0) {
    throw new GantryError('INTERNAL', `cannot render an image into ${root}: the directory is not empty`, {
      hint: 'render into a new directory',
    });
  }
  try {
    await fsp.mkdir(root, { recursive: true, mode: 0o755 });
    const dirTimes = new Map<string, Times>();
    for (const layer of layerFsPaths) {
      const renderer = new LayerRenderer(path.resolve(layer), root, dirTimes);
      await renderer.dir('', true);
    }
    // Deepest first, so that setting a child's times does not touch its parent's again.
    const dirs = [...dirTimes.entries()].sort((a, b) => b[0].length - a[0].length);
    for (const [rel, t] of dirs) fs.lutimesSync(path.join(root, rel), t.atime, t.mtime);
  } catch (err) {
    throw translateFsError(err, `the rendered image ${root}`);
  }
}

class LayerRenderer {
  /** dev:ino of multiply-linked files already copied from this layer -> target path. */
  private readonly links = new Map<string, string>();
  private count = 0;

  constructor(
    private readonly src: string,
    private readonly dst: string,
    private readonly dirTimes: Map<string, Times>,
  ) {}

  /** Renders the directory `rel` (already known to be a directory in this layer). */
  async dir(rel: string, isRoot = false): Promise<void> {
    const s = path.join(this.src, rel);
    const d = path.join(this.dst, rel);
    const st = fs.lstatSync(s);
    if (!isRoot) {
      const cur = lstatOrUndefined(d);
      if (cur && !cur.isDirectory()) fs.unlinkSync(d);
      if (!cur || !cur.isDirectory()) fs.mkdirSync(d, { mode: 0o700 });
    }
    if (isOpaque(s)) {
      clearDir(d);
      for (const key of [...this.dirTimes.keys()]) if (key !== rel && (rel === '' || key.startsWith(`${rel}/`))) this.dirTimes.delete(key);
    }
    this.meta(s, d, st);
    this.dirTimes.set(rel, { atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 });

    const names = fs.readdirSync(s).sort();
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      const cs = path.join(this.src, childRel);
      const cst = fs.lstatSync(cs);
      if (cst.isDirectory()) {
        await this.dir(childRel);
        continue;
      }
      this.nonDir(childRel, cs, cst);
      // Let timers and sockets of a long-lived process (the CRI server) breathe.
      if (++this.count % 256 === 0) await yieldToEventLoop();
    }
  }

  private nonDir(rel: string, s: string, st: fs.Stats): void {
    const d = path.join(this.dst, rel);
    const cur = lstatOrUndefined(d);
    if (cur) {
      if (cur.isDirectory()) {
        fs.rmSync(d, { recursive: true, force: true });
        this.dirTimes.delete(rel);
        for (const key of [...this.dirTimes.keys()]) if (key.startsWith(`${rel}/`)) this.dirTimes.delete(key);
      } else {
        fs.unlinkSync(d);
      }
    }
    if (st.isCharacterDevice() && st.rdev === 0) return; // whiteout: the deletion is all it does

    if (st.isFile() && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.links.get(key);
      if (first !== undefined) {
        fs.linkSync(first, d);
        return;
      }
      this.links.set(key, d);
    }
    if (st.isFile()) {
      fs.copyFileSync(s, d, fs.constants.COPYFILE_EXCL);
    } else if (st.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(s), d);
    } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
      const kind = st.isFIFO() ? fs.constants.S_IFIFO : st.isBlockDevice() ? fs.constants.S_IFBLK : fs.constants.S_IFCHR;
      mknod(d, kind | 0o600, major(st.rdev), minor(st.rdev));
    } else {
      return; // sockets have no meaning outside a running process
    }
    this.meta(s, d, st);
    fs.lutimesSync(d, st.atimeMs / 1000, st.mtimeMs / 1000);
  }

  private meta(s: string, d: string, st: fs.Stats): void {
    fs.lchownSync(d, st.uid, st.gid);
    for (const name of llistxattr(s)) {
      if (name.startsWith('trusted.overlay.')) continue;
      const value = lgetxattr(s, name);
      if (value === undefined) continue;
      try {
        lsetxattr(d, name, value);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || (code === 'EPERM' && st.isSymbolicLink())) continue;
        throw err;
      }
    }
    if (!st.isSymbolicLink()) fs.chmodSync(d, st.mode & 0o7777);
  }
}

function isOpaque(dir: string): boolean {
  return lgetxattr(dir, OPAQUE_XATTR)?.toString() === 'y';
}

function clearDir(dir: string): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
}

function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

// glibc's gnu_dev_major/minor.
function major(dev: number): number {
  const d = BigInt(dev);
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n));
}

function minor(dev: number): number {
  const d = BigInt(dev);
  return Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n));
}
