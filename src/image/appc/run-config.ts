/**
 * An appc image manifest's `app` section as prepare needs it: the parts
 * that map onto the OCI run config (exec -> Entrypoint, environment -> Env,
 * user:group -> User, workingDirectory -> WorkingDir, ports ->
 * ExposedPorts), plus what OCI configs have no field for: isolators
 * (memory, cpu, capabilities), named mount points, named ports, and the
 * image's pathWhitelist.
 *
 * Pure functions over the manifest bytes (stored as the image's config blob):
 * nothing here touches the store or the disk. Bad values are
 * MANIFEST_INVALID naming the image and the field; unknown isolators are
 * ignored, as the appc spec allows.
 */
import { GantryError } from '../../errors.js';
import type { AppMountRecord, VolumeRecord } from '../../pod/manifest.js';
import type { ResourceLimits } from '../../stage1/abi.js';
import { DEFAULT_CAPABILITIES } from '../../stage1/ns/spec.js';
import type { ImageRunConfig } from '../model.js';

export interface AppcMountPoint {
  name: string;
  /** Absolute path inside the app. */
  path: string;
  readOnly: boolean;
}

export interface AppcPort {
  name: string;
  protocol: 'tcp' | 'udp';
  port: number;
  /** How many consecutive ports from `port` (appc `count`, default 1). */
  count: number;
}

export interface AppcDependency {
  imageName: string;
  /** appc image ID ("sha512-<hex>"), when the dependent pins one. */
  imageID?: string;
  labels: Record<string, string>;
  size?: number;
}

export interface AppcRunConfig {
  /** What the OCI code paths read (appCommand, resolveUser, env). */
  config: ImageRunConfig;
  limits?: ResourceLimits;
  /** Capabilities the app gets beyond the default set (retain-set). */
  capsRetain?: string[];
  /** Capabilities taken from the default set (remove-set, or everything a retain-set leaves out). */
  capsRemove?: string[];
  mountPoints: AppcMountPoint[];
  ports: AppcPort[];
  /** Absolute paths of the only non-directory files the rendered rootfs keeps; undefined: no whitelist. */
  pathWhitelist?: string[];
  dependencies: AppcDependency[];
}

const MOUNT_NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/;

