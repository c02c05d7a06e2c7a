/**
 * The flags of a pod's apps and of the pod itself, shared by `run`,
 * `prepare` and `app add`, and the parsing of rkt's multi-app command line:
 *
 *   gantry run [pod flags] [app flags] IMAGE [app flags] [-- ARGS | CMD ARGS]
 *              [--- IMAGE2 [app flags] [-- ARGS] ...]
 *
 * The argv is split on `---` first; each piece starts with an image and is
 * parsed with the per-app flag set. Pod flags go before the first image (they
 * are also accepted right after it); app flags before the first image apply
 * to the first app.
 */
import net from 'node:net';
import path from 'node:path';
import { GantryError } from '../../errors.js';
import { parseNetFlag, parsePortFlag } from '../../net/flags.js';
import type { AppMountRecord, VolumeRecord } from '../../pod/manifest.js';
import { requestsFromAppcManifest, type AppRequest, type PodRequest } from '../../pod/prepare.js';
import { parseStage1Name } from '../../pod/stage1.js';
import type { HostsEntry, PodNet, ResourceLimits } from '../../stage1/abi.js';
import { boolFlag, listFlag, parseArgs, stringFlag, type FlagSpecs, type ParsedArgs } from '../args.js';
import { PULL_FLAGS, parsePullPolicy } from '../fetch.js';
import { parsePlatform } from '../platform.js';

/**
 * The network a pod gets without --net: a CNI network ("default") where
 * stage1 supports it. See docs/pods.md.
 */
const DEFAULT_NET = 'default';

/** `--port NAME:HOSTPORT`: NAME has a letter ("80-tcp", "http"), so it is neither a port nor an IPv4 address. */
const NAMED_PORT_RE = /^(?=[a-z0-9-]*[a-z])([a-z0-9][a-z0-9-]{0,62}):(\d{1,5})$/;

export const APP_FLAGS: FlagSpecs = {
  exec: { type: 'string', value: 'CMD', description: 'command to run instead of the image\'s entrypoint (arguments after --)' },
  name: { type: 'string', value: 'NAME', description: 'app name (default: from the image name)' },
  environment: { type: 'list', short: 'e', value: 'KEY=VALUE', description: 'set an environment variable (repeatable; KEY alone copies it from gantry\'s environment)' },
  user: { type: 'string', value: 'USER', description: 'user to run as: name, uid, uid:gid or name:group' },
  group: { type: 'string', value: 'GROUP', description: 'primary group: name or gid' },
  'working-dir': { type: 'string', value: 'DIR', description: 'working directory inside the app' },
  memory: { type: 'string', value: 'SIZE', description: 'memory limit, e.g. 64M, 1G' },
  cpu: { type: 'string', value: 'CPUS', description: 'CPU limit in CPUs, e.g. 0.5 (or 500m)' },
  'pids-limit': { type: 'string', value: 'N', description: 'maximum number of processes and threads' },
  'cap-retain': { type: 'list', value: 'CAP', description: 'add a capability to the default set (repeatable, comma lists)' },
  'cap-remove': { type: 'list', value: 'CAP', description: 'remove a capability from the default set (repeatable, comma lists)' },
  seccomp: { type: 'string', value: 'on|off', description: 'the default seccomp filter (default on)' },
  'readonly-rootfs': { type: 'boolean', description: 'mount the app\'s root filesystem read-only' },
  mount: { type: 'list', value: 'volume=NAME,target=PATH[,readOnly=true]', description: 'mount a pod volume into the app (rkt syntax)' },
  volume: {
    type: 'list', short: 'v', value: 'SPEC',
    description: 'NAME,kind=host,source=PATH[,readOnly=true] or NAME,kind=empty declares a pod volume (rkt); /HOST:/CTR[:ro] bind-mounts a host path into this app',
  },
};

