/**
 * stage1 ns: pods through an OCI runtime (crun by default, runc, or any
 * runtime with runc's command line). stage1 fly reuses it with a spec that
 * keeps only a mount namespace (see spec.ts).
 *
 * run: record the pod (stage1-pod.json) before creating anything, create
 * the sandbox (pod.ts: namespace files, lo, hostname, CNI), write the pod's
 * etc files, then per app: mount its overlay rootfs, resolve its user,
 * write config.json, start it.
 *   - foreground: `<runtime> run` per app in its own session (so a terminal's
 *     Ctrl-C reaches only gantry, which forwards it once), stdout/stderr
 *     through pipes copied to the terminal and the CRI log (log.ts); returns
 *     when every app exited, then unmounts and removes the sandbox.
 *   - detached: conmon per app (monitor.ts) creates the container and keeps
 *     it; gantry starts them all and returns. Mounts and sandbox stay until
 *     stop + gc.
 * status/stop/enter/app verbs read what run recorded (pod.ts), so they work
 * from any process. gc kills whatever of the pod still lives (monitors,
 * processes in the pod's cgroups), deletes runtime state, unmounts, removes
 * namespace files, tears the network down and removes the cgroups.
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
import { setTimeout as sleep } from 'node:timers/promises';
import {
  APP_NAME_RE, POD_UUID_RE, appLogPath, type AppResult, type AppSpec, type AppStatus, type EnterOptions, type PodRef, type PodResult, type PodSpec, type PodStatus, type RunOptions, type StdioTarget, type StopOptions,
} from '../abi.js';
import { resolveUser } from '../user.js';
import {
  appCgroupPath, detectOomKill, ensureCgroupLayout, podCgroupPath, removePodCgroups, swapAccounted, useSystemdDriver, cgroupsPathFor,
  type CgroupInfo,
} from './cgroups.js';
import { AppOutput } from './log.js';
import {
  MONITOR_LOCK_FD, identify, isAlive, readExitFile, signalProcess, startConmon, stealFd, type ProcessId,
} from './monitor.js';
import {
  appRecordPath, createSandbox, netKind, netRecordPath, podEtcContents, podRecordPath, readAppRecord, readJson,
  readPodRecord, removeSandbox, setupNetwork, teardownNetwork, writeAppRecord, writeJsonAtomic,
  type AppRecord, type CniNetworkResult, type PodRecord,
} from './pod.js';
import { appPaths, mountAppRootfs, removeAppDir, unmountAppRootfs, type AppPaths } from './rootfs.js';
import { DEFAULT_PATH, buildAppSpec, readHostFacts, validateHostname, writePodEtc, type HostFacts, type PodEtcFiles } from './spec.js';

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
    const dirs = `${process.env.PATH ?? ''}:${DEFAULT_PATH}`.split(':').filter(Boolean);
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
  if (!POD_UUID_RE.test(ref.uuid.toLowerCase())) {
    throw new GantryError('CONFIG_INVALID', `invalid pod UUID "${ref.uuid}"`, { hint: 'pod UUIDs look like 0f5c1a52-8d1e-4a5e-9b3c-7f2d2a9b1c4e' });
  }
  if (!path.isAbsolute(ref.podDir)) {
    throw new GantryError('CONFIG_INVALID', `pod dir "${ref.podDir}" is not absolute`, { hint: 'this is a bug in the caller; please report it' });
  }
}

export function validatePod(pod: PodSpec): void {
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
  const net = pod.net as unknown;
  if (net !== 'none' && net !== 'host' && !(typeof net === 'object' && net !== null && Array.isArray((net as { networks?: unknown }).networks))) {
    throw new GantryError('CONFIG_INVALID', `unsupported pod network "${String(pod.net)}"`, { hint: 'use --net=none, --net=host or a CNI network name' });
  }
  if (pod.pidMode !== undefined && pod.pidMode !== 'app' && pod.pidMode !== 'pod') {
    throw new GantryError('CONFIG_INVALID', `invalid pid mode "${String(pod.pidMode)}"`, { hint: 'use --pid=app or --pid=pod' });
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


export type Stage1Mode = 'ns' | 'fly';

const POLL_MS = 20;
const DEFAULT_STOP_TIMEOUT_MS = 10_000;
/** After SIGKILL, how long to wait for the monitor to record the exit. */
const KILL_WAIT_MS = 5_000;

function now(): string {
  return new Date().toISOString();
}

/** Runs a program to completion with a time bound; resolves to its exit code and stderr. */
function runCmd(file: string, args: string[], timeoutMs: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      if (stderr.length < 8192) stderr += c.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stderr: err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stderr });
    });
  });
}