function invalid(where: string, problem: string): GantryError {
  return new GantryError('MANIFEST_INVALID', `${where}: ${problem}`, {
    hint: 'fix the ACI manifest (appc spec, "Image Manifest Schema") and rebuild the image',
  });
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function list(v: unknown, where: string, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(where, `${field} must be a list`);
  return v;
}

function str(v: unknown, where: string, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(where, `${field} must be a string`);
  return v;
}

/**
 * appc resource quantities (Kubernetes syntax): "512M", "1Gi", "500m",
 * "1.5". `millis` says whether a bare "m" suffix means thousandths (cpu);
 * for memory "m" is not accepted.
 */
export function parseAppcQuantity(text: unknown, where: string, field: string, millis: boolean): number {
  if (typeof text === 'number' && Number.isFinite(text) && text > 0) return text;
  if (typeof text !== 'string') throw invalid(where, `${field} must be a quantity string such as "512M" or "500m"`);
  const m = /^(\d+(?:\.\d+)?)(m|k|K|Ki|M|Mi|G|Gi|T|Ti)?$/.exec(text.trim());
  if (!m || (m[2] === 'm' && !millis)) throw invalid(where, `${field} "${text}" is not a quantity (e.g. ${millis ? '500m, 2' : '64Mi, 512M'})`);
  const f: Record<string, number> = { m: 0.001, k: 1e3, K: 1e3, Ki: 1024, M: 1e6, Mi: 1024 ** 2, G: 1e9, Gi: 1024 ** 3, T: 1e12, Ti: 1024 ** 4 };
  const value = Number(m[1]) * (m[2] ? f[m[2]]! : 1);
  if (!(value > 0)) throw invalid(where, `${field} "${text}" must be more than zero`);
  return value;
}

function capNames(v: unknown, where: string, field: string): string[] {
  const set = list(v, where, field);
  return set.map((c, i) => {
    if (typeof c !== 'string' || !/^[A-Za-z_]+$/.test(c)) throw invalid(where, `${field}[${i}] is not a capability name`);
    const upper = c.toUpperCase();
    return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  });
}

/** Parses the run-relevant parts of an appc image manifest. `where` names the image in errors. */
export function appcRunConfig(raw: Buffer | string, where: string): AppcRunConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch (err) {
    throw invalid(where, `the image manifest is not JSON (${(err as Error).message})`);
  }
  if (!isObj(doc) || doc.acKind !== 'ImageManifest') throw invalid(where, 'not an appc image manifest (acKind ImageManifest)');

  const dependencies = list(doc.dependencies, where, 'dependencies').map((d, i): AppcDependency => {
    const at = `dependencies[${i}]`;
    if (!isObj(d)) throw invalid(where, `${at} must be an object`);
    const imageName = str(d.imageName, where, `${at}.imageName`);
    if (!imageName) throw invalid(where, `${at} has no imageName`);
    const imageID = str(d.imageID, where, `${at}.imageID`);
    if (imageID !== undefined && !/^(sha512-[0-9a-f]{8,128}|sha256:[0-9a-f]{8,64})$/.test(imageID)) {
      throw invalid(where, `${at}.imageID "${imageID}" is not an image ID (sha512-<hex>)`);
    }
    const labels: Record<string, string> = {};
    for (const [j, l] of list(d.labels, where, `${at}.labels`).entries()) {
      if (!isObj(l) || typeof l.name !== 'string' || typeof l.value !== 'string') throw invalid(where, `${at}.labels[${j}] must be {"name": string, "value": string}`);
      labels[l.name] = l.value;
    }
    return { imageName, ...(imageID ? { imageID } : {}), labels, ...(typeof d.size === 'number' ? { size: d.size } : {}) };
  });

  let pathWhitelist: string[] | undefined;
  if (doc.pathWhitelist !== undefined && doc.pathWhitelist !== null) {
    pathWhitelist = list(doc.pathWhitelist, where, 'pathWhitelist').map((p, i) => {
      if (typeof p !== 'string' || !p.startsWith('/') || p.split('/').includes('..')) throw invalid(where, `pathWhitelist[${i}] must be an absolute path without ".."`);
      return p;
    });
    // appc: an empty list means "no whitelist", not "nothing".
    if (pathWhitelist.length === 0) pathWhitelist = undefined;
  }

  const out: AppcRunConfig = { config: {}, mountPoints: [], ports: [], dependencies, ...(pathWhitelist ? { pathWhitelist } : {}) };
  const app = doc.app;
  if (app === undefined || app === null) return out;
  if (!isObj(app)) throw invalid(where, 'app must be an object');

  const exec = list(app.exec, where, 'app.exec');
  if (exec.some((e) => typeof e !== 'string')) throw invalid(where, 'app.exec must be a list of strings');
  if (exec.length > 0) {
    if (!(exec[0] as string).startsWith('/')) throw invalid(where, `app.exec[0] "${String(exec[0])}" must be an absolute path (appc spec)`);
    out.config.Entrypoint = exec as string[];
    out.config.Cmd = null;
  }
  // appc requires both; "0" is the usual value and also the runtime's default.
  const user = str(app.user, where, 'app.user');
  const group = str(app.group, where, 'app.group');
  if (user !== undefined && user !== '') out.config.User = group !== undefined && group !== '' ? `${user}:${group}` : user;
  else if (group !== undefined && group !== '') out.config.User = `0:${group}`;
  const wd = str(app.workingDirectory, where, 'app.workingDirectory');
  if (wd !== undefined && wd !== '') {
    if (!wd.startsWith('/')) throw invalid(where, `app.workingDirectory "${wd}" must be an absolute path`);
    out.config.WorkingDir = wd;
  }
  const env: string[] = [];
  for (const [i, e] of list(app.environment, where, 'app.environment').entries()) {
    if (!isObj(e) || typeof e.name !== 'string' || e.name === '' || e.name.includes('=')) throw invalid(where, `app.environment[${i}] needs a name without "="`);
    env.push(`${e.name}=${typeof e.value === 'string' ? e.value : ''}`);
  }
  if (env.length > 0) out.config.Env = env;

  const limits: ResourceLimits = {};
  let retain: string[] | undefined;
  const remove: string[] = [];
  for (const [i, iso] of list(app.isolators, where, 'app.isolators').entries()) {
    if (!isObj(iso) || typeof iso.name !== 'string') throw invalid(where, `app.isolators[${i}] needs a name`);
    const value = isObj(iso.value) ? iso.value : {};
    const at = `isolator ${iso.name}`;
    switch (iso.name) {
      case 'resource/memory':
        if (value.limit !== undefined) limits.memoryBytes = Math.round(parseAppcQuantity(value.limit, where, `${at} limit`, false));
        break;
      case 'resource/cpu':
        if (value.limit !== undefined) limits.cpus = parseAppcQuantity(value.limit, where, `${at} limit`, true);
        break;
      case 'os/linux/capabilities-retain-set':
        retain = [...(retain ?? []), ...capNames(value.set, where, `${at} set`)];
        break;
      case 'os/linux/capabilities-remove-set':
        remove.push(...capNames(value.set, where, `${at} set`));
        break;
      default:
        break; // appc: isolators a runtime does not know are ignored
    }
  }
  if (Object.keys(limits).length > 0) out.limits = limits;
  if (retain !== undefined) {
    // A retain-set is the whole set the app keeps: what it names, and none of the defaults it leaves out.
    const keep = new Set(retain);
    out.capsRetain = [...keep];
    out.capsRemove = [...new Set([...DEFAULT_CAPABILITIES.filter((c) => !keep.has(c)), ...remove])];
  } else if (remove.length > 0) {
    out.capsRemove = [...new Set(remove)];
  }

  for (const [i, mp] of list(app.mountPoints, where, 'app.mountPoints').entries()) {
    if (!isObj(mp)) throw invalid(where, `app.mountPoints[${i}] must be an object`);
    const name = str(mp.name, where, `app.mountPoints[${i}].name`);
    const p = str(mp.path, where, `app.mountPoints[${i}].path`);
    if (!name || !MOUNT_NAME_RE.test(name)) throw invalid(where, `app.mountPoints[${i}].name "${name ?? ''}" is not a valid volume name`);
    if (!p || !p.startsWith('/') || p.split('/').includes('..') || p === '/') throw invalid(where, `app.mountPoints[${i}].path "${p ?? ''}" must be an absolute path other than /`);
    out.mountPoints.push({ name, path: p, readOnly: mp.readOnly === true });
  }

  const exposed: Record<string, object> = {};
  for (const [i, port] of list(app.ports, where, 'app.ports').entries()) {
    if (!isObj(port)) throw invalid(where, `app.ports[${i}] must be an object`);
    const name = str(port.name, where, `app.ports[${i}].name`);
    const protocol = port.protocol ?? 'tcp';
    const num = port.port;
    const count = port.count ?? 1;
    if (!name) throw invalid(where, `app.ports[${i}] has no name`);
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalid(where, `app.ports[${i}].protocol must be tcp or udp`);
    if (typeof num !== 'number' || !Number.isInteger(num) || num < 1 || num > 65535) throw invalid(where, `app.ports[${i}].port must be 1-65535`);
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || num + count - 1 > 65535) throw invalid(where, `app.ports[${i}].count is out of range`);
    out.ports.push({ name, protocol, port: num, count });
    for (let p = num; p < num + count; p++) exposed[`${p}/${protocol}`] = {};
  }
  if (Object.keys(exposed).length > 0) out.config.ExposedPorts = exposed;
  return out;
}