export const POD_FLAGS: FlagSpecs = {
  ...PULL_FLAGS,
  hostname: { type: 'string', value: 'NAME', description: 'pod hostname (default gantry-<uuid prefix>)' },
  net: { type: 'string', value: 'NETS', description: 'default (CNI network "default"), host, none, or NAME[:K=V;...][,NAME2...]' },
  port: { type: 'list', short: 'p', value: '[IP:]HOSTPORT:PODPORT[/tcp|udp] | NAME:HOSTPORT', description: 'publish a pod port on the host (CNI networks only); NAME: a port the image declares (80-tcp for EXPOSE 80)' },
  dns: { type: 'list', value: 'IP', description: 'nameserver for the pod\'s /etc/resolv.conf (repeatable)' },
  'dns-search': { type: 'list', value: 'DOMAIN', description: 'search domain for /etc/resolv.conf (repeatable)' },
  'dns-opt': { type: 'list', value: 'OPT', description: 'resolv.conf option, e.g. ndots:2 (repeatable)' },
  'hosts-entry': { type: 'list', value: 'IP=NAME[,NAME2]', description: 'add a line to the pod\'s /etc/hosts (repeatable)' },
  pid: { type: 'string', value: 'pod|app', description: 'pod: the apps share one PID namespace (default app: one each)' },
  'stage1-name': { type: 'string', value: 'ns|fly', description: 'stage1 to run the pod with (default ns; fly: chroot, host network)' },
  'oci-runtime': { type: 'string', value: 'crun|runc|PATH', description: 'OCI runtime stage1 ns uses (default crun)' },
  interactive: { type: 'boolean', short: 't', description: 'give the app this terminal: stdin and a tty (one app only)' },
  'pod-manifest': { type: 'string', value: 'FILE', description: 'take the apps and volumes from an appc pod manifest (as cat-manifest prints)' },
};

export const RUN_ONLY_FLAGS: FlagSpecs = {
  detach: { type: 'boolean', short: 'd', description: 'start the pod in the background and print its UUID' },
  rm: { type: 'boolean', description: 'remove the pod as soon as it exited' },
};

// --- value parsers ------------------------------------------------------------

function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmgt]i?b?|b)?$/i.exec(text.trim());
  if (!m) throw new GantryError('USAGE', `--${flag}: "${text}" is not a size`, { hint: 'use e.g. 512K, 64M, 1G' });
  const unit = (m[2] ?? 'b').toLowerCase()[0]!;
  const factor: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  const n = Math.floor(Number(m[1]) * factor[unit]!);
  if (n <= 0) throw new GantryError('USAGE', `--${flag} must be more than 0`);
  return n;
}

function parsePositive(text: string, flag: string, integer = false): number {
  const milli = /^(\d+)m$/.exec(text.trim());
  const n = milli && flag === 'cpu' ? Number(milli[1]) / 1000 : Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new GantryError('USAGE', `--${flag} must be a positive ${integer ? 'integer' : 'number'}, not "${text}"`);
  }
  return n;
}

function keyValues(text: string, flag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new GantryError('USAGE', `--${flag}=${text}: "${part}" is not KEY=VALUE`, { hint: flagHint(flag) });
    const key = part.slice(0, eq).trim();
    if (out.has(key)) throw new GantryError('USAGE', `--${flag}=${text}: "${key}" is given twice`, { hint: flagHint(flag) });
    out.set(key, part.slice(eq + 1));
  }
  return out;
}

function flagHint(flag: string): string {
  return flag === 'mount'
    ? 'use --mount volume=NAME,target=/PATH[,readOnly=true]'
    : 'use --volume NAME,kind=host,source=/PATH[,readOnly=true], --volume NAME,kind=empty, or -v /HOST:/CTR[:ro]';
}

function parseBool(text: string, what: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new GantryError('USAGE', `${what} must be true or false, not "${text}"`);
}

export type VolumeFlag = { declare: VolumeRecord } | { bind: { source: string; target: string; readOnly: boolean } };

