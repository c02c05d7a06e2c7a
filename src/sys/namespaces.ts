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
