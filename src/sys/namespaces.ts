/**
 * Persistent namespaces: a new network/IPC/UTS namespace bind-mounted onto a
 * file, so it outlives the process that made it (what `ip netns add` does).
 * A pod's apps join these files through their OCI specs, and CNI configures
 * the network one, without any long-lived "pause" process.
 *
 * The Node process is multi-threaded and must never call unshare(2) itself;
 * util-linux's `unshare` does it in a child.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { GantryError, errnoCode } from '../errors.js';
import { MNT_DETACH, umount2 } from './libc.js';

const execFileP = promisify(execFile);

export type NamespaceKind = 'net' | 'ipc' | 'uts';

/**
 * Creates one new namespace of each kind asked, bind-mounted at
 * `<dir>/<kind>`; returns kind -> file path. `inside` runs once in the new
 * namespaces before they are left (to bring `lo` up, set the hostname...).
 * On failure nothing is left mounted.
 */
export async function createNamespaceFiles<K extends NamespaceKind>(dir: string, kinds: readonly K[], inside: readonly string[] = ['true']): Promise<Record<K, string>> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const files = {} as Record<K, string>;
  for (const kind of kinds) {
    const file = path.join(dir, kind);
    files[kind] = file;
    await fs.writeFile(file, '', { mode: 0o400 });
  }
  try {
    await execFileP('unshare', [...kinds.map((k) => `--${k}=${files[k]}`), ...inside], { timeout: 10_000 });
  } catch (err) {
    await removeNamespaceFiles(Object.values(files));
    throw new GantryError('RUNTIME_ERROR', `cannot create the ${kinds.join('/')} namespaces in ${dir}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`, {
      hint: 'gantry needs root, util-linux\'s unshare, iproute2 and hostname',
      cause: err,
    });
  }
  return files;
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
