/**
 * Where apps' cgroups live and how they are cleaned up.
 *
 * Every app gets the runtime leaf `/gantry/<podUuid>/<app>/ctr` (cgroupfs
 * driver, the same relative path in every hierarchy). The runtime creates
 * and removes the leaf; the parents `/gantry/<podUuid>/<app>` and
 * `/gantry/<podUuid>` stay so gantry can read what happened to the app (OOM
 * kills) after the runtime is gone, and are removed by removePodCgroups.
 * On a cgroup v2 host run by systemd, the runtime's systemd driver is used
 * instead (`gantry.slice:gantry:<uuid>-<app>`) so systemd does not fight
 * over directories it does not know.
 *
 * ensureCgroupLayout fixes the one host layout crun refuses: v1 hierarchies
 * plus a v2 mount (/sys/fs/cgroup/unified) that holds controllers. It mounts
 * those controllers' v1 hierarchies, which moves them out of the v2 tree.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../../context.js';
import { GantryError, errnoCode } from '../../errors.js';
import { mount, flock, LOCK_EX, LOCK_UN, MS_NOSUID, MS_NODEV } from '../../sys/libc.js';
import { setTimeout as sleep } from 'node:timers/promises';

const MS_NOEXEC = 8;
const CGROUP_ROOT = '/sys/fs/cgroup';
const LAYOUT_LOCK = '/run/gantry/cgroup-layout.lock';

export interface CgroupHierarchy {
  mountPoint: string;
  /** Mount root inside the hierarchy ('/' unless in a cgroup namespace). */
  root: string;
  v2: boolean;
  /** v1: the controllers (and name=...) of the hierarchy; v2: cgroup.controllers. */
  controllers: string[];
}

export interface CgroupInfo {
  /** 'v2' = unified only; 'v1' = legacy only; 'hybrid' = v1 plus a v2 mount. */
  mode: 'v1' | 'v2' | 'hybrid';
  /** systemd manages this host (/run/systemd/system exists). */
  systemd: boolean;
  hierarchies: CgroupHierarchy[];
}