/** Everything a verb needs about a pod, from its records. */
interface PodEnv {
  ctx: Context;
  rt: OciRuntime;
  info: CgroupInfo;
  podDir: string;
  uuid: string;
  record: PodRecord;
}

function notRunning(ref: PodRef, what: string): GantryError {
  return new GantryError('POD_STATE', `pod ${ref.uuid} ${what}`, { hint: 'see gantry status; start it with gantry run-prepared or gantry run' });
}

function loadPod(ctx: Context, ref: PodRef): PodEnv {
  validatePodRef(ref);
  const record = readPodRecord(ref.podDir);
  if (!record) throw notRunning(ref, 'has not been started by stage1 (no stage1-pod.json)');
  const rt = resolveRuntime(ctx, ref.ociRuntime ?? record.runtime);
  return { ctx, rt, info: ensureCgroupLayout(ctx), podDir: ref.podDir, uuid: ref.uuid, record };
}

function appNames(podDir: string): string[] {
  try {
    return fs.readdirSync(path.join(podDir, 'apps')).filter((n) => APP_NAME_RE.test(n)).sort();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
}

/** The app's first process: recorded, or from the runtime's pid file while it lives. */
function appProcess(podDir: string, rec: AppRecord): ProcessId | undefined {
  if (rec.appProc) return rec.appProc;
  try {
    const pid = Number(fs.readFileSync(path.join(podDir, 'apps', rec.name, 'pid'), 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? identify(pid) : undefined;
  } catch {
    return undefined;
  }
}

function exitDirOf(podDir: string, app: string): string {
  return path.join(podDir, 'apps', app, 'exits');
}

function signalOfCode(code: number): string | undefined {
  return code > 128 && code <= 128 + 64 ? signalName(code - 128) : undefined;
}

/** The state of one app from its record, its monitor's exit file and process liveness. */
function appStatus(env: Pick<PodEnv, 'podDir' | 'uuid' | 'info'>, rec: AppRecord): AppStatus {
  const base: AppStatus = { name: rec.name, state: 'created', ...(rec.startedAt ? { startedAt: rec.startedAt } : {}) };
  if (rec.exitCode !== undefined || rec.finishedAt !== undefined) {
    return {
      ...base, state: 'exited',
      ...(rec.exitCode !== undefined ? { exitCode: rec.exitCode } : {}),
      ...(rec.signal ? { signal: rec.signal } : {}),
      ...(rec.oomKilled !== undefined ? { oomKilled: rec.oomKilled } : {}),
      ...(rec.finishedAt ? { finishedAt: rec.finishedAt } : {}),
    };
  }
  if (rec.monitor === 'conmon') {
    const exit = readExitFile(exitDirOf(env.podDir, rec.name), rec.id);
    if (exit) {
      const signal = signalOfCode(exit.code);
      const oom = fs.existsSync(path.join(env.podDir, 'apps', rec.name, 'persist', 'oom'))
        || detectOomKill(env.info, env.uuid, rec.name, rec.memoryBytes, signal);
      return { ...base, state: 'exited', exitCode: exit.code, ...(signal ? { signal } : {}), oomKilled: oom, finishedAt: exit.at };
    }
  }
  const proc = appProcess(env.podDir, rec);
  // conmon writes the exit file before it exits: while it lives, the exit is not recorded yet.
  const alive = rec.monitorProc ? isAlive(rec.monitorProc) : isAlive(proc);
  if (!alive) return { ...base, state: 'exited' }; // died unseen: exit code unknown
  if (!rec.startedAt) return { ...base, ...(proc ? { pid: proc.pid } : {}) };
  return { ...base, state: 'running', ...(proc && isAlive(proc) ? { pid: proc.pid } : {}) };
}

export async function podStatus(ctx: Context, ref: PodRef): Promise<PodStatus> {
  validatePodRef(ref);
  const record = readPodRecord(ref.podDir);
  const env = { podDir: ref.podDir, uuid: ref.uuid, info: ensureCgroupLayout(ctx) };
  const apps: AppStatus[] = [];
  for (const name of appNames(ref.podDir)) {
    const rec = readAppRecord(ref.podDir, name);
    if (rec) apps.push(appStatus(env, rec));
  }
  const status: PodStatus = { apps };
  const nets = record?.net === 'cni' ? readJson<CniNetworkResult[]>(netRecordPath(ref.podDir)) : undefined;
  if (nets) status.network = nets.map((n) => ({ name: n.name, ips: n.ips, ...(n.interface ? { interface: n.interface } : {}) }));
  return status;
}

/** PIDs in the pod's (or one app's) cgroups, every hierarchy, recursively. */
function cgroupPids(info: CgroupInfo, uuid: string, app?: string): number[] {
  const rel = app === undefined ? podCgroupPath(uuid) : appCgroupPath(uuid, app);
  const pids = new Set<number>();
  const walk = (dir: string, depth: number): void => {
    if (depth > 8) return;
    try {
      for (const line of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        const n = Number(line);
        if (Number.isSafeInteger(n) && n > 0) pids.add(n);
      }
    } catch {
      return;
    }
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name), depth + 1);
  };
  for (const h of info.hierarchies) walk(path.join(h.mountPoint, rel), 0);
  return [...pids];
}

function killCgroup(info: CgroupInfo, uuid: string, app?: string): number {
  const pids = cgroupPids(info, uuid, app);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids.length;
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return check();
}

interface PodSetup {
  hostname: string;
  host: HostFacts;
  etc: PodEtcFiles;
}

function sharedFor(record: PodRecord, firstPid: number | undefined, mode: Stage1Mode): import('./spec.js').SharedNamespaces {
  if (mode === 'fly') return {};
  return {
    ...(record.ns.net ? { network: record.ns.net } : {}),
    ...(record.ns.ipc ? { ipc: record.ns.ipc } : {}),
    ...(record.ns.uts ? { uts: record.ns.uts } : {}),
    ...(record.pidMode === 'pod' && firstPid !== undefined ? { pid: `/proc/${firstPid}/ns/pid` } : {}),
  };
}

/** Mounts the app's rootfs, writes config.json and the app's record (state created). */
function prepareApp(env: PodEnv, pod: PodSpec, app: AppSpec, setup: PodSetup, firstPid: number | undefined, mode: Stage1Mode, monitor: AppRecord['monitor']): AppPaths {
  const paths = appPaths(env.podDir, app.name);
  if (fs.existsSync(appRecordPath(env.podDir, app.name))) {
    throw new GantryError('POD_STATE', `app "${app.name}" already exists in pod ${env.uuid}`, { hint: 'remove it first (gantry app rm) or choose another --name' });
  }
  fs.mkdirSync(paths.appDir, { recursive: true, mode: 0o700 });
  const rec: AppRecord = {
    name: app.name, id: containerId(env.uuid, app.name), monitor, createdAt: now(),
    ...(app.config.StopSignal ? { stopSignal: app.config.StopSignal } : {}),
    ...(app.limits?.memoryBytes ? { memoryBytes: app.limits.memoryBytes } : {}),
  };
  writeAppRecord(env.podDir, rec);
  mountAppRootfs(paths, app.layers);
  const user = resolveUser(paths.rootfs, app.user ?? app.config.User, app.group);
  const spec = buildAppSpec({
    ctx: env.ctx, pod, app, user,
    hostname: setup.hostname,
    cgroupsPath: cgroupsPathFor(env.info, env.uuid, app.name),
    etc: setup.etc,
    host: setup.host,
    sharedNamespacesFrom: sharedFor(env.record, firstPid, mode),
    fly: mode === 'fly',
  });
  fs.writeFileSync(paths.bundleConfig, JSON.stringify(spec, null, 2), { mode: 0o600 });
  fs.writeFileSync(paths.runtimeLog, '', { mode: 0o600 });
  fs.mkdirSync(path.join(env.podDir, 'logs'), { recursive: true, mode: 0o700 });
  env.ctx.debug(`stage1 ${mode}: app ${app.name}: uid ${user.uid} gid ${user.gid}, args ${JSON.stringify(spec.process.args)}`);
  return paths;
}

/** Records the pod and creates its sandbox; returns what apps need. */
async function openPod(ctx: Context, pod: PodSpec, mode: Stage1Mode, lockHolder: PodRecord['lockHolders']): Promise<{ env: PodEnv; setup: PodSetup }> {
  validatePod(pod);
  if (mode === 'fly' && pod.net !== 'host') {
    throw new GantryError('CONFIG_INVALID', 'stage1 fly runs apps in the host\'s network only', { hint: 'use --net=host with --stage1-name=fly' });
  }
  const hostname = pod.hostname ?? `gantry-${pod.uuid.slice(0, 8)}`;
  validateHostname(hostname);
  const rt = resolveRuntime(ctx, pod.ociRuntime);
  fs.mkdirSync(rt.stateRoot, { recursive: true, mode: 0o700 });
  const info = ensureCgroupLayout(ctx);
  const host = readHostFacts({ swapAccounted: swapAccounted(info), cgroupV2: info.mode === 'v2' });
  fs.mkdirSync(pod.podDir, { recursive: true, mode: 0o700 });
  if (readPodRecord(pod.podDir)) {
    throw new GantryError('POD_STATE', `pod ${pod.uuid} was already started`, { hint: 'a pod runs once; run gantry gc, then prepare a new one' });
  }
  const record: PodRecord = {
    version: 1, uuid: pod.uuid, stage1: mode, runtime: rt.path, hostname, net: netKind(pod),
    pidMode: pod.pidMode ?? 'app', ns: {}, lockHolders: lockHolder, createdAt: now(),
  };
  writeJsonAtomic(podRecordPath(pod.podDir), record);
  const env: PodEnv = { ctx, rt, info, podDir: pod.podDir, uuid: pod.uuid, record };
  let networks: CniNetworkResult[] = [];
  if (mode === 'ns') {
    record.ns = await createSandbox(pod.podDir, record.net, hostname);
    writeJsonAtomic(podRecordPath(pod.podDir), record);
    if (record.net === 'cni') networks = await setupNetwork(ctx, pod, record.ns.net!);
  }
  const etc = writePodEtc(pod, hostname, podEtcContents(pod, hostname, networks));
  return { env, setup: { hostname, host, etc } };
}

function lockFdHolder(fd: number | undefined): PodRecord['lockHolders'] {
  const me = identify(process.pid);
  return fd !== undefined && me ? [{ ...me, fd }] : [];
}

/**
 * Removes the pod-level parts (namespace files, network, cgroups) once no
 * app of the pod lives any more; otherwise leaves them for the last one.
 */
async function closePodIfIdle(env: PodEnv): Promise<void> {
  const live = appNames(env.podDir).some((n) => {
    const rec = readAppRecord(env.podDir, n);
    return rec !== undefined && appStatus(env, rec).state !== 'exited';
  });
  if (live) return;
  if (env.record.net === 'cni') {
    try {
      await teardownNetwork(env.ctx, env.uuid, env.podDir);
    } catch (err) {
      env.ctx.warn(`pod ${env.uuid}: network teardown failed (${err instanceof Error ? err.message : String(err)}); run gantry gc`);
    }
  }
  await removeSandbox(env.podDir);
  const left = await removePodCgroups(env.info, env.uuid);
  if (left.length > 0) env.ctx.warn(`cgroups still in use after pod ${env.uuid} exited: ${left.join(', ')}; run gantry gc later`);
}

interface Exit { code: number | null; signal: NodeJS.Signals | null }

async function waitPidFile(file: string, child: ReturnType<typeof spawn>, timeoutMs: number): Promise<number> {
  let pid = 0;
  await waitUntil(() => {
    try {
      pid = Number(fs.readFileSync(file, 'utf8').trim());
    } catch {
      pid = 0;
    }
    return pid > 0 || child.exitCode !== null || child.signalCode !== null;
  }, timeoutMs);
  if (!(pid > 0)) throw new GantryError('RUNTIME_ERROR', 'the pod\'s first app exited before the others could join its PID namespace', { hint: 'with --pid=pod the first app must keep running' });
  return pid;
}

function stdioOf(t: StdioTarget): 'inherit' | 'ignore' | number {
  return t;
}

async function runForeground(ctx: Context, pod: PodSpec, options: RunOptions, mode: Stage1Mode): Promise<PodResult> {
  const { env, setup } = await openPod(ctx, pod, mode, lockFdHolder(options.lockFd));
  const { rt, info } = env;
  const stdio = options.stdio ?? ['inherit', 'inherit', 'inherit'];
  const prefixed = pod.apps.length > 1;
  const running = new Map<string, ReturnType<typeof spawn>>();
  const forward = (sig: NodeJS.Signals): void => {
    ctx.debug(`stage1 ${mode}: forwarding ${sig} to ${running.size} app(s)`);
    for (const child of running.values()) child.kill(sig);
  };
  const signals: NodeJS.Signals[] = options.forwardSignals === false ? [] : ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const started: Array<{ app: AppSpec; paths: AppPaths; id: string; done: Promise<Exit>; output?: AppOutput }> = [];
  const mounted: AppPaths[] = [];
  try {
    for (const sig of signals) process.on(sig, forward);
    let firstPid: number | undefined;
    for (const [i, app] of pod.apps.entries()) {
      const paths = appPaths(pod.podDir, app.name);
      mounted.push(paths);
      prepareApp(env, pod, app, setup, firstPid, mode, 'gantry');
      const id = containerId(pod.uuid, app.name);
      const pidFile = path.join(paths.appDir, 'pid');
      const args = [...runtimeGlobalArgs(rt, info, paths.runtimeLog), 'run', '--pid-file', pidFile, '--bundle', paths.appDir, id];
      ctx.debug(`stage1 ${mode}: ${rt.path} ${args.join(' ')}`);
      const output = app.tty ? undefined : new AppOutput(appLogPath(pod.podDir, app.name), stdio[1], stdio[2], prefixed ? `[${app.name}] ` : '');
      // Its own session: a terminal's Ctrl-C reaches gantry only, which forwards it once.
      const child = spawn(rt.path, args, {
        stdio: app.tty ? [stdioOf(stdio[0]), stdioOf(stdio[1]), stdioOf(stdio[2])] : [stdioOf(stdio[0]), 'pipe', 'pipe'],
        detached: true,
      });
      running.set(id, child);
      child.stdout?.on('data', (c: Buffer) => output!.stdout(c));
      child.stderr?.on('data', (c: Buffer) => output!.stderr(c));
      const done = new Promise<Exit>((resolve, reject) => {
        child.on('error', (err) => {
          running.delete(id);
          reject(new GantryError('RUNTIME_ERROR', `cannot start ${rt.path}: ${errnoCode(err) ?? String(err)}`, { cause: err }));
        });
        // 'close' waits for the pipes to drain, so the log has every line.
        child.on('close', (code, signal) => {
          running.delete(id);
          resolve({ code, signal });
        });
      });
      done.catch(() => undefined);
      started.push({ app, paths, id, done, ...(output ? { output } : {}) });
      const rec = readAppRecord(pod.podDir, app.name)!;
      const monitorProc = child.pid !== undefined ? identify(child.pid) : undefined;
      writeAppRecord(pod.podDir, { ...rec, ...(monitorProc ? { monitorProc } : {}), startedAt: now() });
      if (i === 0 && env.record.pidMode === 'pod' && pod.apps.length > 1 && mode === 'ns') {
        firstPid = await waitPidFile(pidFile, child, 10_000);
      }
    }
    const exits = await Promise.all(started.map((s) => s.done));

    const results: AppResult[] = [];
    let runtimeFailure: GantryError | undefined;
    for (let i = 0; i < started.length; i++) {
      const s = started[i]!;
      const exit = exits[i]!;
      s.output?.close();
      let exitCode: number;
      let signal: string | undefined;
      if (exit.code === null) {
        const n = exit.signal ? os.constants.signals[exit.signal] : 9;
        exitCode = 128 + n;
        signal = exit.signal ?? 'SIGKILL';
      } else {
        exitCode = exit.code;
        signal = signalOfCode(exitCode);
      }
      if (exitCode !== 0 && !runtimeFailure) {
        const errors = runtimeErrors(s.paths.runtimeLog);
        if (errors.length > 0) {
          runtimeFailure = new GantryError('RUNTIME_ERROR', `${rt.name} could not run app "${s.app.name}": ${errors.join('; ')}`, {
            hint: `see ${s.paths.runtimeLog}; check the image's command (--exec) and user`,
          });
        }
      }
      const oomKilled = detectOomKill(info, pod.uuid, s.app.name, s.app.limits?.memoryBytes, signal);
      const rec = readAppRecord(pod.podDir, s.app.name);
      if (rec) writeAppRecord(pod.podDir, { ...rec, exitCode, ...(signal ? { signal } : {}), oomKilled, finishedAt: now() });
      results.push({ app: s.app.name, exitCode, ...(signal ? { signal } : {}), oomKilled });
    }
    if (runtimeFailure) throw runtimeFailure;
    return { apps: results, exitCode: results.find((r) => r.exitCode !== 0)?.exitCode ?? 0 };
  } finally {
    for (const sig of signals) process.removeListener(sig, forward);
    // A failure while starting: the apps already running must not outlive the run.
    for (const child of running.values()) child.kill('SIGKILL');
    await Promise.allSettled(started.map((s) => s.done));
    const failures: string[] = [];
    for (const paths of mounted) {
      const name = path.basename(paths.appDir);
      await deleteContainer(ctx, rt, info, containerId(pod.uuid, name));
      const rec = readAppRecord(pod.podDir, name);
      if (rec && rec.finishedAt === undefined) writeAppRecord(pod.podDir, { ...rec, finishedAt: now() });
      try {
        unmountAppRootfs(paths);
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
    }
    for (const s of started) {
      try {
        s.output?.close();
      } catch {
        // already closed
      }
    }
    await closePodIfIdle(env);
    if (failures.length > 0) ctx.warn(`pod ${pod.uuid} cleanup: ${failures.join('; ')}`);
  }
}

/** The pod lock as an fd of this process: stage0's, or duplicated from a live holder. */
function podLockFd(env: PodEnv, given: number | undefined): { fd?: number; owned: boolean } {
  if (given !== undefined) return { fd: given, owned: false };
  const holders = [...env.record.lockHolders];
  for (const name of appNames(env.podDir)) {
    const rec = readAppRecord(env.podDir, name);
    if (rec?.monitor === 'conmon' && rec.monitorProc) holders.push({ ...rec.monitorProc, fd: MONITOR_LOCK_FD });
  }
  for (const h of holders) {
    const fd = stealFd(h, h.fd);
    if (fd !== undefined) return { fd, owned: true };
  }
  env.ctx.debug(`stage1: no live holder of pod ${env.uuid}'s lock to share with a new app`);
  return { owned: false };
}

function conmonPath(): string {
  for (const d of `${process.env.PATH ?? ''}:${DEFAULT_PATH}`.split(':').filter(Boolean)) {
    const p = path.join(d, 'conmon');
    if (isExecutable(p)) return p;
  }
  throw new GantryError('RUNTIME_ERROR', 'conmon not found: detached pods and app verbs need it', { hint: 'install conmon (apt install conmon)' });
}

/** Creates one app under conmon (state created); records it. */
async function createMonitored(env: PodEnv, app: AppSpec, paths: AppPaths, lockFd: number | undefined): Promise<ProcessId | undefined> {
  const id = containerId(env.uuid, app.name);
  fs.mkdirSync(exitDirOf(env.podDir, app.name), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(paths.appDir, 'persist'), { recursive: true, mode: 0o700 });
  const { pid, conmon } = await startConmon({
    conmonPath: conmonPath(), runtimePath: env.rt.path, runtimeArgs: runtimeGlobalArgs(env.rt, env.info),
    id, bundle: paths.appDir, pidFile: path.join(paths.appDir, 'pid'), conmonPidFile: path.join(paths.appDir, 'conmon.pid'),
    logPath: appLogPath(env.podDir, app.name), exitDir: exitDirOf(env.podDir, app.name), socketDir: paths.appDir,
    persistDir: path.join(paths.appDir, 'persist'), ...(lockFd !== undefined ? { lockFd } : {}), tty: app.tty === true,
  });
  const appProc = identify(pid);
  const rec = readAppRecord(env.podDir, app.name)!;
  writeAppRecord(env.podDir, { ...rec, ...(conmon ? { monitorProc: conmon } : {}), ...(appProc ? { appProc } : {}) });
  return appProc;
}

async function startCreated(env: PodEnv, name: string): Promise<void> {
  const id = containerId(env.uuid, name);
  const res = await runCmd(env.rt.path, [...runtimeGlobalArgs(env.rt, env.info), 'start', id], 30_000);
  if (res.code !== 0) {
    throw new GantryError('RUNTIME_ERROR', `${env.rt.name} could not start app "${name}" of pod ${env.uuid}: ${res.stderr.trim() || `exit ${res.code}`}`, {
      hint: 'check the image\'s command (--exec); see gantry status',
    });
  }
  const rec = readAppRecord(env.podDir, name)!;
  writeAppRecord(env.podDir, { ...rec, startedAt: now() });
}

async function runDetached(ctx: Context, pod: PodSpec, options: RunOptions, mode: Stage1Mode): Promise<PodResult> {
  const { env, setup } = await openPod(ctx, pod, mode, []);
  try {
    let firstPid: number | undefined;
    for (const app of pod.apps) {
      const paths = prepareApp(env, pod, app, setup, firstPid, mode, 'conmon');
      const proc = await createMonitored(env, app, paths, options.lockFd);
      if (firstPid === undefined) firstPid = proc?.pid;
    }
    for (const app of pod.apps) await startCreated(env, app.name);
    return { apps: [], exitCode: 0 };
  } catch (err) {
    await gcPod(ctx, { uuid: pod.uuid, podDir: pod.podDir, ...(pod.ociRuntime ? { ociRuntime: pod.ociRuntime } : {}) }).catch((e: unknown) => {
      ctx.warn(`cleanup of pod ${pod.uuid} after a failed start: ${e instanceof Error ? e.message : String(e)}`);
    });
    throw err;
  }
}

export async function runPod(ctx: Context, pod: PodSpec, options: RunOptions = {}, mode: Stage1Mode = 'ns'): Promise<PodResult> {
  return options.detach ? runDetached(ctx, pod, options, mode) : runForeground(ctx, pod, options, mode);
}

function stopSignalOf(rec: AppRecord): NodeJS.Signals | number {
  const raw = (rec.stopSignal ?? 'SIGTERM').toUpperCase();
  if (/^\d+$/.test(raw)) return Number(raw);
  const name = (raw.startsWith('SIG') ? raw : `SIG${raw}`) as NodeJS.Signals;
  return name in os.constants.signals ? name : 'SIGTERM';
}

/** Stops one app: its stop signal, SIGKILL to its cgroup after the timeout; waits for the exit to be recorded. */
async function stopApp(env: PodEnv, rec: AppRecord, options: StopOptions): Promise<void> {
  const live = (): boolean => {
    const r = readAppRecord(env.podDir, rec.name);
    return r !== undefined && appStatus(env, r).state !== 'exited';
  };
  if (!live()) return;
  const proc = appProcess(env.podDir, rec);
  if (!options.force) {
    const sig = stopSignalOf(rec);
    env.ctx.debug(`stage1: app ${rec.name}: sending ${String(sig)}`);
    if (proc) signalProcess(proc, sig);
    if (await waitUntil(() => !live(), options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)) return;
  }
  if (proc) signalProcess(proc, 'SIGKILL');
  killCgroup(env.info, env.uuid, rec.name);
  if (!(await waitUntil(() => !live(), KILL_WAIT_MS))) {
    // A created (never started) container under conmon: the runtime must kill it.
    await runCmd(env.rt.path, [...runtimeGlobalArgs(env.rt, env.info), 'kill', rec.id, 'KILL'], 10_000);
    await waitUntil(() => !live(), KILL_WAIT_MS);
  }
}

export async function stopPod(ctx: Context, ref: PodRef, options: StopOptions = {}): Promise<void> {
  const env = loadPod(ctx, ref);
  const recs = appNames(ref.podDir).map((n) => readAppRecord(ref.podDir, n)).filter((r): r is AppRecord => r !== undefined);
  if (!recs.some((r) => appStatus(env, r).state !== 'exited')) throw notRunning(ref, 'is not running');
  await Promise.all(recs.map((r) => stopApp(env, r, options)));
}

export async function enterApp(ctx: Context, ref: PodRef, app: string, command: string[], options: EnterOptions = {}): Promise<number> {
  const env = loadPod(ctx, ref);
  const rec = readAppRecord(ref.podDir, app);
  if (!rec) throw new GantryError('POD_NOT_FOUND', `pod ${ref.uuid} has no app "${app}"`, { hint: 'see gantry status for the app names' });
  if (appStatus(env, rec).state !== 'running') throw notRunning(ref, `app "${app}" is not running`);
  if (command.length === 0 || command.some((c) => c.includes('\0'))) {
    throw new GantryError('USAGE', 'enter needs a command without NUL bytes', { hint: 'e.g. gantry enter UUID -- /bin/sh' });
  }
  const args = [...runtimeGlobalArgs(env.rt, env.info), 'exec', ...(options.tty ? ['--tty'] : []), rec.id, ...command];
  ctx.debug(`stage1: ${env.rt.path} ${args.join(' ')}`);
  const stdio = options.stdio ?? ['inherit', 'inherit', 'inherit'];
  return new Promise((resolve, reject) => {
    const child = spawn(env.rt.path, args, { stdio });
    child.on('error', (err) => reject(new GantryError('RUNTIME_ERROR', `cannot run ${env.rt.path}: ${err.message}`, { cause: err })));
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 9)));
  });
}

