/**
 * CNI network configurations: finding a network by name, validating it, and
 * gantry's own `default` network.
 *
 * Networks are looked up by their `name` field, first in
 * `<localConfig>/net.d`, then in each directory of GANTRY_CNI_CONF_DIRS
 * (colon-separated; default `/etc/cni/net.d`; set it empty to search only
 * gantry's own directory). Within a directory files are read in lexical
 * order, `.conflist` files as lists and `.conf`/`.json` files as single
 * plugins wrapped into a one-plugin list, as libcni does. The first match
 * wins. A file that does not parse is an error naming it, so a typo is never
 * silently skipped in favour of a network of the same name further down.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { GantryError, errnoCode } from '../errors.js';
import { NETWORK_NAME_RE } from './flags.js';

/** CNI spec versions gantry speaks; plugins get the list's own version. */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

/** One plugin entry of a list, as in the file (plugin-specific keys kept). */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkConfigList {
  name: string;
  cniVersion: string;
  disableCheck: boolean;
  plugins: PluginConf[];
  /** Where it was read from (for messages and the cache). */
  file: string;
}

export const DEFAULT_NETWORK = 'default';
export const DEFAULT_BRIDGE = 'gantry0';
/**
 * The default network's subnet. Chosen away from the ranges other runtimes
 * and clouds hand out by default (podman 10.88/16 and 10.89/16, docker
 * 172.17-31/16, AWS default VPCs 172.31/16, kubernetes flannel 10.244/16).
 */
export const DEFAULT_SUBNET = '10.209.0.0/16';

const PLUGIN_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'];

/** The directories searched for network configs, in order. */
export function configDirs(ctx: Context): string[] {
  const extra = process.env.GANTRY_CNI_CONF_DIRS;
  const others = extra === undefined ? ['/etc/cni/net.d'] : extra.split(':').filter(Boolean);
  return [path.join(ctx.localConfig, 'net.d'), ...others];
}

/** Lists the config files of one directory in lookup order; a missing directory is empty. */
async function configFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return [];
    throw err;
  }
  return names
    .filter((n) => CONFIG_EXTENSIONS.includes(path.extname(n)) && !n.startsWith('.'))
    .sort()
    .map((n) => path.join(dir, n));
}

