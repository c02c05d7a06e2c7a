/**
 * Persistent namespaces: a new network/IPC/UTS namespace bind-mounted onto a
 * file, so it outlives the process that made it (what `ip netns add` does).
 * A pod's apps join these files through their OCI specs, and CNI configures
 * the network one, without any long-lived "pause" process.
 *
 * Two ways to make them:
 *   - createNamespaceFiles: util-linux's `unshare` does it in a child.
 *   - createNamespaceFilesHere: no child process. net, ipc and uts are
 *     per-thread namespaces, so Node's main thread can unshare(2) them
 *     alone, set them up (hostname, lo up), bind-mount
 *     /proc/thread-self/ns/* onto the files and setns(2) back, all in one
 *     synchronous stretch: no JS, no child spawn and no other thread runs
 *     in the new namespaces. If the way back failed the main thread would
 *     stay in the pod's namespaces (and later children with it), so the
 *     process aborts instead; what it left is what kill -9 leaves, and
 *     gc removes it.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { GantryError, errnoCode } from '../errors.js';
import fsSync from 'node:fs';
import {
  CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWUTS, MNT_DETACH, MS_BIND, interfaceUp, mount, sethostname, setns, umount2, unshare,
} from './libc.js';

const execFileP = promisify(execFile);

export type NamespaceKind = 'net' | 'ipc' | 'uts';

/**
 * Creates one new namespace of each kind asked, bind-mounted at
 * `<dir>/<kind>`; returns kind -> file path. On failure nothing is left
 * mounted.
 */
export async function createNamespaceFiles(dir: string, kinds: readonly NamespaceKind[]): Promise<Record<NamespaceKind, string>> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const files = {} as Record<NamespaceKind, string>;
  for (const kind of kinds) {
    files[kind] = path.join(dir, kind);
    await fs.writeFile(files[kind], '', { mode: 0o400 });
  }
  try {
    await execFileP('unshare', [...kinds.map((k) => `--${k}=${files[k]}`), 'true'], { timeout: 10_000 });
  } catch (err) {
    await removeNamespaceFiles(Object.values(files));
    throw new GantryError('RUNTIME_ERROR', `cannot create the pod's ${kinds.join('/')} namespaces in ${dir}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`, {
      hint: 'gantry needs root and util-linux\'s unshare',
      cause: err,
    });
  }
  return files;
}

const CLONE_FLAG: Record<NamespaceKind, number> = { net: CLONE_NEWNET, ipc: CLONE_NEWIPC, uts: CLONE_NEWUTS };

export interface NamespaceSetup {
  /** Set in the new UTS namespace (the caller validated it). */
  hostname?: string;
  /** Bring `lo` up in the new network namespace. */
  loopbackUp?: boolean;
}

/**
 * Like createNamespaceFiles, without a child process (see the module
 * comment): a new namespace of each kind asked, set up as asked, bound at
 * `<dir>/<kind>`. On failure nothing is left mounted.
 */
export async function createNamespaceFilesHere(dir: string, kinds: readonly NamespaceKind[], setup: NamespaceSetup = {}): Promise<Record<NamespaceKind, string>> {
  fsSync.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = {} as Record<NamespaceKind, string>;
  for (const kind of kinds) {
    files[kind] = path.join(dir, kind);
    fsSync.writeFileSync(files[kind], '', { mode: 0o400 });
  }
  try {
    inNewNamespaces(kinds, () => {
      if (setup.hostname !== undefined && kinds.includes('uts')) sethostname(setup.hostname);
      if (setup.loopbackUp && kinds.includes('net')) interfaceUp('lo');
      for (const kind of kinds) mount(`/proc/thread-self/ns/${kind}`, files[kind], null, MS_BIND, null);
    });
  } catch (err) {
    await removeNamespaceFiles(Object.values(files));
    throw new GantryError('RUNTIME_ERROR', `cannot create the ${kinds.join('/')} namespaces in ${dir}: ${(err as Error).message}`, {
      hint: 'gantry needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)',
      cause: err,
    });
  }
  return files;
}

/** Runs fn (synchronous) with the calling thread in new namespaces of the given kinds, then moves it back. */
function inNewNamespaces(kinds: readonly NamespaceKind[], fn: () => void): void {
  const saved: Array<[NamespaceKind, number]> = [];
  try {
    for (const kind of kinds) saved.push([kind, fsSync.openSync(`/proc/thread-self/ns/${kind}`, 'r')]);
    unshare(kinds.reduce((f, k) => f | CLONE_FLAG[k], 0));
    try {
      fn();
    } finally {
      for (const [kind, fd] of saved) {
        try {
          setns(fd, CLONE_FLAG[kind]);
        } catch {
          // Staying would put every later child process in the pod's namespaces.
          process.abort();
        }
      }
    }
  } finally {
    for (const [, fd] of saved) fsSync.closeSync(fd);
  }
}

/** Unmounts and removes namespace files; missing ones are fine (idempotent, for gc). */
export async function removeNamespaceFiles(files: readonly string[]): Promise<void> {
  for (const file of files) {
    try {
      umount2(file, MNT_DETACH);
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
    }
    await fs.rm(file, { force: true });
  }
}