/** One --volume/-v value: an rkt volume declaration or a podman-style bind. */
function parseVolumeFlag(text: string): VolumeFlag {
  const bad = (why: string) => new GantryError('USAGE', `bad volume "${text}": ${why}`, { hint: flagHint('volume') });
  if (text.startsWith('/')) {
    const parts = text.split(':');
    if (parts.length < 2 || parts.length > 3) throw bad('expected /HOST:/CTR[:ro|rw]');
    const [source, target, mode] = parts as [string, string, string | undefined];
    if (!path.isAbsolute(target)) throw bad(`the container path "${target}" is not absolute`);
    if (mode !== undefined && mode !== 'ro' && mode !== 'rw') throw bad(`mode "${mode}" is not ro or rw`);
    return { bind: { source: path.normalize(source), target, readOnly: mode === 'ro' } };
  }
  const comma = text.indexOf(',');
  if (comma <= 0) throw bad('expected NAME,kind=host,source=PATH or /HOST:/CTR');
  const name = text.slice(0, comma);
  const kv = keyValues(text.slice(comma + 1), 'volume');
  const kind = kv.get('kind');
  if (kind !== 'host' && kind !== 'empty') throw bad(`kind must be host or empty, not "${kind ?? ''}"`);
  for (const k of kv.keys()) if (!['kind', 'source', 'readOnly'].includes(k)) throw bad(`unknown key "${k}"`);
  const source = kv.get('source');
  if (kind === 'host' && !source) throw bad('kind=host needs source=/HOST/PATH');
  const readOnly = kv.has('readOnly') ? parseBool(kv.get('readOnly')!, `--volume ${name} readOnly`) : undefined;
  return { declare: { name, kind, ...(source !== undefined ? { source } : {}), ...(readOnly !== undefined ? { readOnly } : {}) } };
}

function parseMountFlag(text: string): AppMountRecord {
  const kv = keyValues(text, 'mount');
  for (const k of kv.keys()) if (!['volume', 'target', 'readOnly'].includes(k)) throw new GantryError('USAGE', `--mount=${text}: unknown key "${k}"`, { hint: flagHint('mount') });
  const volume = kv.get('volume');
  const target = kv.get('target');
  if (!volume || !target) throw new GantryError('USAGE', `--mount=${text} needs volume= and target=`, { hint: flagHint('mount') });
  return { volume, target, ...(kv.has('readOnly') ? { readOnly: parseBool(kv.get('readOnly')!, '--mount readOnly') } : {}) };
}

function parseEnv(values: string[]): string[] {
  return values.map((v) => {
    const eq = v.indexOf('=');
    const key = eq < 0 ? v : v.slice(0, eq);
    if (!/^[^=\0]+$/.test(key) || v.includes('\0')) throw new GantryError('USAGE', `--environment "${v}" is not KEY=VALUE`);
    if (eq >= 0) return v;
    const host = process.env[key];
    return host === undefined ? undefined : `${key}=${host}`;
  }).filter((v): v is string => v !== undefined);
}

function parseHostsEntry(text: string): HostsEntry {
  const eq = text.indexOf('=');
  const ip = eq < 0 ? '' : text.slice(0, eq);
  const names = eq < 0 ? [] : text.slice(eq + 1).split(',').map((s) => s.trim()).filter(Boolean);
  if (!net.isIP(ip) || names.length === 0 || names.some((n) => !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(n))) {
    throw new GantryError('USAGE', `--hosts-entry "${text}" is not IP=NAME[,NAME2]`, { hint: 'e.g. --hosts-entry 10.0.0.5=db.local' });
  }
  return { ip, names };
}

// --- building requests ---------------------------------------------------------

/** Builds one app's request from its flags; binds (-v) become pod volumes named bind-N. */
export function appRequestFrom(args: ParsedArgs, image: string, cmdArgs: string[] | undefined, volumes: VolumeRecord[]): AppRequest {
  const limits: ResourceLimits = {};
  const memory = stringFlag(args, 'memory');
  if (memory !== undefined) limits.memoryBytes = parseSize(memory, 'memory');
  const cpu = stringFlag(args, 'cpu');
  if (cpu !== undefined) limits.cpus = parsePositive(cpu, 'cpu');
  const pids = stringFlag(args, 'pids-limit');
  if (pids !== undefined) limits.pids = parsePositive(pids, 'pids-limit', true);
  const seccompText = stringFlag(args, 'seccomp');
  let seccomp: boolean | undefined;
  if (seccompText !== undefined) {
    if (['on', 'true', 'default'].includes(seccompText)) seccomp = true;
    else if (['off', 'false', 'unconfined'].includes(seccompText)) seccomp = false;
    else throw new GantryError('USAGE', `--seccomp must be on or off, not "${seccompText}"`);
  }
  const mounts = listFlag(args, 'mount').map(parseMountFlag);
  for (const v of listFlag(args, 'volume')) {
    const parsed = parseVolumeFlag(v);
    if ('declare' in parsed) {
      volumes.push(parsed.declare);
    } else {
      const name = `bind-${volumes.filter((x) => x.name.startsWith('bind-')).length + 1}`;
      volumes.push({ name, kind: 'host', source: parsed.bind.source, readOnly: parsed.bind.readOnly });
      mounts.push({ volume: name, target: parsed.bind.target, ...(parsed.bind.readOnly ? { readOnly: true } : {}) });
    }
  }
  const exec = stringFlag(args, 'exec');
  const splitList = (name: string) => listFlag(args, name).flatMap((c) => c.split(',')).map((c) => c.trim()).filter(Boolean);
  const req: AppRequest = {
    image,
    name: stringFlag(args, 'name'),
    exec: exec === undefined ? undefined : [exec, ...(cmdArgs ?? [])],
    args: exec === undefined ? cmdArgs : undefined,
    env: parseEnv(listFlag(args, 'environment')),
    user: stringFlag(args, 'user'),
    group: stringFlag(args, 'group'),
    workingDir: stringFlag(args, 'working-dir'),
    readOnlyRootfs: boolFlag(args, 'readonly-rootfs') || undefined,
    capsRetain: splitList('cap-retain'),
    capsRemove: splitList('cap-remove'),
    seccomp,
    limits: Object.keys(limits).length ? limits : undefined,
    mounts,
  };
  const wd = req.workingDir;
  if (wd !== undefined && !path.isAbsolute(wd)) throw new GantryError('USAGE', `--working-dir "${wd}" must be an absolute path`);
  return req;
}

