/**
 * Foreground run of a pod through an OCI runtime (crun by default, runc, or
 * any runtime with runc's command line).
 *
 * For each app: mount its overlay rootfs, resolve its user inside that
 * rootfs, write the bundle's config.json, then `<runtime> run` it with
 * stdio passed through. All apps start together; the call returns when the
 * last one exited. SIGINT/SIGTERM/SIGHUP received meanwhile are forwarded to
 * the runtime processes (both crun and runc relay them to the app). Cleanup
 * always runs: runtime state (`delete -f` if the runtime left any), the
 * overlay mounts, the pod's cgroups.
 *
 * Runtime state lives under <ctx.dir>/runtime/<runtime name>, so gantry
 * instances with different --dir never see each other's containers.
 * Runtime errors (as opposed to the app's exit code) are told apart through
 * the runtime's JSON log, <podDir>/apps/<app>/runtime.log.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Context } from '../../context.js';
import { GantryError, errnoCode } from '../../errors.js';
import type { AppResult, AppSpec, PodRef, PodResult, PodSpec, RunOptions } from '../abi.js';
import { resolveUser } from '../user.js';
import { detectOomKill, ensureCgroupLayout, removePodCgroups, swapAccounted, useSystemdDriver, cgroupsPathFor, type CgroupInfo } from './cgroups.js';
import { appPaths, mountAppRootfs, removeAppDir, unmountAppRootfs, type AppPaths } from './rootfs.js';
import { buildAppSpec, readHostFacts, validateHostname, writePodEtc } from './spec.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const APP_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** How long `delete -f` may take before gantry gives up on it. */
const DELETE_TIMEOUT_MS = 15000;

export interface OciRuntime {
  /** 'crun', 'runc', or the basename of a custom runtime. */
  name: string;
  path: string;
  /** --root of the runtime: its state dir for this gantry --dir. */
  stateRoot: string;
  /** crun takes --log=file:PATH, runc --log PATH. */
  isCrun: boolean;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Finds the runtime binary: 'crun' (default), 'runc', another name on PATH, or an absolute path. */
export function resolveRuntime(ctx: Context, ociRuntime = 'crun'): OciRuntime {
  let found: string | undefined;
  if (ociRuntime.includes('/')) {
    if (!path.isAbsolute(ociRuntime)) {
      throw new GantryError('USAGE', `--oci-runtime path "${ociRuntime}" is not absolute`, { hint: 'give crun, runc, or an absolute path' });
    }
    if (isExecutable(ociRuntime)) found = ociRuntime;
  } else {
    if (!/^[A-Za-z0-9._-]+$/.test(ociRuntime)) {
      throw new GantryError('USAGE', `invalid --oci-runtime "${ociRuntime}"`, { hint: 'give crun, runc, or an absolute path' });
    }
    const dirs = `${process.env.PATH ?? ''}:${FALLBACK_PATH}`.split(':').filter(Boolean);
    found = dirs.map((d) => path.join(d, ociRuntime)).find(isExecutable);
  }
  if (!found) {
    throw new GantryError('RUNTIME_ERROR', `OCI runtime "${ociRuntime}" not found`, {
      hint: 'install crun (apt install crun) or pass --oci-runtime=runc or --oci-runtime=/path/to/runtime',
    });
  }
  const name = path.basename(found);
  ctx.debug(`stage1 ns: OCI runtime ${found}`);
  return { name, path: found, stateRoot: path.join(ctx.dir, 'runtime', name), isCrun: name.includes('crun') };
}

/** The runtime's container id of an app: short enough for every runtime, unique per pod and app. */
export function containerId(uuid: string, app: string): string {
  return `gantry-${uuid.replace(/-/g, '').slice(0, 8)}-${app}`;
}

export function validatePodRef(ref: PodRef): void {
  if (!UUID_RE.test(ref.uuid)) {
    throw new GantryError('CONFIG_INVALID', `invalid pod UUID "${ref.uuid}"`, { hint: 'pod UUIDs look like 0f5c1a52-8d1e-4a5e-9b3c-7f2d2a9b1c4e' });
  }
  if (!path.isAbsolute(ref.podDir)) {
    throw new GantryError('CONFIG_INVALID', `pod dir "${ref.podDir}" is not absolute`, { hint: 'this is a bug in the caller; please report it' });
  }
}

function validatePod(pod: PodSpec): void {
  validatePodRef(pod);
  if (pod.apps.length === 0) throw new GantryError('CONFIG_INVALID', `pod ${pod.uuid} has no apps`, { hint: 'give at least one image to run' });
  const seen = new Set<string>();
  for (const app of pod.apps) {
    if (!APP_NAME_RE.test(app.name)) {
      throw new GantryError('CONFIG_INVALID', `invalid app name "${app.name}"`, {
        hint: 'app names are 1-63 lower-case letters, digits and "-", starting and ending with a letter or digit (--name)',
      });
    }
    if (seen.has(app.name)) {
      throw new GantryError('CONFIG_INVALID', `app name "${app.name}" is used twice in the pod`, { hint: 'give each app its own --name' });
    }
    seen.add(app.name);
  }
  if (pod.net !== 'none' && pod.net !== 'host') {
    throw new GantryError('CONFIG_INVALID', `unsupported pod network "${String(pod.net)}"`, { hint: 'use --net=none or --net=host' });
  }
}

function runtimeGlobalArgs(rt: OciRuntime, info: CgroupInfo | undefined, logFile?: string): string[] {
  const args = ['--root', rt.stateRoot];
  if (logFile) args.push(...(rt.isCrun ? [`--log=file:${logFile}`] : ['--log', logFile]), '--log-format', 'json');
  if (info && useSystemdDriver(info)) args.push('--systemd-cgroup');
  return args;
}

/** Error lines of a runtime's JSON log. */
function runtimeErrors(logFile: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n').slice(0, 1000)) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      if ((entry.level === 'error' || entry.level === 'fatal') && typeof entry.msg === 'string') out.push(entry.msg);
    } catch {
      out.push(line.slice(0, 500));
    }
  }
  return out;
}

