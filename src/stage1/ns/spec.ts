/**
 * Builds the OCI runtime-spec config.json of one app: the process (command,
 * environment, user, capabilities, rlimits), its mounts, namespaces, cgroup
 * and limits, and the hardening gantry applies by default (Docker's
 * capability set, seccomp, no_new_privs, masked and read-only /proc and /sys
 * paths). Each hardening is switched off only by the matching
 * --insecure-options value (capabilities, paths, seccomp).
 *
 * Also writes the pod's /etc/hostname, /etc/hosts and /etc/resolv.conf,
 * which every app of the pod bind-mounts.
 *
 * Pure apart from reading host facts (capability bounding set, rlimits,
 * oom_score_adj) and writing the pod's etc files; the rootfs must already be
 * mounted so the user can be resolved against its /etc/passwd.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../../context.js';
import { GantryError } from '../../errors.js';
import { appCommand, type AppSpec, type PodSpec } from '../abi.js';
import type { ResolvedUser } from '../user.js';
import { defaultSeccompProfile, type SeccompProfile } from './seccomp.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default capability set. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Capability names by number (linux/capability.h). */
const CAPABILITY_NAMES: readonly string[] = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
].map((n) => `CAP_${n}`);

export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Docker's default RLIMIT_NOFILE, lowered to what this host lets us grant. */
const DEFAULT_NOFILE = 1048576;

// The subset of the OCI runtime spec gantry writes.
export interface OciMount { destination: string; type?: string; source?: string; options?: string[] }
export interface OciNamespace { type: string; path?: string }
export interface OciDeviceRule { allow: boolean; type?: string; major?: number; minor?: number; access?: string }
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities?: { bounding: string[]; effective: string[]; inheritable: string[]; permitted: string[]; ambient: string[] };
    rlimits: Array<{ type: string; hard: number; soft: number }>;
    noNewPrivileges: boolean;
    oomScoreAdj?: number;
  };
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    namespaces: OciNamespace[];
    cgroupsPath: string;
    resources: {
      devices: OciDeviceRule[];
      memory?: { limit: number; swap?: number };
      cpu?: { quota?: number; period?: number; shares?: number };
      pids?: { limit: number };
    };
    maskedPaths?: string[];
    readonlyPaths?: string[];
    seccomp?: SeccompProfile;
  };
}

/** Namespaces of another app (its /proc/<pid>/ns/... paths) to join instead of creating new ones. */
export interface SharedNamespaces {
  network?: string;
  pid?: string;
  ipc?: string;
  uts?: string;
}

/** The pod files every app bind-mounts; see writePodEtc. */
export interface PodEtcFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

/** Host facts the spec depends on; read once per run (see readHostFacts). */
export interface HostFacts {
  /** CAP_ names in this process's bounding set: the most any app can get. */
  bounding: Set<string>;
  nofileHard: number;
  oomScoreAdj: number;
  /** Whether a memory limit can also cap swap (cgroup v1 memsw). */
  swapAccounted: boolean;
  /** Whether the host uses cgroup v2 for the app (gets a private cgroup namespace). */
  cgroupV2: boolean;
}

export interface AppSpecInput {
  ctx: Context;
  pod: PodSpec;
  app: AppSpec;
  user: ResolvedUser;
  hostname: string;
  cgroupsPath: string;
  etc: PodEtcFiles;
  host: HostFacts;
  /** root.path in the bundle (relative to the bundle dir). */
  rootPath?: string;
  sharedNamespacesFrom?: SharedNamespaces;
  /**
   * stage1 fly: a mount namespace only (host network, PID, IPC, UTS), every
   * capability gantry has, no seccomp, no masked paths, no no_new_privs,
   * the host's /dev, /proc and /sys.
   */
  fly?: boolean;
}

export function readHostFacts(options: { swapAccounted: boolean; cgroupV2: boolean }): HostFacts {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const bnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  const mask = bnd ? BigInt(`0x${bnd[1]}`) : 0n;
  const bounding = new Set(CAPABILITY_NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n));
  const limits = fs.readFileSync('/proc/self/limits', 'utf8');
  const nofile = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const nofileHard = !nofile || nofile[2] === 'unlimited' ? Infinity : Number(nofile[2]);
  const adj = Number(fs.readFileSync('/proc/self/oom_score_adj', 'utf8').trim());
  return { bounding, nofileHard, oomScoreAdj: Number.isFinite(adj) ? adj : 0, ...options };
}