function invalid(file: string, message: string, cause?: unknown): GantryError {
  return new GantryError('CONFIG_INVALID', `CNI network config ${file}: ${message}`, {
    hint: 'fix or remove the file; see https://www.cni.dev/docs/spec/ for the format',
    cause,
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validatePlugin(file: string, value: unknown, index: number): PluginConf {
  if (!isObject(value)) throw invalid(file, `plugin ${index} is not a JSON object`);
  const type = value.type;
  if (typeof type !== 'string' || type === '') throw invalid(file, `plugin ${index} has no "type"`);
  // The type names an executable in CNI_PATH: a path here would run anything.
  if (!PLUGIN_TYPE_RE.test(type)) throw invalid(file, `plugin ${index} has type "${type}", which is not a plain plugin name`);
  if (value.capabilities !== undefined && !isObject(value.capabilities)) throw invalid(file, `plugin "${type}" has "capabilities" that is not an object`);
  return value as PluginConf;
}

/** Parses and validates one config file's text into a list. */
export function parseConfig(file: string, text: string): NetworkConfigList {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `not valid JSON (${(err as Error).message})`, err);
  }
  if (!isObject(json)) throw invalid(file, 'not a JSON object');
  const name = json.name;
  if (typeof name !== 'string' || !NETWORK_NAME_RE.test(name)) {
    throw invalid(file, `"name" ${JSON.stringify(name)} is missing or not a valid network name`);
  }
  const cniVersion = json.cniVersion;
  if (typeof cniVersion !== 'string') throw invalid(file, 'has no "cniVersion"');
  if (!(SUPPORTED_CNI_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw invalid(file, `cniVersion "${cniVersion}" is not supported (gantry speaks ${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  const isList = path.extname(file) === '.conflist' || Array.isArray(json.plugins);
  let plugins: PluginConf[];
  if (isList) {
    if (!Array.isArray(json.plugins) || json.plugins.length === 0) throw invalid(file, '"plugins" is missing or empty');
    plugins = json.plugins.map((p, i) => validatePlugin(file, p, i));
  } else {
    // A single-plugin .conf: the whole object is the plugin (libcni's ConfListFromConf).
    const { name: _n, cniVersion: _v, ...plugin } = json;
    plugins = [validatePlugin(file, plugin, 0)];
  }
  const disableCheck = json.disableCheck === true;
  return { name, cniVersion, disableCheck, plugins, file };
}

/**
 * Reads every config in the search path. Stops at the first file whose name
 * is `stopAt` (when given), so an unrelated broken file further down does
 * not break a network that was already found.
 */
async function scan(ctx: Context, stopAt?: string): Promise<NetworkConfigList[]> {
  const found: NetworkConfigList[] = [];
  for (const dir of configDirs(ctx)) {
    for (const file of await configFiles(dir)) {
      let text: string;
      try {
        text = await fs.readFile(file, 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue; // removed while we looked
        throw invalid(file, `cannot be read (${(err as Error).message})`, err);
      }
      const conf = parseConfig(file, text);
      found.push(conf);
      if (stopAt !== undefined && conf.name === stopAt) return found;
    }
  }
  return found;
}

/** Finds a network by name; NETWORK_NOT_FOUND lists the ones that exist. */
export async function loadNetwork(ctx: Context, name: string): Promise<NetworkConfigList> {
  const found = await scan(ctx, name);
  const match = found.find((c) => c.name === name);
  if (match) return match;
  const names = [...new Set([...found.map((c) => c.name), DEFAULT_NETWORK])].sort();
  throw new GantryError('NETWORK_NOT_FOUND', `no CNI network named "${name}" in ${configDirs(ctx).join(', ')}`, {
    hint: `available networks: ${names.join(', ')}; add a .conflist with "name": "${name}" to ${path.join(ctx.localConfig, 'net.d')}`,
  });
}

/** All networks in the search path (first of each name), for listings. */
export async function listNetworks(ctx: Context): Promise<NetworkConfigList[]> {
  const seen = new Set<string>();
  return (await scan(ctx)).filter((c) => (seen.has(c.name) ? false : (seen.add(c.name), true)));
}

/** gantry's default network as a config list object; IPAM leases live under ctx.dir. */
export function defaultNetworkConfig(ctx: Context, opts: { name?: string; bridge?: string; subnet?: string } = {}): Record<string, unknown> {
  const subnet = opts.subnet ?? DEFAULT_SUBNET;
  return {
    cniVersion: '1.0.0',
    name: opts.name ?? DEFAULT_NETWORK,
    plugins: [
      {
        type: 'bridge',
        bridge: opts.bridge ?? DEFAULT_BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: path.resolve(ctx.dir, 'net', 'ipam'),
          routes: [{ dst: '0.0.0.0/0' }],
          // host-local makes the subnet's first address the gateway.
          ranges: [[{ subnet }]],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
    ],
  };
}

/**
 * Writes `<localConfig>/net.d/default.conflist` unless gantry's directory
 * already has a network named `default` (in any file). The write is atomic:
 * a concurrent gantry sees either no file or the whole one.
 */
export async function ensureDefaultNetworkConfig(ctx: Context): Promise<void> {
  const dir = path.join(ctx.localConfig, 'net.d');
  for (const file of await configFiles(dir)) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      continue;
    }
    if (parseConfig(file, text).name === DEFAULT_NETWORK) return;
  }
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const target = path.join(dir, 'default.conflist');
  const tmp = `${target}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const handle = await fs.open(tmp, 'wx', 0o644);
  try {
    await handle.writeFile(`${JSON.stringify(defaultNetworkConfig(ctx), null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    // link(2) fails if another process created the file meanwhile: theirs wins.
    await fs.link(tmp, target);
    ctx.debug(`net: wrote the default network config ${target}`);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