function signalName(n: number): string | undefined {
  return Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0];
}

/** Runs a runtime command to completion with a time bound; resolves to its exit code (or -1). */
function runQuiet(rt: OciRuntime, args: string[], timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(rt.path, args, { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', () => {
      clearTimeout(timer);
      resolve(-1);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}

/** Deletes the runtime's state of a container if it left any (crun/runc run normally remove it). */
async function deleteContainer(ctx: Context, rt: OciRuntime, info: CgroupInfo | undefined, id: string): Promise<void> {
  if (!fs.existsSync(path.join(rt.stateRoot, id))) return;
  ctx.debug(`stage1 ns: ${rt.name} left state for ${id}; deleting it`);
  const code = await runQuiet(rt, [...runtimeGlobalArgs(rt, info), 'delete', '--force', id], DELETE_TIMEOUT_MS);
  if (code !== 0 && fs.existsSync(path.join(rt.stateRoot, id))) {
    ctx.warn(`could not delete runtime state of container ${id} (${rt.name} exited ${code}); run gantry gc`);
  }
}

interface PreparedApp {
  app: AppSpec;
  paths: AppPaths;
  id: string;
  mounted: boolean;
}

/** Mounts, resolves and writes the bundle of one app. */
function prepareApp(ctx: Context, pod: PodSpec, app: AppSpec, prepared: PreparedApp, common: {
  hostname: string; info: CgroupInfo; etc: ReturnType<typeof writePodEtc>; host: ReturnType<typeof readHostFacts>;
}): void {
  fs.mkdirSync(prepared.paths.appDir, { recursive: true, mode: 0o700 });
  mountAppRootfs(prepared.paths, app.layers);
  prepared.mounted = true;
  const user = resolveUser(prepared.paths.rootfs, app.user ?? app.config.User, app.group);
  const spec = buildAppSpec({
    ctx, pod, app, user,
    hostname: common.hostname,
    cgroupsPath: cgroupsPathFor(common.info, pod.uuid, app.name),
    etc: common.etc,
    host: common.host,
  });
  fs.writeFileSync(prepared.paths.bundleConfig, JSON.stringify(spec, null, 2), { mode: 0o600 });
  fs.writeFileSync(prepared.paths.runtimeLog, '', { mode: 0o600 });
  ctx.debug(`stage1 ns: app ${app.name}: uid ${user.uid} gid ${user.gid}, args ${JSON.stringify(spec.process.args)}`);
}

interface Exit { code: number | null; signal: NodeJS.Signals | null }

export async function runPod(ctx: Context, pod: PodSpec, options: RunOptions = {}): Promise<PodResult> {
  validatePod(pod);
  const hostname = pod.hostname ?? `gantry-${pod.uuid.slice(0, 8)}`;
  validateHostname(hostname);
  const rt = resolveRuntime(ctx, pod.ociRuntime);
  fs.mkdirSync(rt.stateRoot, { recursive: true, mode: 0o700 });
  const info = ensureCgroupLayout(ctx);
  const host = readHostFacts({ swapAccounted: swapAccounted(info), cgroupV2: info.mode === 'v2' });
  const etc = writePodEtc(pod, hostname);

  const prepared: PreparedApp[] = pod.apps.map((app) => ({
    app, paths: appPaths(pod.podDir, app.name), id: containerId(pod.uuid, app.name), mounted: false,
  }));
  const running = new Map<string, ReturnType<typeof spawn>>();
  const forward = (sig: NodeJS.Signals): void => {
    ctx.debug(`stage1 ns: forwarding ${sig} to ${running.size} app(s)`);
    for (const child of running.values()) child.kill(sig);
  };
  const signals: NodeJS.Signals[] = options.forwardSignals === false ? [] : ['SIGINT', 'SIGTERM', 'SIGHUP'];

  try {
    for (const p of prepared) prepareApp(ctx, pod, p.app, p, { hostname, info, etc, host });
    for (const sig of signals) process.on(sig, forward);

    const stdio = options.stdio ?? ['inherit', 'inherit', 'inherit'];
    const exits = await Promise.all(prepared.map((p) => new Promise<Exit>((resolve, reject) => {
      const args = [...runtimeGlobalArgs(rt, info, p.paths.runtimeLog), 'run', '--bundle', p.paths.appDir, p.id];
      ctx.debug(`stage1 ns: ${rt.path} ${args.join(' ')}`);
      const child = spawn(rt.path, args, { stdio });
      running.set(p.id, child);
      child.on('error', (err) => {
        running.delete(p.id);
        reject(new GantryError('RUNTIME_ERROR', `cannot start ${rt.path}: ${errnoCode(err) ?? String(err)}`, { cause: err }));
      });
      child.on('exit', (code, signal) => {
        running.delete(p.id);
        resolve({ code, signal });
      });
    })));

    const results: AppResult[] = [];
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i]!;
      const exit = exits[i]!;
      let exitCode: number;
      let signal: string | undefined;
      if (exit.code === null) {
        const n = exit.signal ? os.constants.signals[exit.signal] : 9;
        exitCode = 128 + n;
        signal = exit.signal ?? 'SIGKILL';
      } else {
        exitCode = exit.code;
        if (exitCode > 128 && exitCode <= 128 + 64) signal = signalName(exitCode - 128);
      }
      if (exitCode !== 0) {
        const errors = runtimeErrors(p.paths.runtimeLog);
        if (errors.length > 0) {
          throw new GantryError('RUNTIME_ERROR', `${rt.name} could not run app "${p.app.name}": ${errors.join('; ')}`, {
            hint: `see ${p.paths.runtimeLog}; check the image's command (--exec) and user`,
          });
        }
      }
      const oomKilled = detectOomKill(info, pod.uuid, p.app.name, p.app.limits?.memoryBytes, signal);
      results.push({ app: p.app.name, exitCode, ...(signal ? { signal } : {}), oomKilled });
    }
    return { apps: results, exitCode: results.find((r) => r.exitCode !== 0)?.exitCode ?? 0 };
  } finally {
    for (const sig of signals) process.removeListener(sig, forward);
    const failures: string[] = [];
    for (const p of prepared) {
      await deleteContainer(ctx, rt, info, p.id);
      try {
        if (p.mounted) unmountAppRootfs(p.paths);
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
    }
    const left = await removePodCgroups(info, pod.uuid);
    if (left.length > 0) ctx.warn(`cgroups still in use after pod ${pod.uuid} exited: ${left.join(', ')}; run gantry gc later`);
    if (failures.length > 0) ctx.warn(`pod ${pod.uuid} cleanup: ${failures.join('; ')}`);
  }
}

/**
 * Removes what stage1 ns left of a pod: runtime state, mounts, app dirs
 * (upper layers included), cgroups, the pod's etc files. Idempotent.
 */
export async function gcPod(ctx: Context, ref: PodRef): Promise<void> {
  validatePodRef(ref);
  const rt = resolveRuntime(ctx, ref.ociRuntime);
  const info = ensureCgroupLayout(ctx);
  const appsDir = path.join(ref.podDir, 'apps');
  let names: string[] = [];
  try {
    names = fs.readdirSync(appsDir).filter((n) => APP_NAME_RE.test(n));
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  for (const name of names) {
    await deleteContainer(ctx, rt, info, containerId(ref.uuid, name));
    removeAppDir(appPaths(ref.podDir, name));
  }
  const left = await removePodCgroups(info, ref.uuid);
  if (left.length > 0) {
    throw new GantryError('POD_STATE', `pod ${ref.uuid} still has cgroups in use: ${left.join(', ')}`, {
      hint: 'a process of the pod is still alive; stop it, then run gantry gc again',
    });
  }
  fs.rmSync(path.join(ref.podDir, 'stage1-etc'), { recursive: true, force: true });
  try {
    fs.rmdirSync(appsDir);
  } catch {
    // absent, or holds something that is not an app: leave it
  }
}
