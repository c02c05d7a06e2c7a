/**
 * The network cache: what gantry asked of CNI for each pod, so that DEL can
 * be replayed exactly after a crash, after the config file changed or went
 * away, and after the network namespace is gone (libcni keeps the same kind
 * of cache in /var/lib/cni/results).
 *
 * Layout under `<dir>/net/cache/<podId>/`:
 *   pod.json          the pod's netns path and host ports (written before any
 *                     ADD: it is also the host-port reservation other pods see)
 *   NN-<name>.json    one per network, in attach order: the config list as
 *                     used, the interface, CNI_ARGS, the runtime config, and
 *                     the ADD result once there is one. Written before the
 *                     network's first ADD, so a crash in the middle of ADD
 *                     still leaves enough to DEL.
 * Every write is atomic (temp file, fsync, rename). Entries are removed only
 * after their DEL succeeded.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { errnoCode } from '../errors.js';
import type { NetworkConfigList } from './config.js';
import type { PortMapping } from './flags.js';
import { writeFileAtomic } from '../util/fs.js';

export interface CachedPod {
  podId: string;
  netnsPath: string;
  ports: PortMapping[];
}

export interface CachedNetwork {
  index: number;
  name: string;
  ifname: string;
  cniArgs: string;
  conflist: NetworkConfigList;
  /** runtimeConfig.portMappings given to capable plugins, if any. */
  portMappings?: { hostPort: number; containerPort: number; protocol: string; hostIP?: string }[];
  /** The final ADD result; absent while ADD is in flight or after it failed. */
  result?: unknown;
}

function cacheRoot(ctx: Context): string {
  return path.resolve(ctx.dir, 'net', 'cache');
}

export function podCacheDir(ctx: Context, podId: string): string {
  return path.join(cacheRoot(ctx), podId);
}

export function networkEntryName(index: number, name: string): string {
  return `${String(index).padStart(2, '0')}-${name}.json`;
}

export async function writeAtomic(file: string, value: unknown): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, `${JSON.stringify(value)}\n`);
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    // A torn or edited cache file cannot be replayed; treat it as absent so
    // teardown still proceeds with what is readable.
    if (err instanceof SyntaxError) return undefined;
    throw err;
  }
}

export async function readPod(ctx: Context, podId: string): Promise<CachedPod | undefined> {
  return readJson<CachedPod>(path.join(podCacheDir(ctx, podId), 'pod.json'));
}

/** The pod's cached networks in attach order. */
export async function readNetworks(ctx: Context, podId: string): Promise<{ file: string; entry: CachedNetwork }[]> {
  const dir = podCacheDir(ctx, podId);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const out: { file: string; entry: CachedNetwork }[] = [];
  for (const name of names.filter((n) => /^\d{2}-.*\.json$/.test(n)).sort()) {
    const file = path.join(dir, name);
    const entry = await readJson<CachedNetwork>(file);
    if (entry && entry.conflist && Array.isArray(entry.conflist.plugins)) out.push({ file, entry });
  }
  return out;
}

/** Every pod with a cache entry (for host-port reservations). */
export async function listCachedPods(ctx: Context): Promise<CachedPod[]> {
  let ids: string[];
  try {
    ids = await fs.readdir(cacheRoot(ctx));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const pods: CachedPod[] = [];
  for (const id of ids) {
    const pod = await readPod(ctx, id);
    if (pod) pods.push(pod);
  }
  return pods;
}

export async function removePodCache(ctx: Context, podId: string): Promise<void> {
  await fs.rm(podCacheDir(ctx, podId), { recursive: true, force: true });
}
