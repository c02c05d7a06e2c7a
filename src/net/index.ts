/**
 * Pod networking: attaches a pod's network namespace to CNI networks and
 * detaches it again.
 *
 * Lifecycle, as stage1 drives it:
 *   setupPodNetwork     after the pod's netns file exists (stage1 brought its
 *                       `lo` up when it made it), before apps start. ADDs
 *                       each network in order
 *                       (eth0, eth1, ...), each plugin of a list in order with
 *                       the previous plugin's result as prevResult. All or
 *                       nothing: on any failure everything already added is
 *                       DELeted and NETWORK_ERROR thrown.
 *   checkPodNetwork     CHECK against the cached results (0.4.0+ lists).
 *   teardownPodNetwork  on stop and in gc, before the netns file is removed
 *                       (it still works after, with CNI_NETNS empty). Replays
 *                       DEL from the cache in reverse order; idempotent.
 *
 * Host ports (`-p`) go to the first network of the pod, to its plugins that
 * declare the `portMappings` capability (portmap).
 */
import fs from 'node:fs/promises';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Context } from '../context.js';
import { GantryError, isGantryError } from '../errors.js';
import { FileLock } from '../store/lock.js';
import { type CachedNetwork, listCachedPods, networkEntryName, podCacheDir, readNetworks, readPod, removePodCache, writeAtomic } from './cache.js';
import { DEFAULT_NETWORK, type NetworkConfigList, ensureDefaultNetworkConfig, loadNetwork } from './config.js';
import type { PortMapping } from './flags.js';
import { type CniCommand, execPlugin, findPlugin, pluginDirs, pluginTimeoutMs } from './invoke.js';
import { checkHostPorts, checkOwnPorts } from './ports.js';
import { type NetworkSummary, summarizeResult, versionAtLeast } from './result.js';

const execFileP = promisify(execFile);

export interface PodNetworkResult {
  networks: NetworkSummary[];
}

export interface PodNetworkRequest {
  podId: string;
  netnsPath: string;
  networks: { name: string; args?: Record<string, string> }[];
  ports: PortMapping[];
}

/** CNI container IDs and our cache paths both need a plain token. */
const POD_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const NSFS_MAGIC = 0x6e736673;

function checkPodId(podId: string): void {
  if (!POD_ID_RE.test(podId)) {
    throw new GantryError('USAGE', `"${podId}" is not a valid pod ID for networking (letters, digits, "_", ".", "-")`);
  }
}

/** Whether `file` is a live namespace (a bind-mounted nsfs file). */
async function isNamespaceFile(file: string): Promise<boolean> {
  try {
    const st = await fs.statfs(file);
    return Number(st.type) === NSFS_MAGIC;
  } catch {
    return false;
  }
}

function cniArgsText(args: Record<string, string> | undefined): string {
  const pairs = Object.entries({ IgnoreUnknown: '1', ...(args ?? {}) }).map(([k, v]) => `${k}=${v}`);
  return pairs.join(';');
}

/** The stdin config of one plugin of a list (SPEC 1.0.0 section 3). */
function pluginConfig(list: NetworkConfigList, index: number, prevResult: unknown, portMappings: CachedNetwork['portMappings']): Record<string, unknown> {
  const plugin = list.plugins[index]!;
  const config: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  delete config.prevResult;
  delete config.runtimeConfig;
  if (prevResult !== undefined) config.prevResult = prevResult;
  if (portMappings && portMappings.length > 0 && plugin.capabilities?.portMappings === true) {
    config.runtimeConfig = { portMappings };
  }
  return config;
}

/** Writes gantry's `default` network config on first use (see docs/networking.md). */
export { ensureDefaultNetworkConfig as ensureDefaultNetwork };

/**
 * Runs `command` over the plugins of one cached network, in list order for
 * ADD/CHECK and reverse for DEL. For DEL every plugin is tried even when an
 * earlier one failed; the errors are returned.
 */