/** The pod-level parts of a request (everything but apps and volumes). */
function podOptionsFrom(args: ParsedArgs): Omit<PodRequest, 'apps' | 'volumes'> {
  const stage1 = parseStage1Name(stringFlag(args, 'stage1-name'));
  const netText = stringFlag(args, 'net');
  let netSpec: PodNet;
  if (stage1 === 'fly') {
    if (netText !== undefined && netText !== 'host') {
      throw new GantryError('USAGE', `--stage1-name=fly runs apps in the host's network; --net=${netText} is not possible`, { hint: 'drop --net, or use --stage1-name=ns' });
    }
    netSpec = 'host';
  } else {
    netSpec = parseNetFlag(netText ?? DEFAULT_NET) as PodNet;
  }
  // rkt's NAME:HOSTPORT (a port the image declares by name) is told apart
  // from HOSTPORT:PODPORT by its first part not being a number or address.
  const portTexts = listFlag(args, 'port');
  const named = portTexts.filter((t) => NAMED_PORT_RE.test(t)).map((t) => {
    const m = NAMED_PORT_RE.exec(t)!;
    const hostPort = Number(m[2]);
    if (hostPort < 1 || hostPort > 65535) throw new GantryError('USAGE', `--port ${t}: host port must be 1-65535`);
    return { name: m[1]!, hostPort };
  });
  const ports = portTexts.filter((t) => !NAMED_PORT_RE.test(t)).map(parsePortFlag);
  if (portTexts.length > 0 && typeof netSpec !== 'object') {
    throw new GantryError('USAGE', `--port needs a CNI network; the pod's network is ${netSpec}`, { hint: 'use --net=default (or another CNI network) with -p/--port' });
  }
  if (ports.length > 0 && typeof netSpec === 'object') netSpec = { ...netSpec, ports };
  const servers = listFlag(args, 'dns').flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const s of servers) if (!net.isIP(s)) throw new GantryError('USAGE', `--dns "${s}" is not an IP address`);
  const search = listFlag(args, 'dns-search');
  const options = listFlag(args, 'dns-opt');
  const pid = stringFlag(args, 'pid');
  if (pid !== undefined && pid !== 'pod' && pid !== 'app') throw new GantryError('USAGE', `--pid must be pod or app, not "${pid}"`);
  const hostname = stringFlag(args, 'hostname');
  if (hostname !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/.test(hostname)) {
    throw new GantryError('USAGE', `--hostname "${hostname}" is not a valid host name`, { hint: 'letters, digits, "-" and ".", at most 64 characters' });
  }
  return {
    net: netSpec,
    ...(named.length ? { namedPorts: named } : {}),
    ...(servers.length || search.length || options.length ? { dns: { ...(servers.length ? { servers } : {}), ...(search.length ? { search } : {}), ...(options.length ? { options } : {}) } } : {}),
    hostsEntries: listFlag(args, 'hosts-entry').map(parseHostsEntry),
    ...(hostname ? { hostname } : {}),
    ...(pid ? { pidMode: pid } : {}),
    stage1,
    ociRuntime: stringFlag(args, 'oci-runtime'),
    pullPolicy: parsePullPolicy(stringFlag(args, 'pull-policy'), 'new'),
    platform: parsePlatform(stringFlag(args, 'platform')),
  };
}