function readTrim(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function detectCgroups(): CgroupInfo {
  const hierarchies: CgroupHierarchy[] = [];
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    const fstype = post[0];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const mountPoint = pre[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const v2 = fstype === 'cgroup2';
    const controllers = v2
      ? (readTrim(path.join(mountPoint, 'cgroup.controllers')) ?? '').split(/\s+/).filter(Boolean)
      : (post[2] ?? '').split(',').filter((o) => o.startsWith('name=') || !['rw', 'ro', 'relatime', 'noatime', 'nosuid', 'nodev', 'noexec', 'clone_children', 'xattr'].includes(o) && !o.includes('='));
    hierarchies.push({ mountPoint, root: pre[3] ?? '/', v2, controllers });
  }
  const hasV1 = hierarchies.some((h) => !h.v2);
  const hasV2 = hierarchies.some((h) => h.v2);
  return {
    mode: hasV1 ? (hasV2 ? 'hybrid' : 'v1') : 'v2',
    systemd: fs.existsSync('/run/systemd/system'),
    hierarchies,
  };
}

/** True when the runtime should be run with --systemd-cgroup. */
export function useSystemdDriver(info: CgroupInfo): boolean {
  return info.mode === 'v2' && info.systemd;
}

export function podCgroupPath(uuid: string): string {
  return `/gantry/${uuid}`;
}

export function appCgroupPath(uuid: string, app: string): string {
  return `/gantry/${uuid}/${app}`;
}

/** The OCI linux.cgroupsPath of an app. */
export function cgroupsPathFor(info: CgroupInfo, uuid: string, app: string): string {
  if (useSystemdDriver(info)) return `gantry.slice:gantry:${uuid}-${app}`;
  return `${appCgroupPath(uuid, app)}/ctr`;
}

/** Controllers a hybrid host still has on its v2 hierarchy: what crun refuses. */
export function layoutProblems(info: CgroupInfo): string[] {
  if (info.mode !== 'hybrid') return [];
  const v1Controllers = new Set(info.hierarchies.filter((h) => !h.v2).flatMap((h) => h.controllers));
  return info.hierarchies
    .filter((h) => h.v2)
    .flatMap((h) => h.controllers)
    .filter((c) => /^[a-z_]+$/.test(c) && !v1Controllers.has(c));
}

/**
 * Makes a hybrid host acceptable to crun: every controller still attached to
 * the v2 hierarchy gets its own v1 hierarchy under /sys/fs/cgroup. Serialised
 * across gantry processes (whatever their --dir) by a lock in /run. A no-op
 * on pure v1 or v2 hosts.
 */
export function ensureCgroupLayout(ctx: Context): CgroupInfo {
  // One answer per process: run, status and gc of one command ask in turn,
  // and the layout only ever changes by the mounts made below.
  if (layoutChecked) return layoutChecked;
  layoutChecked = fixCgroupLayout(ctx);
  return layoutChecked;
}

let layoutChecked: CgroupInfo | undefined;

function fixCgroupLayout(ctx: Context): CgroupInfo {
  let info = detectCgroups();
  if (layoutProblems(info).length === 0) return info;
  fs.mkdirSync(path.dirname(LAYOUT_LOCK), { recursive: true, mode: 0o700 });
  const fd = fs.openSync(LAYOUT_LOCK, 'a', 0o600);
  try {
    flock(fd, LOCK_EX);
    info = detectCgroups(); // another gantry may have fixed it while we waited
    for (const controller of layoutProblems(info)) {
      const target = path.join(CGROUP_ROOT, controller);
      ctx.debug(`cgroups: hybrid layout with "${controller}" on the v2 hierarchy, which crun refuses; mounting its v1 hierarchy at ${target}`);
      try {
        fs.mkdirSync(target, { recursive: true, mode: 0o755 });
        mount('cgroup', target, 'cgroup', MS_NOSUID | MS_NODEV | MS_NOEXEC, controller);
      } catch (err) {
        throw new GantryError('RUNTIME_ERROR', `cannot mount the cgroup v1 hierarchy of "${controller}" at ${target}: ${errnoCode(err) ?? String(err)}`, {
          hint: `the controller is in use on the cgroup v2 hierarchy; free it (or boot with a pure v1 or v2 layout), then retry`,
          cause: err,
        });
      }
    }
    info = detectCgroups();
  } finally {
    try {
      flock(fd, LOCK_UN);
    } finally {
      fs.closeSync(fd);
    }
  }
  return info;
}

function hostDir(h: CgroupHierarchy, cgPath: string): string {
  return path.join(h.mountPoint, cgPath);
}

/**
 * Whether the kernel's OOM killer ended the app. v2 counts OOM kills
 * hierarchically, so the app cgroup (the runtime leaf's parent, which
 * outlives it) answers exactly. v1 counts them only in the leaf, which the
 * runtime has removed; there the answer is inferred: the app died of SIGKILL
 * and the app cgroup's peak usage reached the memory limit.
 */
export function detectOomKill(info: CgroupInfo, uuid: string, app: string, memoryLimit: number | undefined, signal: string | undefined): boolean {
  if (useSystemdDriver(info)) return false; // the scope is gone with the app
  const cg = appCgroupPath(uuid, app);
  const memory = info.hierarchies.find((h) => (h.v2 ? h.controllers.includes('memory') && info.mode === 'v2' : h.controllers.includes('memory')));
  if (!memory) return false;
  if (memory.v2) {
    const events = readTrim(path.join(hostDir(memory, cg), 'memory.events')) ?? '';
    const m = /^oom_kill (\d+)$/m.exec(events);
    return m !== null && Number(m[1]) > 0;
  }
  if (signal !== 'SIGKILL' || memoryLimit === undefined) return false;
  const slack = 256 * 1024 + Math.floor(memoryLimit / 64);
  for (const file of ['memory.max_usage_in_bytes', 'memory.memsw.max_usage_in_bytes']) {
    const peak = Number(readTrim(path.join(hostDir(memory, cg), file)) ?? NaN);
    if (Number.isFinite(peak) && peak + slack >= memoryLimit) return true;
  }
  return false;
}

/** Whether the host accounts swap (so a memory limit can also cap swap). */
export function swapAccounted(info: CgroupInfo): boolean {
  const memory = info.hierarchies.find((h) => !h.v2 && h.controllers.includes('memory'));
  if (memory) return fs.existsSync(path.join(memory.mountPoint, 'memory.memsw.limit_in_bytes'));
  return false;
}

/** Removes a cgroup dir tree, leaves first. Returns the dirs that stayed. */
async function rmdirTree(dir: string): Promise<string[]> {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    return [dir];
  }
  const left: string[] = [];
  for (const e of entries) if (e.isDirectory()) left.push(...(await rmdirTree(path.join(dir, e.name))));
  // A cgroup whose last task just exited may stay busy for a moment.
  for (let attempt = 0; attempt < 25; attempt++) {
    try {
      fs.rmdirSync(dir);
      return left;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return left;
      if (code !== 'EBUSY' && code !== 'ENOTEMPTY') break;
      await sleep(20);
    }
  }
  return [...left, dir];
}

/**
 * Removes `/gantry/<uuid>` (or one app's subtree) from every hierarchy.
 * Idempotent; returns the dirs that could not be removed (still in use).
 */
export async function removePodCgroups(info: CgroupInfo, uuid: string, app?: string): Promise<string[]> {
  const cg = app === undefined ? podCgroupPath(uuid) : appCgroupPath(uuid, app);
  const left: string[] = [];
  const seen = new Set<string>();
  for (const h of info.hierarchies) {
    const dir = hostDir(h, cg);
    if (seen.has(dir)) continue;
    seen.add(dir);
    left.push(...(await rmdirTree(dir)));
    if (app === undefined) removeIfEmpty(path.dirname(dir));
  }
  return left;
}

/**
 * The shared /gantry parent goes when its last pod does, so a host without
 * pods carries no gantry cgroup. rmdir(2) refuses a non-empty cgroup, which
 * is the answer we want when other pods live; a runtime creating the next
 * pod recreates the parent (mkdir -p).
 */
function removeIfEmpty(dir: string): void {
  if (path.basename(dir) !== 'gantry') return;
  // Synchronous: rmdir on a cgroup fs does no I/O, and a thread-pool round trip per hierarchy costs more than the call.
  try {
    fs.rmdirSync(dir);
  } catch {
    // in use by another pod, or already gone
  }
}
