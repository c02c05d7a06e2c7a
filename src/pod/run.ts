/**
 * Starting a pod that is in `run` and locked by this process (fresh from
 * prepare, or taken from `prepared` by run-prepared), through its stage1.
 *
 * Foreground: stage1 runs the apps while this process holds the lock; when
 * they have exited, the final status is saved, the pod moves to
 * exited-garbage (or is deleted at once with --rm) and the lock is dropped.
 * Detached: stage1 starts the apps under its keeper, which inherits the
 * lock fd; this process closes its copy without unlocking and returns. If a
 * detached start fails, whatever started is stopped and the pod retired.
 */
import type { Context } from '../context.js';
import type { PodResult, PodStatus, RunOptions, StdioTarget } from '../stage1/abi.js';
import { handOverPodLock, unlockPod } from './lock.js';
import { toPodSpec, type PodManifest } from './manifest.js';
import { movePod, removePodDir, saveFinalStatus, stage1Gc } from './pods.js';
import { loadStage1 } from './stage1.js';
import { recordAudit } from '../audit/log.js';

export interface StartOptions {
  detach?: boolean;
  /** Give the apps this process's stdin. */
  interactive?: boolean;
  /** Delete the pod as soon as it exited (foreground only). */
  rm?: boolean;
}

export interface LockedPod {
  uuid: string;
  /** Its dir in `run`. */
  dir: string;
  manifest: PodManifest;
  lockFd: number;
}

async function retire(ctx: Context, pod: LockedPod, result: PodResult | undefined, rm: boolean): Promise<void> {
  const fallback: PodStatus | undefined = result && {
    apps: result.apps.map((a) => ({ name: a.app, state: 'exited' as const, exitCode: a.exitCode, ...(a.signal ? { signal: a.signal } : {}), ...(a.oomKilled ? { oomKilled: true } : {}) })),
  };
  try {
    await saveFinalStatus(ctx, pod, fallback);
    if (rm) {
      const dir = movePod(ctx, pod.uuid, 'run', 'garbage');
      await stage1Gc(ctx, { ...pod, dir });
      removePodDir(dir);
    } else {
      movePod(ctx, pod.uuid, 'run', 'exited-garbage');
    }
  } catch (err) {
    ctx.warn(`pod ${pod.uuid}: cleanup after exit failed (gantry gc will finish it): ${(err as Error).message}`);
  } finally {
    unlockPod(pod.lockFd);
  }
}

export async function startPod(ctx: Context, pod: LockedPod, options: StartOptions = {}): Promise<PodResult> {
  let spec;
  let stage1;
  try {
    spec = toPodSpec(pod.manifest, pod.dir);
    stage1 = await loadStage1(ctx, pod.manifest.stage1);
  } catch (err) {
    await retire(ctx, pod, undefined, false);
    throw err;
  }
  await recordAudit(ctx, 'run', pod.uuid, {
    images: pod.manifest.apps.map((a) => a.image.id),
    apps: pod.manifest.apps.map((a) => a.name),
    stage1: pod.manifest.stage1,
    net: pod.manifest.net,
    detach: options.detach ?? false,
  });
  const stdin: StdioTarget = options.interactive ? 'inherit' : 'ignore';
  if (options.detach) {
    const runOptions: RunOptions = { detach: true, lockFd: pod.lockFd, stdio: ['ignore', 'ignore', 'ignore'] };
    try {
      const result = await stage1.run(spec, runOptions);
      handOverPodLock(pod.lockFd);
      return result;
    } catch (err) {
      // gc kills whatever of the pod started (a stop first would only do part of that).
      await stage1Gc(ctx, pod).catch(() => {});
      await retire(ctx, pod, undefined, false);
      throw err;
    }
  }
  let result: PodResult | undefined;
  try {
    result = await stage1.run(spec, { lockFd: pod.lockFd, stdio: [stdin, 'inherit', 'inherit'] });
    return result;
  } finally {
    await retire(ctx, pod, result, options.rm ?? false);
  }
}