/**
 * Applies an appc image's defaults to an app's spec where the user gave no
 * override (isolators -> limits and capabilities), and fills the image's
 * mount points: a mount point the app already mounts something at is left
 * alone; else the pod volume of the same name fills it; else (rkt) an
 * empty volume of that name is added to `volumes`. Without `volumes` (app
 * add on a running pod, whose volumes are fixed) unfilled mount points stay
 * plain directories of the image. Returns the app's mounts.
 */
export function applyAppcDefaults(
  appc: AppcRunConfig,
  spec: { limits?: ResourceLimits; capsRetain?: string[]; capsRemove?: string[] },
  mounts: AppMountRecord[],
  volumes: VolumeRecord[] | undefined,
): AppMountRecord[] {
  if (appc.limits) spec.limits = { ...appc.limits, ...(spec.limits ?? {}) };
  const userRetain = new Set(spec.capsRetain ?? []);
  const retain = [...new Set([...(appc.capsRetain ?? []), ...(spec.capsRetain ?? [])])];
  const remove = [...new Set([...(appc.capsRemove ?? []).filter((c) => !userRetain.has(c) && !userRetain.has(c.replace(/^CAP_/, ''))), ...(spec.capsRemove ?? [])])];
  if (retain.length > 0) spec.capsRetain = retain;
  if (remove.length > 0) spec.capsRemove = remove;
  const out = [...mounts];
  if (volumes === undefined) return out;
  const taken = new Set(out.map((m) => m.target.replace(/\/+$/, '')));
  for (const mp of appc.mountPoints) {
    if (taken.has(mp.path.replace(/\/+$/, ''))) continue;
    if (!volumes.some((v) => v.name === mp.name)) volumes.push({ name: mp.name, kind: 'empty' });
    out.push({ volume: mp.name, target: mp.path, ...(mp.readOnly ? { readOnly: true } : {}) });
    taken.add(mp.path);
  }
  return out;
}
