/**
 * Pods on disk, rkt's model: `<dir>/pods/<state>/<uuid>/`, one directory per
 * pod, moved between state directories by rename(2), with liveness told by
 * the pod's flock (lock.ts).
 *
 *   embryo          mkdir'd; the creator takes the lock, then moves it on
 *   prepare         locked: being prepared; unlocked: preparation failed
 *   prepared        ready; locked only while a run-prepared is taking it
 *   run             locked: running; unlocked: exited (or stage0 was killed)
 *   exited-garbage  exited; kept (logs, status) for the gc grace period
 *   garbage         being deleted
 *
 * Every transition happens under the pod's exclusive lock, so two gantry
 * processes never move the same pod; a process killed at any point leaves a
 * directory whose state + lock say exactly what `list`, `status` and `gc`
 * need to do with it. Files stage0 owns in a pod dir: lock, pod.json,
 * status.json (the final status, written when the pod leaves `run`),
 * stage1-gc-done (marker), volumes/ (empty volumes); stage1 owns the rest.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { GantryError, errnoCode } from '../errors.js';
import { POD_UUID_RE, type PodStatus } from '../stage1/abi.js';
import { MNT_DETACH, umount2 } from '../sys/libc.js';
import { createPodLock, isPodLocked, tryLockPod, unlockPod } from './lock.js';
import { readPodManifest, type PodManifest } from './manifest.js';
import { stage1For } from './stage1.js';
import { recordAudit } from '../audit/log.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { mountsUnder } from '../sys/mounts.js';

export const POD_DIR_STATES = ['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage'] as const;
export type PodDirState = (typeof POD_DIR_STATES)[number];

/** The state users see: the dir state combined with the lock. */
export type PodState = 'embryo' | 'preparing' | 'aborted-prepare' | 'prepared' | 'running' | 'exited' | 'garbage';

export const STATUS_FILE = 'status.json';
const STAGE1_GC_MARKER = 'stage1-gc-done';
/** Pods stuck in embryo/prepare with a free lock are removed after this long (a crashed gantry). */
export const ABANDONED_PREPARE_GRACE_MS = 60_000;

/** What stage0 records when a pod leaves `run`. */
export interface FinalStatus extends PodStatus {
  exitedAt: string;
}

export interface PodInfo {
  uuid: string;
  dirState: PodDirState;
  dir: string;
  state: PodState;
  /** Absent while the pod is an embryo or when its preparation failed early. */
  manifest?: PodManifest;
  /** The manifest's creation time, else the directory's mtime. */
  createdAt: string;
  /** When the pod left `run` (from status.json). */
  exitedAt?: string;
}

export function podsRoot(ctx: Context): string {
  return path.join(ctx.dir, 'pods');
}

export function podDirOf(ctx: Context, state: PodDirState, uuid: string): string {
  return path.join(podsRoot(ctx), state, uuid);
}

function ensureStateDirs(ctx: Context): void {
  for (const s of POD_DIR_STATES) fs.mkdirSync(path.join(podsRoot(ctx), s), { recursive: true, mode: 0o700 });
}

/**
 * Moves a pod between state dirs; the caller holds its lock. Returns the new
 * dir. rename(2) is atomic: a crash leaves the pod in exactly one state.
 */
export function movePod(ctx: Context, uuid: string, from: PodDirState, to: PodDirState): string {
  const dest = podDirOf(ctx, to, uuid);
  fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
  fs.renameSync(podDirOf(ctx, from, uuid), dest);
  return dest;
}

/** A new pod in `prepare`, locked by the caller (who must unlock or hand over `lockFd`). */
export interface NewPod {
  uuid: string;
  dir: string;
  lockFd: number;
}

export function createPod(ctx: Context): NewPod {
  ensureStateDirs(ctx);
  const uuid = randomUUID();
  const embryo = podDirOf(ctx, 'embryo', uuid);
  try {
    fs.mkdirSync(embryo, { mode: 0o700 });
  } catch (err) {
    throw new GantryError('CONFIG_INVALID', `cannot create pod directory ${embryo}: ${(err as Error).message}`, {
      hint: 'run gantry as root, or point --dir at a writable directory',
      cause: err,
    });
  }
  const lockFd = createPodLock(embryo);
  return { uuid, dir: movePod(ctx, uuid, 'embryo', 'prepare'), lockFd };
}

function derivedState(dirState: PodDirState, locked: boolean): PodState {
  switch (dirState) {
    case 'embryo': return 'embryo';
    case 'prepare': return locked ? 'preparing' : 'aborted-prepare';
    case 'prepared': return 'prepared';
    case 'run': return locked ? 'running' : 'exited';
    case 'exited-garbage': return 'exited';
    case 'garbage': return 'garbage';
  }
}