function invalid(message: string, hint: string): GantryError {
  return new GantryError('CONFIG_INVALID', message, { hint });
}

/** Normalises "net_admin", "CAP_NET_ADMIN", "all" into CAP_ names. */
function normaliseCapabilities(names: readonly string[] | undefined, what: string): string[] {
  const out: string[] = [];
  for (const raw of names ?? []) {
    const upper = raw.trim().toUpperCase();
    if (upper === 'ALL') {
      out.push(...CAPABILITY_NAMES);
      continue;
    }
    const name = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
    if (!CAPABILITY_NAMES.includes(name)) {
      throw invalid(`unknown capability "${raw}" in ${what}`, 'use names like CAP_NET_ADMIN or NET_ADMIN (see capabilities(7))');
    }
    out.push(name);
  }
  return out;
}

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function validateHostname(hostname: string): void {
  if (!HOSTNAME_RE.test(hostname)) {
    throw invalid(`invalid hostname "${hostname}"`, 'use letters, digits, "-" and "." (RFC 1123), at most 253 characters');
  }
}

/**
 * Writes <podDir>/stage1-etc/{hostname,hosts,resolv.conf}. resolv.conf is
 * the host's for net=host and a comment-only file for net=none (no
 * nameserver is reachable from a loopback-only namespace).
 */
export function writePodEtc(pod: PodSpec, hostname: string, contents?: { hosts: string; resolv: string }): PodEtcFiles {
  const dir = path.join(pod.podDir, 'stage1-etc');
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const files: PodEtcFiles = {
    hostname: path.join(dir, 'hostname'),
    hosts: path.join(dir, 'hosts'),
    resolvConf: path.join(dir, 'resolv.conf'),
  };
  const short = hostname.split('.')[0]!;
  const names = short === hostname ? hostname : `${hostname} ${short}`;
  fs.writeFileSync(files.hostname, `${hostname}\n`, { mode: 0o644 });
  if (contents) {
    fs.writeFileSync(files.hosts, contents.hosts, { mode: 0o644 });
    fs.writeFileSync(files.resolvConf, contents.resolv, { mode: 0o644 });
    return files;
  }
  fs.writeFileSync(files.hosts, `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${names}\n`, { mode: 0o644 });
  let resolv = '# gantry: the pod has no network (net=none)\n';
  if (pod.net === 'host') {
    try {
      resolv = fs.readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      resolv = '# gantry: the host has no /etc/resolv.conf\n';
    }
  }
  fs.writeFileSync(files.resolvConf, resolv, { mode: 0o644 });
  return files;
}

function envKey(entry: string): string {
  const i = entry.indexOf('=');
  return i < 0 ? entry : entry.slice(0, i);
}

function validateEnv(entries: readonly string[], what: string): void {
  for (const e of entries) {
    if (e.indexOf('=') <= 0 || e.includes('\0')) {
      throw invalid(`invalid environment entry "${e.replace(/\0/g, '\\0')}" in ${what}`, 'use KEY=VALUE');
    }
  }
}

/** Merges environments; later sources override earlier ones by key, order of first appearance kept. */
function mergeEnv(...sources: ReadonlyArray<readonly string[]>): string[] {
  const map = new Map<string, string>();
  for (const src of sources) for (const e of src) map.set(envKey(e), e);
  return [...map.values()];
}

/** The app's argv: --exec replaces the entrypoint (and the image's Cmd). */
function appArgs(app: AppSpec): string[] {
  const args = appCommand(app);
  if (args.length === 0 || args[0] === '') {
    throw invalid(`app "${app.name}": image has no command; give --exec`, 'pass --exec=/path/to/program (and arguments after --)');
  }
  if (args.some((a) => a.includes('\0'))) throw invalid(`app "${app.name}": command contains a NUL byte`, 'fix the command');
  return args;
}

