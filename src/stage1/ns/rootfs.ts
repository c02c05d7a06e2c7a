/**
 * An app's root filesystem: an overlay of the image's snapshot dirs (read
 * only, shared by every pod that uses the image) under a per-app upper dir.
 *
 * Layout under the pod dir (stage1 owns <podDir>/apps/):
 *
 *   apps/<app>/rootfs   the overlay mount point (the OCI bundle's root.path)
 *   apps/<app>/upper    the app's writes
 *   apps/<app>/work     overlayfs' scratch dir
 *   apps/<app>/l/<n>    short symlinks to the layers, made only for deep images
 *
 * Lifecycle: mountAppRootfs before the runtime starts the app;
 * unmountAppRootfs after it exited (the upper dir stays, like rkt's exited
 * pods); removeAppDir at gc. Both teardown calls are idempotent and never
 * delete anything while something is still mounted under the app dir, so a
 * failed unmount cannot turn into deleting image layers.
 */
import fs from 'node:fs';
import path from 'node:path';
import { GantryError, errnoCode } from '../../errors.js';
import { mount, umount2, MNT_DETACH } from '../../sys/libc.js';
import { mountsUnder } from '../../sys/mounts.js';

/** overlayfs refuses mount data longer than a page (minus the NUL). */
const MOUNT_DATA_LIMIT = 4095;
/** The kernel's OVL_MAX_STACK. */
const MAX_LAYERS = 500;
const MAX_SYMLINKS = 40;

export interface AppPaths {
  appDir: string;
  rootfs: string;
  upper: string;
  work: string;
  links: string;
  bundleConfig: string;
  runtimeLog: string;
}

export function appPaths(podDir: string, app: string): AppPaths {
  const appDir = path.join(podDir, 'apps', app);
  return {
    appDir,
    rootfs: path.join(appDir, 'rootfs'),
    upper: path.join(appDir, 'upper'),
    work: path.join(appDir, 'work'),
    links: path.join(appDir, 'l'),
    bundleConfig: path.join(appDir, 'config.json'),
    runtimeLog: path.join(appDir, 'runtime.log'),
  };
}

/**
 * Maps `inside` (an absolute path as the app sees it) to a host path under
 * `root`, resolving symlinks as if `root` were `/` (like chroot would):
 * absolute link targets restart at `root`, `..` never climbs above it.
 * Components that do not exist are kept literally.
 */
export function resolveInRoot(root: string, inside: string): string {
  const queue = inside.split('/').filter((c) => c !== '' && c !== '.');
  let resolved: string[] = [];
  let links = 0;
  while (queue.length > 0) {
    const c = queue.shift()!;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, c);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(candidate);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) {
        throw new GantryError('CONFIG_INVALID', `too many symlinks resolving ${inside} in the app's rootfs`, {
          hint: 'the image has a symlink loop; fix the image',
        });
      }
      const target = fs.readlinkSync(candidate);
      if (target.startsWith('/')) resolved = [];
      queue.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
      continue;
    }
    resolved.push(c);
  }
  return path.join(root, ...resolved);
}

function needsEscape(p: string): boolean {
  return /[:,\\\n]/.test(p);
}

/**
 * Mounts the overlay for one app. `layers` are snapshot dirs, bottom first.
 * The mount data stays under the page-size limit for deep images by using
 * short symlinks to the layers and, as the last resort, paths relative to
 * the app dir (the only use of chdir, synchronous in the main thread and
 * undone at once).
 */