/** Adds an app to a running pod, joining its namespaces; it stays created until appStart. */
export async function appAdd(ctx: Context, ref: PodRef, app: AppSpec, mode: Stage1Mode = 'ns'): Promise<void> {
  const env = loadPod(ctx, ref);
  if (!APP_NAME_RE.test(app.name)) throw new GantryError('CONFIG_INVALID', `invalid app name "${app.name}"`, { hint: 'app names are 1-63 of a-z, 0-9 and "-"' });
  const recs = appNames(ref.podDir).map((n) => readAppRecord(ref.podDir, n)).filter((r): r is AppRecord => r !== undefined);
  const live = recs.filter((r) => appStatus(env, r).state === 'running');
  if (live.length === 0) throw notRunning(ref, 'is not running');
  const host = readHostFacts({ swapAccounted: swapAccounted(env.info), cgroupV2: env.info.mode === 'v2' });
  const etcDir = path.join(ref.podDir, 'stage1-etc');
  const setup: PodSetup = {
    hostname: env.record.hostname, host,
    etc: { hostname: path.join(etcDir, 'hostname'), hosts: path.join(etcDir, 'hosts'), resolvConf: path.join(etcDir, 'resolv.conf') },
  };
  // The pod's PID namespace belongs to its first app (see pod.ts).
  const first = recs.length ? appProcess(ref.podDir, recs.slice().sort((a, b) => a.createdAt.localeCompare(b.createdAt))[0]!) : undefined;
  const pod: PodSpec = { uuid: ref.uuid, podDir: ref.podDir, apps: [app], net: env.record.net === 'cni' ? { networks: [], ports: [] } : env.record.net };
  if (fs.existsSync(path.join(ref.podDir, 'apps', app.name))) {
    throw new GantryError('POD_STATE', `app "${app.name}" already exists in pod ${ref.uuid}`, { hint: 'remove it first (gantry app rm) or choose another --name' });
  }
  const lock = podLockFd(env, undefined);
  try {
    const paths = prepareApp(env, pod, app, setup, isAlive(first) ? first!.pid : undefined, mode, 'conmon');
    await createMonitored(env, app, paths, lock.fd);
  } catch (err) {
    await removeApp(env, app.name).catch(() => undefined);
    throw err;
  } finally {
    if (lock.owned && lock.fd !== undefined) fs.closeSync(lock.fd);
  }
}

