/**
 * The stage1 ABI: what stage0 (the `gantry` command) asks of a stage1, and
 * what it gets back. Every stage1 — the built-in `ns` (OCI runtime) and
 * `fly` (chroot); a third-party executable is specified in
 * docs/stage1-abi.md but not run yet — honours this interface, so stage0
 * never knows how isolation is done.
 *
 * Lifecycle of a pod, from stage1's side (rkt's model):
 *
 *   stage0 prepares   <podDir> holds the pod; every app's image is rendered
 *                     as snapshot dirs (AppSpec.layers) in the store.
 *   run               stage1 builds each app's rootfs and isolation, starts
 *                     the apps, and (foreground) stays until they all exit.
 *                     Signals stage0 receives are forwarded to the apps.
 *                     Returns each app's exit status. stage1 cleans up what
 *                     it mounted and created before returning.
 *   enter             runs an extra process inside a running app.
 *   app add/start/    change the apps of a running pod (the CRI uses these).
 *     stop/rm
 *   stop              asks the apps to stop (their StopSignal, then SIGKILL).
 *   gc                removes every trace of an exited pod (mounts, cgroups,
 *                     runtime state); idempotent, safe after a crash or
 *                     kill -9 of stage0, safe to call twice.
 *
 * A stage1 owns <podDir>/stage1-*, apps/, ns/ and logs/; stage0 owns the rest
 * of the pod dir. State a stage1 keeps outside the pod dir must be findable
 * from the PodRef alone so that gc works in a fresh process.
 */
import type { ImageRunConfig } from '../image/model.js';

/** Version of this ABI; bumped on incompatible changes (docs/stage1-abi.md). */
export const STAGE1_ABI_VERSION = 1;

/** A host path made visible inside an app. */
export interface MountSpec {
  /** Absolute host path (file or directory). */
  source: string;
  /** Absolute path inside the app. */
  destination: string;
  readOnly?: boolean;
}

/** Resource limits of one app; absent means unlimited. */
export interface ResourceLimits {
  /** Memory limit in bytes (swap is limited to the same value where the host accounts it). */
  memoryBytes?: number;
  /** CPU limit in CPUs (1.5 = one and a half cores), as a CFS quota. */
  cpus?: number;
  /** Relative CPU weight (cgroup v1 shares, 2..262144). */
  cpuShares?: number;
  /** Maximum number of tasks (processes + threads). */
  pids?: number;
}

/** One app (stage2) of a pod. */
export interface AppSpec {
  /** App name, unique in the pod: lower-case letters, digits and '-', 1-63 chars. */
  name: string;
  /** The image's rendered layers, bottom layer first (snapshot `fs` dirs). */
  layers: string[];
  /** The image's OCI run config (Entrypoint, Cmd, Env, User, WorkingDir, StopSignal). */
  config: ImageRunConfig;
  /** Replaces the image's Entrypoint (and drops its Cmd), like `--exec`. */
  exec?: string[];
  /** Replaces the image's Cmd (arguments after the entrypoint). */
  args?: string[];
  /** Extra environment, KEY=VALUE, overriding the image's. */
  env?: string[];
  /** Overrides the image's User: "name", "uid", "uid:gid", "name:group". */
  user?: string;
  /** Overrides the primary group (name or gid) of the user. */
  group?: string;
  /** Overrides the image's WorkingDir. */
  workingDir?: string;
  readOnlyRootfs?: boolean;
  /** Capabilities (CAP_X or X) added to the default set. */
  capsRetain?: string[];
  /** Capabilities (CAP_X or X) removed from the default set. */
  capsRemove?: string[];
  /** Default true; false runs without the seccomp filter (also `--insecure-options=seccomp`). */
  seccomp?: boolean;
  limits?: ResourceLimits;
  mounts?: MountSpec[];
  /** Allocate a terminal for the app (sets TERM). */
  tty?: boolean;
}

/** A port of the pod published on the host (CNI portmap). */
export interface PortMapping {
  hostIP?: string;
  hostPort: number;
  podPort: number;
  protocol: 'tcp' | 'udp';
}

/** CNI networks the pod joins, in order (the first gives the pod its primary IP). */
export interface PodCniNet {
  networks: { name: string; args?: Record<string, string> }[];
  ports: PortMapping[];
}

/**
 * 'none': a private network namespace with only loopback; 'host': the
 * host's network; an object: a private namespace joined to CNI networks.
 */
export type PodNet = 'none' | 'host' | PodCniNet;

/** DNS settings written to the pod's /etc/resolv.conf (override CNI's and the host's). */
export interface PodDns {
  servers?: string[];
  search?: string[];
  options?: string[];
}

/** An extra /etc/hosts line. */
export interface HostsEntry {
  ip: string;
  names: string[];
}

/** A pod as stage0 hands it to stage1. */
export interface PodSpec {
  /** The pod's UUID (RFC 4122 text form). */
  uuid: string;
  /** The pod's directory; stage1 keeps its per-pod files under it. */
  podDir: string;
  apps: AppSpec[];
  /** Pod hostname; default `gantry-<first 8 chars of uuid>`. */
  hostname?: string;
  /** See PodNet. */
  net: PodNet;
  dns?: PodDns;
  hostsEntries?: HostsEntry[];
  /** 'app' (default): each app has its own PID namespace; 'pod': the apps share one. */
  pidMode?: 'app' | 'pod';
  /** Which stage1 runs the pod; stage0 picks the implementation from it (default 'ns'). */
  stage1?: 'ns' | 'fly';
  /** OCI runtime: 'crun' (default), 'runc', or a path to a runtime binary. */
  ociRuntime?: string;
}