function readFinalStatus(dir: string): FinalStatus | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STATUS_FILE), 'utf8')) as FinalStatus;
  } catch {
    return undefined;
  }
}

function loadInfo(ctx: Context, dirState: PodDirState, uuid: string): PodInfo | undefined {
  const dir = podDirOf(ctx, dirState, uuid);
  let mtime: Date;
  try {
    mtime = fs.statSync(dir).mtime;
  } catch {
    return undefined;
  }
  let manifest: PodManifest | undefined;
  try {
    manifest = readPodManifest(dir);
  } catch {
    manifest = undefined;
  }
  const locked = isPodLocked(dir);
  const final = dirState === 'exited-garbage' || dirState === 'run' ? readFinalStatus(dir) : undefined;
  return {
    uuid, dirState, dir,
    state: derivedState(dirState, locked),
    ...(manifest ? { manifest } : {}),
    createdAt: manifest?.createdAt ?? mtime.toISOString(),
    ...(final?.exitedAt ? { exitedAt: final.exitedAt } : {}),
  };
}

/** Every pod on disk, oldest first. A pod seen twice (moved during the scan) is reported once, in its later state. */
export function listPods(ctx: Context): PodInfo[] {
  const byUuid = new Map<string, PodInfo>();
  for (const state of POD_DIR_STATES) {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(podsRoot(ctx), state));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      if (!POD_UUID_RE.test(name)) continue;
      const info = loadInfo(ctx, state, name);
      if (info) byUuid.set(name, info);
    }
  }
  return [...byUuid.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** Finds one pod by full UUID or unique prefix, in any state. */
export function findPod(ctx: Context, text: string): PodInfo {
  const prefix = text.trim().toLowerCase();
  if (!/^[0-9a-f-]{1,36}$/.test(prefix)) {
    throw new GantryError('POD_NOT_FOUND', `"${text}" is not a pod UUID or UUID prefix`, { hint: 'gantry list shows the pods' });
  }
  const matches = listPods(ctx).filter((p) => p.uuid.startsWith(prefix));
  if (matches.length === 0) throw new GantryError('POD_NOT_FOUND', `no pod ${text}`, { hint: 'gantry list shows the pods' });
  if (matches.length > 1) {
    throw new GantryError('POD_NOT_FOUND', `UUID prefix "${text}" is ambiguous: it matches ${matches.map((p) => p.uuid).join(', ')}`, {
      hint: 'give more characters of the UUID',
    });
  }
  return matches[0]!;
}

/** Throws POD_STATE unless the pod is running. */
export function requireRunning(pod: PodInfo, verb: string): PodManifest {
  if (pod.state !== 'running' || !pod.manifest) {
    throw new GantryError('POD_STATE', `cannot ${verb} pod ${pod.uuid}: it is ${pod.state}, not running`, {
      hint: pod.state === 'prepared' ? `start it with gantry run-prepared ${pod.uuid}` : 'gantry list shows which pods are running',
    });
  }
  return pod.manifest;
}

// --- status ------------------------------------------------------------------

export interface PodStatusView extends PodStatus {
  uuid: string;
  state: PodState;
  dirState: PodDirState;
  createdAt: string;
  exitedAt?: string;
}

/** The pod's status: stage1's records while it has them, else what stage0 saved when it exited. */
export async function podStatus(ctx: Context, pod: PodInfo): Promise<PodStatusView> {
  const base = { uuid: pod.uuid, state: pod.state, dirState: pod.dirState, createdAt: pod.createdAt, ...(pod.exitedAt ? { exitedAt: pod.exitedAt } : {}) };
  const final = readFinalStatus(pod.dir);
  if (final && final.apps.length > 0 && pod.state !== 'running') return { ...base, apps: final.apps, ...(final.network ? { network: final.network } : {}) };
  const appsFromManifest = (): PodStatus['apps'] => (pod.manifest?.apps ?? []).map((a) => ({ name: a.name, state: 'created' as const }));
  if (!pod.manifest || pod.dirState === 'prepare' || pod.dirState === 'prepared' || pod.dirState === 'embryo') {
    return { ...base, apps: appsFromManifest() };
  }
  try {
    const s = await stage1For(ctx, pod.manifest).status({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: pod.manifest.ociRuntime });
    return { ...base, ...s };
  } catch (err) {
    ctx.debug(`pod ${pod.uuid}: stage1 status failed: ${(err as Error).message}`);
    return { ...base, apps: final?.apps.length ? final.apps : appsFromManifest(), ...(final?.network ? { network: final.network } : {}) };
  }
}

/** Records the final status of a pod leaving `run` (best effort: stage1 may have nothing). */
export async function saveFinalStatus(ctx: Context, pod: { uuid: string; dir: string; manifest?: PodManifest }, fallback?: PodStatus): Promise<void> {
  if (readFinalStatus(pod.dir)) return;
  let status: PodStatus = fallback ?? { apps: [] };
  if (pod.manifest) {
    try {
      const s = await stage1For(ctx, pod.manifest).status({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: pod.manifest.ociRuntime });
      // stage1's view wins, but the exit codes stage0 saw directly fill its gaps.
      const apps = s.apps.map((a) => {
        const seen = fallback?.apps.find((f) => f.name === a.name);
        return seen && a.exitCode === undefined ? { ...seen, ...a, exitCode: seen.exitCode, state: 'exited' as const } : a;
      });
      status = { ...s, apps: apps.length ? apps : status.apps };
    } catch (err) {
      ctx.debug(`pod ${pod.uuid}: stage1 status failed: ${(err as Error).message}`);
    }
  }
  const final: FinalStatus = { ...status, exitedAt: new Date().toISOString() };
  const file = path.join(pod.dir, STATUS_FILE);
  writeFileAtomicSync(file, JSON.stringify(final, null, 2) + '\n', { durable: false });
}

// --- cleanup -----------------------------------------------------------------

export async function stage1Gc(ctx: Context, pod: { uuid: string; dir: string; manifest?: PodManifest }): Promise<void> {
  if (!pod.manifest) return; // stage1 never saw a pod without a manifest
  if (fs.existsSync(path.join(pod.dir, STAGE1_GC_MARKER))) return;
  await stage1For(ctx, pod.manifest).gc({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: pod.manifest.ociRuntime });
  fs.writeFileSync(path.join(pod.dir, STAGE1_GC_MARKER), '');
}

/**
 * Deletes a pod dir. Anything still mounted under it is detached first and
 * the delete refuses if a mount survives: a recursive delete must never walk
 * into a bind-mounted host directory.
 */
export function removePodDir(dir: string): void {
  for (const m of mountsUnder(dir)) {
    try {
      umount2(m, MNT_DETACH);
    } catch {
      // checked below
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) {
    throw new GantryError('POD_STATE', `cannot delete ${dir}: still mounted: ${left.join(', ')}`, { hint: 'unmount them, then run gantry gc again' });
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Moves an exited pod (in `run`, lock free, locked now by the caller) to
 * exited-garbage: final status first, then stage1's cleanup unless only
 * the move is wanted.
 */
async function retireExited(ctx: Context, pod: PodInfo, cleanup: boolean): Promise<string> {
  await saveFinalStatus(ctx, pod);
  if (cleanup) {
    try {
      await stage1Gc(ctx, pod);
    } catch (err) {
      ctx.warn(`pod ${pod.uuid}: stage1 cleanup failed (gantry gc will retry): ${(err as Error).message}`);
    }
  }
  return movePod(ctx, pod.uuid, 'run', 'exited-garbage');
}

/**
 * Opportunistic: moves pods in `run` whose lock is free to exited-garbage
 * (no cleanup), so listings agree with the disk. Busy pods are skipped.
 */
export async function retireExitedPods(ctx: Context, pods: PodInfo[]): Promise<void> {
  for (const pod of pods) {
    if (pod.dirState !== 'run' || pod.state !== 'exited') continue;
    const lock = await tryLockPod(pod.dir, 0);
    if (!('fd' in lock)) continue;
    try {
      pod.dir = await retireExited(ctx, pod, false);
      pod.dirState = 'exited-garbage';
      pod.exitedAt = readFinalStatus(pod.dir)?.exitedAt;
    } catch (err) {
      ctx.debug(`pod ${pod.uuid}: could not move to exited-garbage: ${(err as Error).message}`);
    } finally {
      unlockPod(lock.fd);
    }
  }
}

export interface GcOptions {
  /** Exited pods are kept this long after they exit (default 30m, as rkt). */
  gracePeriodMs?: number;
  /** Prepared pods never run are removed after this long (default 24h, as rkt). */
  expirePreparedMs?: number;
  now?: Date;
}

export interface GcAction {
  uuid: string;
  action: 'moved-to-exited-garbage' | 'cleaned' | 'removed';
}

export const DEFAULT_GC_GRACE_MS = 30 * 60_000;
export const DEFAULT_EXPIRE_PREPARED_MS = 24 * 3_600_000;

/**
 * One gc pass. Exited pods are cleaned at once (mounts, cgroups, processes:
 * stage1 gc) and moved to exited-garbage; their records are deleted when
 * the grace period has passed. Aborted preparations and expired prepared
 * pods go straight to garbage. Locked pods are never touched.
 */
export async function gcPods(ctx: Context, options: GcOptions = {}): Promise<{ actions: GcAction[]; errors: string[] }> {
  const now = (options.now ?? new Date()).getTime();
  const grace = options.gracePeriodMs ?? DEFAULT_GC_GRACE_MS;
  const expirePrepared = options.expirePreparedMs ?? DEFAULT_EXPIRE_PREPARED_MS;
  const actions: GcAction[] = [];
  const errors: string[] = [];
  for (const pod of listPods(ctx)) {
    const lock = await tryLockPod(pod.dir, 0);
    if (!('fd' in lock)) continue;
    try {
      let dirState = pod.dirState;
      let dir = pod.dir;
      const age = now - fs.statSync(dir).mtime.getTime();
      if (dirState === 'run') {
        dir = await retireExited(ctx, pod, true);
        dirState = 'exited-garbage';
        actions.push({ uuid: pod.uuid, action: 'moved-to-exited-garbage' });
      }
      if (dirState === 'exited-garbage') {
        const p = { ...pod, dir };
        if (!fs.existsSync(path.join(dir, STAGE1_GC_MARKER))) {
          await stage1Gc(ctx, p);
          actions.push({ uuid: pod.uuid, action: 'cleaned' });
        }
        const exitedAt = Date.parse(readFinalStatus(dir)?.exitedAt ?? '') || fs.statSync(dir).mtime.getTime();
        // A pod retired just now has exitedAt after `now`: compare with the clock as it is.
        if ((options.now ? now : Date.now()) - exitedAt >= grace) {
          dir = movePod(ctx, pod.uuid, 'exited-garbage', 'garbage');
          dirState = 'garbage';
        }
      } else if ((dirState === 'embryo' || dirState === 'prepare') && age >= ABANDONED_PREPARE_GRACE_MS) {
        dir = movePod(ctx, pod.uuid, dirState, 'garbage');
        dirState = 'garbage';
      } else if (dirState === 'prepared' && age >= expirePrepared) {
        dir = movePod(ctx, pod.uuid, 'prepared', 'garbage');
        dirState = 'garbage';
      }
      if (dirState === 'garbage') {
        await stage1Gc(ctx, { ...pod, dir });
        removePodDir(dir);
        actions.push({ uuid: pod.uuid, action: 'removed' });
      }
    } catch (err) {
      errors.push(`pod ${pod.uuid}: ${(err as Error).message}`);
    } finally {
      unlockPod(lock.fd);
    }
  }
  if (actions.length > 0) await recordAudit(ctx, 'gc', 'pods', { actions });
  return { actions, errors };
}

/** Removes one pod that is not running (any other state), with stage1's cleanup. */
export async function removePod(ctx: Context, pod: PodInfo): Promise<void> {
  const lock = await tryLockPod(pod.dir);
  if ('gone' in lock) throw new GantryError('POD_STATE', `pod ${pod.uuid} changed state meanwhile`, { hint: 'run the command again' });
  if ('busy' in lock) {
    throw new GantryError('POD_STATE', `pod ${pod.uuid} is ${pod.state === 'running' || pod.dirState === 'run' ? 'running' : 'busy (being prepared or started)'}`, {
      hint: `stop it first: gantry stop ${pod.uuid}`,
    });
  }
  try {
    let dir = pod.dir;
    if (pod.dirState === 'run') await saveFinalStatus(ctx, pod);
    if (pod.dirState !== 'garbage') dir = movePod(ctx, pod.uuid, pod.dirState, 'garbage');
    await stage1Gc(ctx, { ...pod, dir });
    removePodDir(dir);
    await recordAudit(ctx, 'rm', pod.uuid, {});
  } finally {
    unlockPod(lock.fd);
  }
}

/** Image IDs used by pods on disk: `image gc`/`image rm` must keep them. */
export function imagesInUse(ctx: Context): Map<string, string[]> {
  const used = new Map<string, string[]>();
  for (const pod of listPods(ctx)) {
    for (const app of pod.manifest?.apps ?? []) {
      const list = used.get(app.image.id) ?? [];
      if (!list.includes(pod.uuid)) list.push(pod.uuid);
      used.set(app.image.id, list);
    }
  }
  return used;
}

/** Waits until a running pod's lock is free; false on timeout. Polls, bounded by `timeoutMs`. */
export async function waitForExit(pod: PodInfo, timeoutMs = Number.POSITIVE_INFINITY, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isPodLocked(pod.dir) || !fs.existsSync(pod.dir)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(1, deadline - Date.now()))));
  }
}