async function delNetwork(ctx: Context, podId: string, netns: string, entry: CachedNetwork, dirs: readonly string[], upTo?: number, prevResult?: unknown): Promise<GantryError[]> {
  const list = entry.conflist;
  const errors: GantryError[] = [];
  const last = upTo ?? list.plugins.length - 1;
  // prevResult on DEL arrived with 0.4.0; older plugins ignore it but the spec forbids sending it.
  const prev = versionAtLeast(list.cniVersion, '0.4.0') ? (prevResult ?? entry.result) : undefined;
  for (let i = last; i >= 0; i--) {
    const type = list.plugins[i]!.type;
    try {
      await runPlugin(ctx, 'DEL', podId, netns, entry, i, prev, dirs);
    } catch (err) {
      errors.push(isGantryError(err) ? err : new GantryError('NETWORK_ERROR', `network "${list.name}": CNI plugin "${type}" DEL failed: ${(err as Error).message}`, { cause: err }));
    }
  }
  if (netns === '') await sweepIptables(ctx, podId);
  return errors;
}

/**
 * Without a netns the bridge plugin cannot find the pod's addresses and so
 * leaves its ipMasq chain behind; remove nat rules tagged with this pod's
 * container ID (the plugins' `id: "<podId>"` comments) and the chains they
 * jump to. Best effort: iptables may be absent.
 */