function requireApp(env: PodEnv, app: string): AppRecord {
  const rec = readAppRecord(env.podDir, app);
  if (!rec) throw new GantryError('POD_NOT_FOUND', `pod ${env.uuid} has no app "${app}"`, { hint: 'see gantry status for the app names' });
  return rec;
}

export async function appStart(ctx: Context, ref: PodRef, app: string): Promise<void> {
  const env = loadPod(ctx, ref);
  const rec = requireApp(env, app);
  const st = appStatus(env, rec);
  if (st.state !== 'created') throw notRunning(ref, `app "${app}" is ${st.state}, not created`);
  await startCreated(env, app);
}

export async function appStop(ctx: Context, ref: PodRef, app: string, options: StopOptions = {}): Promise<void> {
  const env = loadPod(ctx, ref);
  const rec = requireApp(env, app);
  if (appStatus(env, rec).state === 'exited') throw notRunning(ref, `app "${app}" is not running`);
  await stopApp(env, rec, options);
}

async function removeApp(env: PodEnv, name: string): Promise<void> {
  killCgroup(env.info, env.uuid, name);
  const rec = readAppRecord(env.podDir, name);
  if (rec?.monitor === 'conmon') signalProcess(rec.monitorProc, 'SIGKILL');
  await deleteContainer(env.ctx, env.rt, env.info, containerId(env.uuid, name));
  removeAppDir(appPaths(env.podDir, name));
  fs.rmSync(appLogPath(env.podDir, name), { force: true });
  await removePodCgroups(env.info, env.uuid, name);
}

