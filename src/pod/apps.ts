/**
 * Changing the apps of a running pod (app add/rm): pod.json is rewritten
 * under `<podDir>/manifest.lock` (the pod lock itself is held by the pod's
 * keeper for its whole life), so concurrent `app add`s do not lose each
 * other's apps. The manifest is updated before stage1 is asked to add an
 * app, so an image an app uses is recorded before anything can run it.
 */
import path from 'node:path';
import type { Context } from '../context.js';
import { GantryError } from '../errors.js';
import { FileLock } from '../store/lock.js';
import { Store } from '../store/store.js';
import { readPodManifest, toPodSpec, writePodManifest, type PodManifest, type VolumeRecord } from './manifest.js';
import { requireRunning, type PodInfo } from './pods.js';
import { resolveApps, validateVolumes, type AppRequest } from './prepare.js';
import { stage1For } from './stage1.js';

async function withManifestLock<T>(pod: PodInfo, fn: (m: PodManifest) => Promise<T>): Promise<T> {
  const lock = await FileLock.acquire(path.join(pod.dir, 'manifest.lock'), 'exclusive', { wait: true, timeoutMs: 30_000, what: `pod ${pod.uuid}` });
  try {
    return await fn(readPodManifest(pod.dir));
  } finally {
    lock?.release();
  }
}

export async function addApp(ctx: Context, pod: PodInfo, req: AppRequest, newVolumes: VolumeRecord[]): Promise<string> {
  requireRunning(pod, 'add an app to');
  const record = await withManifestLock(pod, async (manifest) => {
    const volumes = [...manifest.volumes, ...newVolumes];
    validateVolumes(volumes, [{ name: req.name ?? 'new app', mounts: req.mounts }]);
    const store = await Store.open(ctx);
    try {
      // Recorded under the store's use lock, like prepare: image gc sees the new image as in use.
      return await store.withUseLock(async () => {
        const [rec] = await resolveApps(ctx, store, [req], { taken: manifest.apps.map((a) => a.name) });
        writePodManifest(pod.dir, { ...manifest, volumes, apps: [...manifest.apps, rec!] });
        return rec!;
      });
    } finally {
      store.close();
    }
  });
  const manifest = readPodManifest(pod.dir);
  const spec = toPodSpec(manifest, pod.dir).apps.find((a) => a.name === record.name)!;
  try {
    await stage1For(ctx, manifest).appAdd({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: manifest.ociRuntime }, spec);
  } catch (err) {
    await withManifestLock(pod, async (m) => writePodManifest(pod.dir, { ...m, apps: m.apps.filter((a) => a.name !== record.name) }));
    throw err;
  }
  return record.name;
}

function requireApp(pod: PodInfo, manifest: PodManifest, app: string): void {
  if (!manifest.apps.some((a) => a.name === app)) {
    throw new GantryError('USAGE', `pod ${pod.uuid} has no app "${app}"`, { hint: `apps: ${manifest.apps.map((a) => a.name).join(', ')}` });
  }
}

export async function startApp(ctx: Context, pod: PodInfo, app: string): Promise<void> {
  const manifest = requireRunning(pod, 'start an app of');
  requireApp(pod, manifest, app);
  await stage1For(ctx, manifest).appStart({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: manifest.ociRuntime }, app);
}

export async function stopApp(ctx: Context, pod: PodInfo, app: string, options: { force?: boolean; timeoutMs?: number }): Promise<void> {
  const manifest = requireRunning(pod, 'stop an app of');
  requireApp(pod, manifest, app);
  await stage1For(ctx, manifest).appStop({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: manifest.ociRuntime }, app, options);
}

export async function removeApp(ctx: Context, pod: PodInfo, app: string): Promise<void> {
  const manifest = requireRunning(pod, 'remove an app of');
  requireApp(pod, manifest, app);
  await stage1For(ctx, manifest).appRm({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: manifest.ociRuntime }, app);
  await withManifestLock(pod, async (m) => writePodManifest(pod.dir, { ...m, apps: m.apps.filter((a) => a.name !== app) }));
}