export function mountAppRootfs(paths: AppPaths, layers: readonly string[]): void {
  if (layers.length > MAX_LAYERS) {
    throw new GantryError('CONFIG_INVALID', `the image has ${layers.length} layers; overlayfs stacks at most ${MAX_LAYERS}`, {
      hint: 'flatten the image (e.g. rebuild it with fewer layers)',
    });
  }
  for (const layer of layers) {
    if (!path.isAbsolute(layer)) {
      throw new GantryError('CONFIG_INVALID', `layer dir ${layer} is not an absolute path`, { hint: 'this is a bug in the caller; please report it' });
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(layer);
    } catch (err) {
      throw new GantryError('STORE_CORRUPT', `layer snapshot ${layer} is missing (${errnoCode(err) ?? String(err)})`, {
        hint: 'remove the image and fetch it again (gantry image rm, gantry fetch)',
        cause: err,
      });
    }
    if (!st.isDirectory()) {
      throw new GantryError('STORE_CORRUPT', `layer snapshot ${layer} is not a directory`, {
        hint: 'remove the image and fetch it again (gantry image rm, gantry fetch)',
      });
    }
  }
  if (mountsUnder(paths.rootfs).length > 0) {
    throw new GantryError('POD_STATE', `the rootfs of app dir ${paths.appDir} is already mounted`, {
      hint: 'the pod is running or was not cleaned up; run gantry gc',
    });
  }
  for (const d of [paths.rootfs, paths.upper, paths.work]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });

  // overlayfs needs at least one lower layer; an image without layers is an empty dir.
  let lowers = [...layers].reverse(); // overlay lists the top layer first
  if (lowers.length === 0) {
    const empty = path.join(paths.appDir, 'empty');
    fs.mkdirSync(empty, { recursive: true, mode: 0o755 });
    lowers = [empty];
  }

  const data = (lower: string[], upper: string, work: string): string =>
    `lowerdir=${lower.join(':')},upperdir=${upper},workdir=${work}`;

  const direct = data(lowers, paths.upper, paths.work);
  const appDirSafe = !needsEscape(paths.appDir);
  if (direct.length <= MOUNT_DATA_LIMIT && !lowers.some(needsEscape) && appDirSafe) {
    mountOverlay(direct, paths.rootfs);
    return;
  }

  fs.rmSync(paths.links, { recursive: true, force: true });
  fs.mkdirSync(paths.links, { mode: 0o700 });
  const names = lowers.map((_, i) => i.toString(36));
  lowers.forEach((l, i) => fs.symlinkSync(l, path.join(paths.links, names[i]!)));

  const viaLinks = data(names.map((n) => path.join(paths.links, n)), paths.upper, paths.work);
  if (viaLinks.length <= MOUNT_DATA_LIMIT && appDirSafe) {
    mountOverlay(viaLinks, paths.rootfs);
    return;
  }

  const relative = data(names.map((n) => `l/${n}`), 'upper', 'work');
  if (relative.length > MOUNT_DATA_LIMIT) {
    throw new GantryError('CONFIG_INVALID', `overlay mount options for ${layers.length} layers exceed the page size`, {
      hint: 'flatten the image (e.g. rebuild it with fewer layers)',
    });
  }
  const previous = process.cwd();
  process.chdir(paths.appDir);
  try {
    mountOverlay(relative, 'rootfs');
  } finally {
    process.chdir(previous);
  }
}

function mountOverlay(data: string, target: string): void {
  try {
    mount('overlay', target, 'overlay', 0, data);
  } catch (err) {
    throw new GantryError('RUNTIME_ERROR', `cannot mount the app's overlay rootfs at ${target}: ${errnoCode(err) ?? String(err)}`, {
      hint: 'the kernel needs overlayfs, and the pod dir must not itself be on overlayfs; run with --debug for details',
      cause: err,
    });
  }
}

/**
 * Unmounts everything at or below the app's rootfs (deepest first), lazily
 * if busy. Idempotent. Throws when a mount remains.
 */
export function unmountAppRootfs(paths: AppPaths): void {
  for (let round = 0; round < 8; round++) {
    const mounts = mountsUnder(paths.rootfs);
    if (mounts.length === 0) return;
    for (const m of mounts.reverse()) {
      try {
        umount2(m, 0);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'EINVAL' || code === 'ENOENT') continue; // already gone
        try {
          umount2(m, MNT_DETACH);
        } catch {
          // reported below if it stays mounted
        }
      }
    }
  }
  const left = mountsUnder(paths.rootfs);
  if (left.length > 0) {
    throw new GantryError('RUNTIME_ERROR', `cannot unmount ${left.join(', ')}`, { hint: 'find what uses it (fuser -m), then run gantry gc' });
  }
}

/** Removes the app dir (upper layer included) once nothing is mounted under it. Idempotent. */
export function removeAppDir(paths: AppPaths): void {
  unmountAppRootfs(paths);
  const left = mountsUnder(paths.appDir);
  if (left.length > 0) {
    throw new GantryError('RUNTIME_ERROR', `refusing to remove ${paths.appDir}: ${left.join(', ')} is mounted`, {
      hint: 'unmount it, then run gantry gc again',
    });
  }
  // rmSync unlinks symlinks (apps/<app>/l/*) rather than following them.
  fs.rmSync(paths.appDir, { recursive: true, force: true, maxRetries: 3 });
}
