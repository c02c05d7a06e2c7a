/**
 * The pod sandbox of stage1 ns and what stage1 records on disk about a pod.
 *
 * Sandbox: the pod's network (unless net=host), IPC and UTS namespaces are
 * persistent namespace files `<podDir>/ns/{net,ipc,uts}` (bind mounts of
 * /proc/<pid>/ns/*, as `ip netns add` makes them), so they live without any
 * pause process. One `unshare` child creates them, brings `lo` up and sets
 * the pod hostname inside them. Every app's OCI spec joins them by path.
 * With a CNI network the CNI worker's setupPodNetwork configures the netns
 * file; its result is kept in `stage1-net.json` for status.
 *
 * Records (all JSON, written atomically by rename):
 *   <podDir>/stage1-pod.json        PodRecord: written before anything is
 *                                   created, so gc knows what to look for
 *                                   even after kill -9 mid-start
 *   <podDir>/stage1-net.json        the CNI result
 *   <podDir>/apps/<app>/state.json  AppRecord: monitor, pid, times, exit
 *
 * PID sharing (--pid=pod): a PID namespace cannot be kept alive in a file
 * without a process in it, so the pod's first app is its PID 1: the others
 * join /proc/<pid of app 1>/ns/pid. When the first app exits the kernel
 * kills the rest of the namespace (as in a Kubernetes pod with a shared PID
 * namespace whose pause process dies).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../../context.js';
import { GantryError, errnoCode } from '../../errors.js';
import { createNamespaceFiles, removeNamespaceFiles } from '../../sys/namespaces.js';
import type { HostsEntry, PodDns, PodSpec } from '../abi.js';
import type { ProcessId } from './monitor.js';
import { writeFileAtomicSync } from '../../util/fs.js';


export interface PodRecord {
  version: 1;
  uuid: string;
  stage1: 'ns' | 'fly';
  /** Absolute path of the OCI runtime binary. */
  runtime: string;
  hostname: string;
  net: 'none' | 'host' | 'cni';
  pidMode: 'app' | 'pod';
  /** Namespace files of the pod (kind -> path). */
  ns: Partial<Record<'net' | 'ipc' | 'uts', string>>;
  /** Processes holding the pod lock through an fd (fd number in that process). */
  lockHolders: Array<ProcessId & { fd: number }>;
  createdAt: string;
}

export interface AppRecord {
  name: string;
  /** The runtime's container id. */
  id: string;
  /** 'conmon' (detached, app verbs) or 'gantry' (a foreground run: the runtime's `run` process). */
  monitor: 'conmon' | 'gantry';
  monitorProc?: ProcessId;
  /** The app's first process. */
  appProc?: ProcessId;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  signal?: string;
  oomKilled?: boolean;
  stopSignal?: string;
  memoryBytes?: number;
}

/** One network's CNI result as stage1 records it (src/net's summary). */
export type CniNetworkResult = import('../../net/result.js').NetworkSummary;

/** The src/net API stage1 calls; its type only here, the module loads when a pod uses CNI. */
type NetApi = typeof import('../../net/index.js');