/** Parses one `IMAGE [app flags] [-- ARGS | CMD ARGS...]` piece. */
export function parseAppSegment(segment: string[], specs: FlagSpecs): { image: string; args: ParsedArgs; cmdArgs: string[] | undefined } {
  const [image, ...rest] = segment;
  if (image === undefined || image === '') throw new GantryError('USAGE', 'an image is missing (before or after ---)', { hint: 'gantry run IMAGE [--- IMAGE2 ...]' });
  if (image.startsWith('-')) throw new GantryError('USAGE', `expected an image, got "${image}"`, { hint: 'pod flags go before the first image; each --- is followed by an image' });
  const args = parseArgs(rest, specs, { stopAtPositional: true });
  let cmdArgs: string[] | undefined;
  if (args.positionals.length > 0) cmdArgs = args.positionals;
  else if (args.sawDoubleDash) cmdArgs = args.rest;
  return { image, args, cmdArgs };
}

/** Merges flags given before the first image into the first app's (the app's own win; lists add up). */
function mergeFlags(before: ParsedArgs, own: ParsedArgs, keys: string[]): void {
  for (const k of keys) {
    const b = before.flags.get(k);
    if (b === undefined) continue;
    const o = own.flags.get(k);
    if (o === undefined) own.flags.set(k, b);
    else if (Array.isArray(o) && Array.isArray(b)) own.flags.set(k, [...b, ...o]);
  }
}

/** --interactive: the pod's one app gets a terminal when `tty` (run: stdin is one; prepare: always). */
export function markInteractive(req: PodRequest, tty: boolean): void {
  if (req.apps.length !== 1) throw new GantryError('USAGE', '--interactive works with a pod of one app');
  req.apps[0]!.tty = tty;
}

/**
 * Turns `run`/`prepare` arguments into a pod request. `args` is what the
 * command parser saw up to the first image; its positionals hold the rest.
 */
export function podRequestFromArgv(args: ParsedArgs): PodRequest {
  const manifestFile = stringFlag(args, 'pod-manifest');
  const segments: string[][] = [[]];
  for (const word of args.positionals) {
    if (word === '---') segments.push([]);
    else segments[segments.length - 1]!.push(word);
  }
  const appKeys = Object.keys(APP_FLAGS);
  const volumes: VolumeRecord[] = [];
  const apps: AppRequest[] = [];
  if (manifestFile !== undefined) {
    if (args.positionals.length > 0) throw new GantryError('USAGE', '--pod-manifest and images on the command line do not mix', { hint: 'put every app in the manifest' });
    const fromFile = requestsFromAppcManifest(manifestFile);
    return { apps: fromFile.apps, volumes: fromFile.volumes, ...podOptionsFrom(args) };
  }
  if (segments.length === 1 && segments[0]!.length === 0) {
    throw new GantryError('USAGE', 'no image given', { hint: 'gantry run [flags] IMAGE [--exec CMD] [-- ARGS] [--- IMAGE2 ...]' });
  }
  segments.forEach((segment, i) => {
    const { image, args: own, cmdArgs } = parseAppSegment(segment, { ...APP_FLAGS, ...POD_FLAGS, ...RUN_ONLY_FLAGS });
    for (const k of own.flags.keys()) {
      if (appKeys.includes(k)) continue;
      if (i > 0) throw new GantryError('USAGE', `--${k} is a pod flag: give it before the first image`, { hint: 'after --- only app flags (--exec, --name, -e, ...) are allowed' });
      if (args.flags.has(k) && !Array.isArray(args.flags.get(k))) throw new GantryError('USAGE', `--${k} is given twice`);
      const prev = args.flags.get(k);
      const val = own.flags.get(k)!;
      args.flags.set(k, Array.isArray(prev) && Array.isArray(val) ? [...prev, ...val] : val);
    }
    if (i === 0) mergeFlags(args, own, appKeys);
    apps.push(appRequestFrom(own, image, cmdArgs, volumes));
  });
  return { apps, volumes, ...podOptionsFrom(args) };
}