function positiveInt(value: number | undefined, what: string, min = 1): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < min) {
    throw invalid(`invalid ${what}: ${value}`, `give a whole number of at least ${min}`);
  }
  return value;
}

function capabilitySet(input: AppSpecInput): string[] {
  const { ctx, app, host } = input;
  if (ctx.insecure.has('capabilities')) return CAPABILITY_NAMES.filter((c) => host.bounding.has(c));
  const retain = normaliseCapabilities(app.capsRetain, `app "${app.name}" capability retain list`);
  const remove = new Set(normaliseCapabilities(app.capsRemove, `app "${app.name}" capability remove list`));
  const set = new Set([...DEFAULT_CAPABILITIES, ...retain]);
  for (const r of remove) set.delete(r);
  const missing = [...set].filter((c) => !host.bounding.has(c));
  if (missing.length > 0) {
    ctx.debug(`capabilities ${missing.join(', ')} are not in gantry's own bounding set; the app will not have them`);
  }
  return CAPABILITY_NAMES.filter((c) => set.has(c) && host.bounding.has(c));
}

function flyMounts(): OciMount[] {
  const mounts: OciMount[] = [
    { destination: '/dev', type: 'bind', source: '/dev', options: ['rbind', 'rslave'] },
    { destination: '/proc', type: 'bind', source: '/proc', options: ['rbind', 'rslave'] },
    { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'rslave'] },
  ];
  for (const f of ['/etc/hosts', '/etc/resolv.conf']) {
    if (fs.existsSync(f)) mounts.push({ destination: f, type: 'bind', source: f, options: ['bind', 'ro'] });
  }
  return mounts;
}

function mountsFor(input: AppSpecInput): OciMount[] {
  const { app, etc } = input;
  const ro = app.readOnlyRootfs === true;
  if (input.fly) return [...flyMounts(), ...volumeMounts(app)];
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
  const etcOptions = ['bind', 'rprivate', 'nosuid', 'nodev', 'noexec', ro ? 'ro' : 'rw'];
  mounts.push(
    { destination: '/etc/hostname', type: 'bind', source: etc.hostname, options: etcOptions },
    { destination: '/etc/hosts', type: 'bind', source: etc.hosts, options: etcOptions },
    { destination: '/etc/resolv.conf', type: 'bind', source: etc.resolvConf, options: etcOptions },
  );
  return [...mounts, ...volumeMounts(app)];
}

function volumeMounts(app: AppSpec): OciMount[] {
  const mounts: OciMount[] = [];
  for (const m of app.mounts ?? []) {
    if (!path.isAbsolute(m.source) || m.source.includes('\0')) {
      throw invalid(`volume source "${m.source}" is not an absolute path`, 'give host paths as absolute paths');
    }
    if (!path.posix.isAbsolute(m.destination) || m.destination.includes('\0') || path.posix.normalize(m.destination) === '/') {
      throw invalid(`volume destination "${m.destination}" must be an absolute path other than /`, 'e.g. --volume /srv/data:/data');
    }
    if (!fs.existsSync(m.source)) {
      throw invalid(`volume source ${m.source} does not exist`, 'create it first, or fix the path');
    }
    mounts.push({
      destination: path.posix.normalize(m.destination),
      type: 'bind',
      source: m.source,
      options: ['rbind', 'rprivate', m.readOnly ? 'ro' : 'rw'],
    });
  }
  return mounts;
}

/** The devices cgroup: deny everything but the standard devices (and mknod, which CAP_MKNOD governs). */
const DEVICE_RULES: readonly OciDeviceRule[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' }, // console
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // devpts
];