async function sweepIptables(ctx: Context, podId: string): Promise<void> {
  let saved: string;
  try {
    saved = (await execFileP('iptables-save', ['-t', 'nat'], { timeout: 10_000, maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch {
    return;
  }
  const tag = `id: \\"${podId}\\"`;
  const chains = new Set<string>();
  for (const line of saved.split('\n')) {
    if (!line.startsWith('-A ') || !line.includes(tag)) continue;
    const jump = / -j (CNI-[A-Za-z0-9-]+)/.exec(line);
    if (jump) chains.add(jump[1]!);
    const rule = line.slice(3).match(/(?:[^\s"]+|"(?:\\.|[^"\\])*")+/g) ?? [];
    const args = rule.map((a) => (a.startsWith('"') ? a.slice(1, -1).replace(/\\"/g, '"') : a));
    await execFileP('iptables', ['-t', 'nat', '-D', ...args], { timeout: 10_000 }).catch((err: Error) => ctx.debug(`net: cannot delete leftover rule ${line}: ${err.message}`));
  }
  for (const chain of chains) {
    if (!/^CNI-[0-9a-f]{24}$/.test(chain)) continue; // per-pod chains only, never the shared ones
    await execFileP('iptables', ['-t', 'nat', '-F', chain], { timeout: 10_000 }).catch(() => {});
    await execFileP('iptables', ['-t', 'nat', '-X', chain], { timeout: 10_000 }).catch(() => {});
  }
}

/**
 * Attaches the pod's netns to its networks. Returns what each network gave
 * the pod. On failure nothing of the pod stays configured and the error
 * (NETWORK_ERROR, NETWORK_NOT_FOUND, CONFIG_INVALID) names the network and
 * plugin.
 */
export async function setupPodNetwork(ctx: Context, req: PodNetworkRequest): Promise<PodNetworkResult> {
  checkPodId(req.podId);
  if (req.networks.length === 0) throw new GantryError('USAGE', 'no network to attach the pod to');
  if (!(await isNamespaceFile(req.netnsPath))) {
    throw new GantryError('NETWORK_ERROR', `${req.netnsPath} is not a network namespace`, { hint: 'the pod\'s namespace files must exist before its network is set up' });
  }
  if (await readPod(ctx, req.podId)) {
    throw new GantryError('NETWORK_ERROR', `pod ${req.podId} already has networks set up`, { hint: 'tear its network down first (gantry stop / gantry gc)' });
  }

  // Resolve everything that can be wrong before touching the system.
  if (req.networks.some((n) => n.name === DEFAULT_NETWORK)) await ensureDefaultNetworkConfig(ctx);
  const lists: NetworkConfigList[] = [];
  for (const n of req.networks) lists.push(await loadNetwork(ctx, n.name));
  const dirs = pluginDirs();
  for (const list of lists) for (const p of list.plugins) findPlugin(list.name, p.type, dirs);
  checkOwnPorts(req.ports);
  const portMappings = req.ports.map((p) => ({ hostPort: p.hostPort, containerPort: p.podPort, protocol: p.protocol, ...(p.hostIP ? { hostIP: p.hostIP } : {}) }));
  if (req.ports.length > 0 && !lists[0]!.plugins.some((p) => p.capabilities?.portMappings === true)) {
    throw new GantryError('NETWORK_ERROR', `network "${lists[0]!.name}" has no plugin with the portMappings capability, so -p cannot be honoured`, {
      hint: `add {"type": "portmap", "capabilities": {"portMappings": true}} to ${lists[0]!.file}, or put a network that has it first in --net`,
    });
  }

  // Check and reserve host ports under a lock, so two pods starting at once cannot both take one.
  // wait defaults to true, so acquire always returns a lock here.
  const lock = (await FileLock.acquire(path.resolve(ctx.dir, 'net', 'lock'), 'exclusive', { what: 'the network cache' }))!;
  try {
    if (req.ports.length > 0) {
      const others = (await listCachedPods(ctx)).filter((p) => p.podId !== req.podId);
      await checkHostPorts(lists[0]!.name, req.ports, others);
    }
    await writeAtomic(path.join(podCacheDir(ctx, req.podId), 'pod.json'), { podId: req.podId, netnsPath: req.netnsPath, ports: req.ports });
  } finally {
    lock.release();
  }

  const added: CachedNetwork[] = [];
  const summaries: NetworkSummary[] = [];
  try {
    for (const [index, list] of lists.entries()) {
      const entry: CachedNetwork = {
        index,
        name: list.name,
        ifname: `eth${index}`,
        cniArgs: cniArgsText(req.networks[index]!.args),
        conflist: list,
        ...(index === 0 && portMappings.length > 0 ? { portMappings } : {}),
      };
      const file = path.join(podCacheDir(ctx, req.podId), networkEntryName(index, list.name));
      await writeAtomic(file, entry);
      added.push(entry);
      let prev: unknown;
      for (let i = 0; i < list.plugins.length; i++) {
        try {
          const out = await runPlugin(ctx, 'ADD', req.podId, req.netnsPath, entry, i, prev, dirs);
          // A plugin that prints nothing passes the previous result through.
          if (out !== undefined) prev = out;
        } catch (err) {
          const errors = await delNetwork(ctx, req.podId, req.netnsPath, entry, dirs, i, prev);
          added.pop();
          if (errors.length === 0) await fs.rm(file, { force: true });
          throw err;
        }
      }
      entry.result = prev;
      await writeAtomic(file, entry);
      summaries.push(summarizeResult(list.name, entry.ifname, prev));
    }
  } catch (err) {
    // Roll back the networks already attached, newest first.
    const leftovers: GantryError[] = [];
    for (const entry of added.reverse()) leftovers.push(...(await delNetwork(ctx, req.podId, req.netnsPath, entry, dirs)));
    const remaining = await readNetworks(ctx, req.podId);
    if (leftovers.length === 0 && remaining.length === 0) await removePodCache(ctx, req.podId);
    else ctx.warn(`pod ${req.podId}: rolling back its network left something behind; gantry gc retries: ${leftovers.map((e) => e.message).join('; ')}`);
    throw err;
  }
  return { networks: summaries };
}

function runPlugin(ctx: Context, command: CniCommand, podId: string, netns: string, entry: CachedNetwork, index: number, prevResult: unknown, dirs: readonly string[]): Promise<unknown> {
  const list = entry.conflist;
  return execPlugin(ctx, {
    command,
    network: list.name,
    pluginPath: findPlugin(list.name, list.plugins[index]!.type, dirs),
    containerId: podId,
    netns,
    ifname: entry.ifname,
    cniArgs: entry.cniArgs,
    dirs,
    config: pluginConfig(list, index, prevResult, entry.portMappings),
    timeoutMs: pluginTimeoutMs(),
  });
}

/**
 * Detaches the pod from every network it was attached to, from the cache
 * alone (config files are not read again). A missing or dead netns is fine:
 * plugins get CNI_NETNS="" and release what lives outside it (IPAM leases,
 * iptables rules). Idempotent: a pod without cache entries is a no-op. If a
 * DEL fails the entry is kept for the next try and NETWORK_ERROR thrown.
 */
export async function teardownPodNetwork(ctx: Context, podId: string, netnsPath?: string): Promise<void> {
  checkPodId(podId);
  const pod = await readPod(ctx, podId);
  const entries = await readNetworks(ctx, podId);
  if (!pod && entries.length === 0) {
    await removePodCache(ctx, podId);
    return;
  }
  const candidate = netnsPath ?? pod?.netnsPath ?? '';
  const netns = candidate !== '' && (await isNamespaceFile(candidate)) ? candidate : '';
  const dirs = pluginDirs();
  const failures: GantryError[] = [];
  for (const { file, entry } of entries.reverse()) {
    const errors = await delNetwork(ctx, podId, netns, entry, dirs);
    if (errors.length === 0) await fs.rm(file, { force: true });
    else failures.push(...errors);
  }
  if (failures.length > 0) {
    throw new GantryError('NETWORK_ERROR', `pod ${podId}: tearing down its network failed: ${failures.map((e) => e.message).join('; ')}`, {
      hint: 'the cached state is kept; fix the cause and run gantry gc again',
    });
  }
  await removePodCache(ctx, podId);
}

/** CHECKs every network of the pod against its cached result (SPEC 0.4.0+). */
export async function checkPodNetwork(ctx: Context, podId: string, netnsPath: string): Promise<void> {
  checkPodId(podId);
  const entries = await readNetworks(ctx, podId);
  if (entries.length === 0) {
    throw new GantryError('NETWORK_ERROR', `pod ${podId} has no network set up`, { hint: 'it runs with --net=host or --net=none, or its network was torn down' });
  }
  if (!(await isNamespaceFile(netnsPath))) {
    throw new GantryError('NETWORK_ERROR', `pod ${podId}: ${netnsPath} is not a network namespace any more`);
  }
  const dirs = pluginDirs();
  for (const { entry } of entries) {
    const list = entry.conflist;
    if (entry.result === undefined) {
      throw new GantryError('NETWORK_ERROR', `pod ${podId}: network "${list.name}" has no ADD result (set-up was interrupted)`, { hint: 'stop the pod and start it again' });
    }
    if (list.disableCheck || !versionAtLeast(list.cniVersion, '0.4.0')) continue;
    const hasIPv6 = summarizeResult(list.name, entry.ifname, entry.result).ips.some((ip) => ip.includes(':'));
    for (let i = 0; i < list.plugins.length; i++) {
      // portmap up to 1.2 checks ip6tables rules it never made for IPv4-only
      // pods and fails (containernetworking/plugins#819): skip it there.
      if (list.plugins[i]!.type === 'portmap' && !hasIPv6) continue;
      await runPlugin(ctx, 'CHECK', podId, netnsPath, entry, i, entry.result, dirs);
    }
  }
}

/** The cached view of a pod's networks, for `list`/`status` (empty when none). */
export async function podNetworkStatus(ctx: Context, podId: string): Promise<PodNetworkResult> {
  checkPodId(podId);
  const entries = await readNetworks(ctx, podId);
  return { networks: entries.filter(({ entry }) => entry.result !== undefined).map(({ entry }) => summarizeResult(entry.name, entry.ifname, entry.result)) };
}