export async function appRm(ctx: Context, ref: PodRef, app: string): Promise<void> {
  const env = loadPod(ctx, ref);
  const rec = requireApp(env, app);
  await stopApp(env, rec, { force: true });
  await removeApp(env, app);
}

/**
 * Removes what stage1 left of a pod: live processes of the pod (monitors,
 * anything in its cgroups), runtime state, mounts, app dirs (upper layers
 * included), namespace files, the network, cgroups, stage1's records.
 * Idempotent; works after kill -9 of stage0 at any point of run.
 */
export async function gcPod(ctx: Context, ref: PodRef): Promise<void> {
  validatePodRef(ref);
  const record = readPodRecord(ref.podDir);
  const rt = resolveRuntime(ctx, ref.ociRuntime ?? record?.runtime);
  const info = ensureCgroupLayout(ctx);
  const names = appNames(ref.podDir);
  const recs = names.map((n) => readAppRecord(ref.podDir, n)).filter((r): r is AppRecord => r !== undefined);
  // Monitors first, so none restarts or records anything while the apps die.
  for (const rec of recs) signalProcess(rec.monitorProc, 'SIGKILL');
  for (let round = 0; round < 20; round++) {
    for (const rec of recs) signalProcess(appProcess(ref.podDir, rec), 'SIGKILL');
    if (killCgroup(info, ref.uuid) === 0) break;
    await sleep(50);
  }
  for (const name of names) {
    await deleteContainer(ctx, rt, info, containerId(ref.uuid, name));
    removeAppDir(appPaths(ref.podDir, name));
  }
  if (record?.net === 'cni') await teardownNetwork(ctx, ref.uuid, ref.podDir);
  await removeSandbox(ref.podDir);
  const left = await removePodCgroups(info, ref.uuid);
  if (left.length > 0) {
    throw new GantryError('POD_STATE', `pod ${ref.uuid} still has cgroups in use: ${left.join(', ')}`, {
      hint: 'a process of the pod is still alive; stop it, then run gantry gc again',
    });
  }
  fs.rmSync(path.join(ref.podDir, 'stage1-etc'), { recursive: true, force: true });
  fs.rmSync(netRecordPath(ref.podDir), { force: true });
  fs.rmSync(podRecordPath(ref.podDir), { force: true });
  try {
    fs.rmdirSync(path.join(ref.podDir, 'apps'));
  } catch {
    // absent, or holds something that is not an app: leave it
  }
}