export function buildAppSpec(input: AppSpecInput): OciSpec {
  const { ctx, pod, app, user, host } = input;
  const args = appArgs(app);

  const imageEnv = app.config.Env ?? [];
  const extraEnv = app.env ?? [];
  validateEnv(imageEnv, `the image config of app "${app.name}"`);
  validateEnv(extraEnv, `app "${app.name}"`);
  const base = [`PATH=${DEFAULT_PATH}`, `HOSTNAME=${input.hostname}`];
  if (app.tty) base.push('TERM=xterm');
  let env = mergeEnv(base, imageEnv, extraEnv);
  if (!env.some((e) => envKey(e) === 'HOME')) env = [...env, `HOME=${user.home || '/'}`];

  const cwdRaw = app.workingDir ?? app.config.WorkingDir ?? '/';
  if (cwdRaw.includes('\0')) throw invalid(`app "${app.name}": working directory contains a NUL byte`, 'fix the working directory');
  const cwd = path.posix.resolve('/', cwdRaw || '/');

  const caps = input.fly ? CAPABILITY_NAMES.filter((c) => host.bounding.has(c)) : capabilitySet(input);
  const nonRoot = user.uid !== 0;

  const memory = positiveInt(app.limits?.memoryBytes, `memory limit of app "${app.name}"`, 4 * 1024 * 1024);
  const pids = positiveInt(app.limits?.pids, `pids limit of app "${app.name}"`);
  const shares = positiveInt(app.limits?.cpuShares, `cpu shares of app "${app.name}"`, 2);
  const cpus = app.limits?.cpus;
  if (cpus !== undefined && (!Number.isFinite(cpus) || cpus <= 0 || cpus > 4096)) {
    throw invalid(`invalid cpu limit of app "${app.name}": ${cpus}`, 'give a positive number of CPUs, e.g. 0.5');
  }

  const resources: OciSpec['linux']['resources'] = {
    devices: input.fly ? [{ allow: true, access: 'rwm' }] : DEVICE_RULES.map((r) => ({ ...r })),
  };
  if (memory !== undefined) resources.memory = host.swapAccounted ? { limit: memory, swap: memory } : { limit: memory };
  if (cpus !== undefined || shares !== undefined) {
    resources.cpu = {};
    if (cpus !== undefined) Object.assign(resources.cpu, { quota: Math.max(1000, Math.round(cpus * 100000)), period: 100000 });
    if (shares !== undefined) resources.cpu.shares = shares;
  }
  if (pids !== undefined) resources.pids = { limit: pids };

  const shared = input.sharedNamespacesFrom ?? {};
  const namespaces: OciNamespace[] = [shared.pid ? { type: 'pid', path: shared.pid } : { type: 'pid' }, { type: 'mount' }];
  namespaces.push(shared.ipc ? { type: 'ipc', path: shared.ipc } : { type: 'ipc' });
  namespaces.push(shared.uts ? { type: 'uts', path: shared.uts } : { type: 'uts' });
  if (shared.network) namespaces.push({ type: 'network', path: shared.network });
  else if (pod.net !== 'host') namespaces.push({ type: 'network' });
  if (host.cgroupV2) namespaces.push({ type: 'cgroup' });

  const nofile = Math.min(DEFAULT_NOFILE, host.nofileHard);
  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: app.tty === true,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}), umask: 0o022 },
      args,
      env,
      cwd,
      capabilities: {
        bounding: caps,
        // Docker gives a non-root user no effective or permitted capabilities.
        effective: nonRoot ? [] : caps,
        permitted: nonRoot ? [] : caps,
        inheritable: [],
        ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
      noNewPrivileges: !input.fly,
      // Lowering below our own value needs CAP_SYS_RESOURCE; apps never get a negative score.
      oomScoreAdj: Math.max(0, host.oomScoreAdj),
    },
    root: { path: input.rootPath ?? 'rootfs', readonly: app.readOnlyRootfs === true },
    hostname: input.hostname,
    mounts: mountsFor(input),
    annotations: { 'io.gantry.pod.uuid': pod.uuid, 'io.gantry.app.name': app.name },
    linux: { namespaces: input.fly ? [{ type: 'mount' }] : namespaces, cgroupsPath: input.cgroupsPath, resources },
  };
  if (input.fly) {
    delete spec.hostname; // no UTS namespace: the runtime must not set one
    return spec;
  }
  if (!ctx.insecure.has('paths')) {
    spec.linux.maskedPaths = [...MASKED_PATHS];
    spec.linux.readonlyPaths = [...READONLY_PATHS];
  }
  if (!ctx.insecure.has('seccomp') && app.seccomp !== false) {
    spec.linux.seccomp = defaultSeccompProfile(caps);
  }
  return spec;
}