/** What identifies an existing pod to the verbs that act on one. */
export interface PodRef {
  uuid: string;
  podDir: string;
  ociRuntime?: string;
}

/** Where an app's standard stream goes: inherited from stage0, discarded, or an open fd. */
export type StdioTarget = 'inherit' | 'ignore' | number;

export interface RunOptions {
  /** stdin, stdout, stderr of the apps; default inherited from stage0. */
  stdio?: [StdioTarget, StdioTarget, StdioTarget];
  /** Forward SIGINT/SIGTERM/SIGHUP received by stage0 to the apps (default true). */
  forwardSignals?: boolean;
  /**
   * Start the apps under a monitor and resolve once every app started; the
   * apps outlive stage0. Output goes only to the CRI log files.
   */
  detach?: boolean;
  /**
   * An fd on which stage0 holds an exclusive flock of <podDir>/lock. stage1
   * keeps that lock held as long as any app of the pod lives (foreground:
   * the calling process holds it; detached: a keeper process inherits it).
   * "lock held" == "pod alive" for every other gantry process.
   */
  lockFd?: number;
}

export type AppState = 'created' | 'running' | 'exited';

export interface AppStatus {
  name: string;
  state: AppState;
  /** Absent for an app that died unseen (crash of its monitor) or never exited. */
  exitCode?: number;
  signal?: string;
  oomKilled?: boolean;
  /** Host PID of the app's first process while it runs. */
  pid?: number;
  /** RFC 3339 times. */
  startedAt?: string;
  finishedAt?: string;
}

export interface NetworkStatus {
  name: string;
  /** CIDR form. */
  ips: string[];
  interface?: string;
}

export interface PodStatus {
  apps: AppStatus[];
  network?: NetworkStatus[];
}

export interface AppResult {
  app: string;
  /** The app's exit code; 128+N when killed by signal N (shell convention). */
  exitCode: number;
  /** Signal name (SIGKILL, ...) when the app was killed by a signal. */
  signal?: string;
  /** True when the kernel's OOM killer ended the app (see docs for how it is detected). */
  oomKilled?: boolean;
}

export interface PodResult {
  apps: AppResult[];
  /** The first non-zero exit code among the apps in pod order, else 0. */
  exitCode: number;
}

export interface StopOptions {
  /** Skip the StopSignal and send SIGKILL at once. */
  force?: boolean;
  /** Time between StopSignal and SIGKILL. */
  timeoutMs?: number;
}

export interface EnterOptions {
  stdio?: [StdioTarget, StdioTarget, StdioTarget];
  /** Allocate a terminal for the command (stdin must be one). */
  tty?: boolean;
}

/** A stage1 implementation. Verbs not supported throw RUNTIME_ERROR. */
export interface Stage1 {
  /** Short name: 'ns', 'fly', or the executable's path. */
  readonly name: string;
  /**
   * Foreground: starts all apps, waits for them, cleans up; resolves with
   * every app's result. Detached (options.detach): resolves once every app
   * started, with `apps: []` and exitCode 0.
   */
  run(pod: PodSpec, options?: RunOptions): Promise<PodResult>;
  /** What stage1 recorded about the pod's apps; correct from a fresh process and after crashes. */
  status(pod: PodRef): Promise<PodStatus>;
  /** Runs `command` inside a running app; resolves to its exit code. */
  enter(pod: PodRef, app: string, command: string[], options?: EnterOptions): Promise<number>;
  stop(pod: PodRef, options?: StopOptions): Promise<void>;
  /** Removes what stage1 left of an exited pod; idempotent. */
  gc(pod: PodRef): Promise<void>;
  appAdd(pod: PodRef, app: AppSpec): Promise<void>;
  appStart(pod: PodRef, app: string): Promise<void>;
  appStop(pod: PodRef, app: string, options?: StopOptions): Promise<void>;
  appRm(pod: PodRef, app: string): Promise<void>;
}

/**
 * An app's argv, as every stage1 must compute it: `exec` replaces the image's
 * Entrypoint and drops its Cmd; `args` replaces the Cmd. Empty when there is
 * nothing to run.
 */
export function appCommand(app: Pick<AppSpec, 'exec' | 'args' | 'config'>): string[] {
  const entrypoint = app.exec ?? app.config.Entrypoint ?? [];
  const cmd = app.args ?? (app.exec ? [] : app.config.Cmd ?? []);
  return [...entrypoint, ...cmd];
}

/** App names: 1-63 of a-z, 0-9 and "-", not starting or ending with "-" (a DNS label). */
export const APP_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Pod UUIDs in RFC 4122 text form, lower case. */
export const POD_UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Where a stage1 writes an app's output in the CRI log format (stage0's `logs` reads it). */
export function appLogPath(podDir: string, app: string): string {
  return `${podDir}/logs/${app}.log`;
}