/**
 * Stage1's records are rewritten by rename so no reader sees a torn file;
 * not fsynced: after a power loss the pod is dead and gc reads what is there.
 */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomicSync(file, JSON.stringify(value, null, 2) + '\n', { durable: false });
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new GantryError('POD_STATE', `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, {
      hint: 'the pod dir is damaged; run gantry gc to remove the pod',
    });
  }
}

export const podRecordPath = (podDir: string): string => path.join(podDir, 'stage1-pod.json');
export const netRecordPath = (podDir: string): string => path.join(podDir, 'stage1-net.json');
export const appRecordPath = (podDir: string, app: string): string => path.join(podDir, 'apps', app, 'state.json');

export function readPodRecord(podDir: string): PodRecord | undefined {
  return readJson<PodRecord>(podRecordPath(podDir));
}

export function readAppRecord(podDir: string, app: string): AppRecord | undefined {
  return readJson<AppRecord>(appRecordPath(podDir, app));
}

export function writeAppRecord(podDir: string, rec: AppRecord): void {
  writeJsonAtomic(appRecordPath(podDir, rec.name), rec);
}

export function netKind(pod: PodSpec): PodRecord['net'] {
  return typeof pod.net === 'object' ? 'cni' : pod.net;
}

/**
 * Creates the pod's namespace files (net unless host; ipc; uts), brings lo
 * up and sets the hostname, all in one short-lived `unshare` child.
 */
export async function createSandbox(podDir: string, net: PodRecord['net'], hostname: string): Promise<PodRecord['ns']> {
  // hostname is validated (RFC 1123) and passed as $1, never spliced into the script.
  const script = net === 'host' ? 'hostname "$1"' : 'ip link set lo up && hostname "$1"';
  return createNamespaceFiles(path.join(podDir, 'ns'), net === 'host' ? ['ipc', 'uts'] : ['net', 'ipc', 'uts'], ['/bin/sh', '-c', script, 'sh', hostname]);
}

export async function removeSandbox(podDir: string): Promise<void> {
  const dir = path.join(podDir, 'ns');
  await removeNamespaceFiles(['net', 'ipc', 'uts'].map((k) => path.join(dir, k)));
  fs.rmSync(dir, { recursive: true, force: true });
}

async function netApi(): Promise<NetApi> {
  // Loaded only by pods that use CNI networks.
  return import('../../net/index.js');
}

export async function setupNetwork(ctx: Context, pod: PodSpec, netnsPath: string): Promise<CniNetworkResult[]> {
  if (typeof pod.net !== 'object') return [];
  const api = await netApi();
  const res = await api.setupPodNetwork(ctx, {
    podId: pod.uuid, netnsPath, networks: pod.net.networks, ports: pod.net.ports,
  });
  writeJsonAtomic(netRecordPath(pod.podDir), res.networks);
  return res.networks;
}

export async function teardownNetwork(ctx: Context, uuid: string, podDir: string): Promise<void> {
  const api = await netApi();
  await api.teardownPodNetwork(ctx, uuid, path.join(podDir, 'ns', 'net'));
  fs.rmSync(netRecordPath(podDir), { force: true });
}

function hostResolvConf(dropLoopback: boolean): string {
  let text: string;
  try {
    text = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '# gantry: the host has no /etc/resolv.conf\n';
  }
  if (!dropLoopback) return text;
  // A 127.x resolver (systemd-resolved, dnsmasq) is the host's loopback, unreachable from the pod.
  return text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l)).join('\n');
}

function resolvFrom(d: { servers?: string[]; search?: string[]; options?: string[] }): string {
  const lines = ['# gantry'];
  if (d.search?.length) lines.push(`search ${d.search.join(' ')}`);
  for (const s of d.servers ?? []) lines.push(`nameserver ${s}`);
  if (d.options?.length) lines.push(`options ${d.options.join(' ')}`);
  return lines.join('\n') + '\n';
}

const SAFE_TOKEN = /^[^\s#\0]+$/;

function validateDnsAndHosts(dns: PodDns | undefined, entries: HostsEntry[] | undefined): void {
  for (const v of [...(dns?.servers ?? []), ...(dns?.search ?? []), ...(dns?.options ?? [])]) {
    if (!SAFE_TOKEN.test(v)) throw new GantryError('CONFIG_INVALID', `invalid DNS setting "${v}"`, { hint: 'DNS servers, search domains and options are single words' });
  }
  for (const e of entries ?? []) {
    if (!SAFE_TOKEN.test(e.ip) || e.names.length === 0 || !e.names.every((n) => SAFE_TOKEN.test(n))) {
      throw new GantryError('CONFIG_INVALID', `invalid hosts entry "${e.ip} ${e.names.join(' ')}"`, { hint: 'use --hosts-entry IP=NAME' });
    }
  }
}

/**
 * The pod's resolv.conf and hosts: --dns flags, else the CNI result's DNS,
 * else the host's (net=host as is; CNI without 127.x resolvers); net=none
 * has no reachable resolver and gets a comment only. hosts: localhost, the
 * hostname on the pod's first IP (127.0.1.1 without one), hostsEntries.
 */
export function podEtcContents(pod: PodSpec, hostname: string, networks: CniNetworkResult[]): { hosts: string; resolv: string } {
  validateDnsAndHosts(pod.dns, pod.hostsEntries);
  const kind = netKind(pod);
  let resolv: string;
  const flags = pod.dns && (pod.dns.servers?.length || pod.dns.search?.length || pod.dns.options?.length) ? pod.dns : undefined;
  const cniDns = networks.find((n) => n.dns?.nameservers?.length)?.dns;
  if (flags) resolv = resolvFrom(flags);
  else if (kind === 'cni' && cniDns) resolv = resolvFrom({ servers: cniDns.nameservers, search: cniDns.search, options: cniDns.options });
  else if (kind === 'host') resolv = hostResolvConf(false);
  else if (kind === 'cni') resolv = hostResolvConf(true);
  else resolv = '# gantry: the pod has no network (net=none)\n';

  const short = hostname.split('.')[0]!;
  const names = short === hostname ? hostname : `${hostname} ${short}`;
  const podIp = networks.flatMap((n) => n.ips).map((c) => c.split('/')[0]!).find((ip) => ip && !ip.includes(':'));
  let hosts = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${podIp ?? '127.0.1.1'}\t${names}\n`;
  for (const e of pod.hostsEntries ?? []) hosts += `${e.ip}\t${e.names.join(' ')}\n`;
  return { hosts, resolv };
}
