/**
 * Prepare: turn what the user asked for (images + per-app and pod options)
 * into a pod on disk with a complete pod.json. Images that are missing are
 * fetched (pull policy `new` by default); each app's stage1 AppSpec is built
 * from its image's config plus the overrides, and checked as far as stage0
 * can (a command exists, the user exists in the image, volumes make sense)
 * so that mistakes surface before anything runs.
 *
 * Lifecycle: createPod (embryo -> prepare, locked) -> fetch + build ->
 * write pod.json -> `prepared` (unlocked) or straight to `run` (still
 * locked, for `gantry run`). A failure deletes the half-made pod; a crash
 * leaves it in `prepare` with a free lock, which gc removes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { GantryError, isGantryError } from '../errors.js';
import { fetchImage, type PullPolicy } from '../image/fetch.js';
import type { ImageConfig, Platform } from '../image/model.js';
import { APP_NAME_RE, appCommand, type AppSpec, type HostsEntry, type PodDns, type PodNet, type ResourceLimits } from '../stage1/abi.js';
import { resolveUser } from '../stage1/user.js';
import { applyAppcDefaults, appcRunConfig } from '../image/appc/run-config.js';
import { Store } from '../store/store.js';
import { unlockPod } from './lock.js';
import { POD_MANIFEST_VERSION, writePodManifest, type AppMountRecord, type NamedPort, type PodAppRecord, type PodManifest, type VolumeRecord } from './manifest.js';
import { createPod, movePod } from './pods.js';
import type { Stage1Name } from './stage1.js';

/** One app as the user asked for it. */
export interface AppRequest extends Omit<AppSpec, 'name' | 'layers' | 'config' | 'mounts'> {
  /** Image reference, ID or name, as typed. */
  image: string;
  name?: string;
  mounts?: AppMountRecord[];
}

export interface PodRequest {
  apps: AppRequest[];
  volumes?: VolumeRecord[];
  net: PodNet;
  dns?: PodDns;
  hostsEntries?: HostsEntry[];
  hostname?: string;
  pidMode?: 'app' | 'pod';
  stage1: Stage1Name;
  ociRuntime?: string;
  pullPolicy?: PullPolicy;
  platform?: Platform;
  annotations?: Record<string, string>;
  /** rkt's --port NAME:HOSTPORT, resolved against the images' declared ports. */
  namedPorts?: { name: string; hostPort: number; hostIP?: string }[];
}

const VOLUME_NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/;

/** "docker.io/library/busybox:latest" -> "busybox". */
function appNameOf(imageName: string | undefined): string {
  const base = (imageName ?? 'app').replace(/^[a-z-]+:\/\//, '').split('/').pop()!.split(/[:@]/)[0]!;
  const clean = base.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/-+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return clean || 'app';
}

function checkTarget(target: string, what: string): void {
  if (!path.isAbsolute(target) || target.split('/').includes('..') || path.normalize(target) === '/') {
    throw new GantryError('USAGE', `${what}: mount target "${target}" must be an absolute path other than / without ".."`, {
      hint: 'e.g. --mount volume=data,target=/data or -v /srv/data:/data',
    });
  }
}

/** Checks the pod's volumes and the apps' mounts against each other. */
export function validateVolumes(volumes: VolumeRecord[], apps: { name: string; mounts?: AppMountRecord[] }[]): void {
  const names = new Set<string>();
  for (const v of volumes) {
    if (!VOLUME_NAME_RE.test(v.name)) {
      throw new GantryError('USAGE', `invalid volume name "${v.name}"`, { hint: 'volume names are lower-case letters, digits, ".", "_" and "-"' });
    }
    if (names.has(v.name)) throw new GantryError('USAGE', `volume "${v.name}" is declared twice`, { hint: 'give each --volume its own name' });
    names.add(v.name);
    if (v.kind === 'host') {
      if (!v.source || !path.isAbsolute(v.source)) {
        throw new GantryError('USAGE', `volume "${v.name}": source "${v.source ?? ''}" must be an absolute host path`, { hint: 'e.g. --volume data,kind=host,source=/srv/data' });
      }
      if (!fs.existsSync(v.source)) {
        throw new GantryError('USAGE', `volume "${v.name}": host path ${v.source} does not exist`, { hint: 'create it first, or use kind=empty for a fresh directory' });
      }
    } else if (v.source !== undefined) {
      throw new GantryError('USAGE', `volume "${v.name}": kind=empty takes no source`);
    }
  }
  for (const app of apps) {
    const targets = new Set<string>();
    for (const m of app.mounts ?? []) {
      if (!names.has(m.volume)) {
        throw new GantryError('USAGE', `app ${app.name}: --mount names volume "${m.volume}", which no --volume declares`, {
          hint: `declare it: --volume ${m.volume},kind=host,source=/path (or kind=empty)`,
        });
      }
      checkTarget(m.target, `app ${app.name}`);
      const norm = path.normalize(m.target);
      if (targets.has(norm)) throw new GantryError('USAGE', `app ${app.name}: two mounts on ${norm}`);
      targets.add(norm);
    }
  }
}

/** The topmost layer that has a regular /etc/passwd: good enough to check a user name before running. */
function checkUser(layers: string[], spec: Omit<AppSpec, 'name' | 'mounts'>, appName: string): void {
  const user = spec.user ?? spec.config.User;
  if ((user === undefined || user === '') && spec.group === undefined) return;
  for (let i = layers.length - 1; i >= 0; i--) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(path.join(layers[i]!, 'etc', 'passwd'));
    } catch {
      continue;
    }
    if (!st.isFile()) break;
    try {
      resolveUser(layers[i]!, user, spec.group);
    } catch (err) {
      if (isGantryError(err)) throw new GantryError(err.code, `app ${appName}: ${err.message}`, { hint: err.hint });
      throw err;
    }
    return;
  }
}

/**
 * Fetches (if needed) the images of `requests` and builds their app
 * records. `taken` holds names already used in the pod (app add).
 */
export async function resolveApps(
  ctx: Context, store: Store, requests: AppRequest[], opts: { pullPolicy?: PullPolicy; platform?: Platform; taken?: string[]; volumes?: VolumeRecord[] } = {},
): Promise<PodAppRecord[]> {
  const taken = new Set(opts.taken ?? []);
  const out: PodAppRecord[] = [];
  for (const req of requests) {
    const { image } = await fetchImage(ctx, store, req.image, { pullPolicy: opts.pullPolicy ?? 'new', platform: opts.platform });
    store.meta.touch(image.id);
    const configBytes = await store.content.readBytes(image.configDigest);
    // appc: the image manifest is the config; run-config.ts maps it onto the OCI fields plus isolators and mount points.
    const appc = image.format === 'appc' ? appcRunConfig(configBytes, `image ${req.image} (${image.id})`) : undefined;
    const config = appc ? { config: appc.config } : JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    let name = req.name;
    if (name !== undefined) {
      if (!APP_NAME_RE.test(name)) {
        throw new GantryError('USAGE', `invalid app name "${name}"`, { hint: 'app names are 1-63 lower-case letters, digits and "-", starting and ending with a letter or digit' });
      }
      if (taken.has(name)) throw new GantryError('USAGE', `app name "${name}" is used twice in the pod`, { hint: 'give each app its own --name' });
    } else {
      const base = appNameOf(image.names[0] ?? req.image);
      name = base;
      for (let i = 2; taken.has(name); i++) name = `${base.slice(0, 58)}-${i}`;
    }
    taken.add(name);
    const { image: _ref, name: _name, mounts, ...overrides } = req;
    const spec: Omit<AppSpec, 'name' | 'mounts'> = { ...overrides, layers: store.layerPaths(image), config: config.config ?? {} };
    for (const k of Object.keys(spec) as (keyof typeof spec)[]) if (spec[k] === undefined) delete spec[k];
    const appMounts = appc ? applyAppcDefaults(appc, spec, mounts ?? [], opts.volumes) : mounts;
    if (appCommand(spec).length === 0) {
      throw new GantryError('USAGE', `image ${req.image} has no command (no Entrypoint or Cmd) and no --exec was given for app ${name}`, {
        hint: `give one: gantry run ${req.image} --exec /bin/sh`,
      });
    }
    checkUser(spec.layers, spec, name);
    const ports = appc ? appc.ports.map(({ name: portName, port, protocol }) => ({ name: portName, port, protocol })) : declaredPorts(spec.config.ExposedPorts);
    out.push({ name, image: { id: image.id, ...(image.names[0] ? { name: image.names[0] } : {}) }, spec, mounts: appMounts ?? [], ...(ports.length ? { ports } : {}) });
  }
  return out;
}

/** OCI ExposedPorts ("80/tcp") as named ports, named as rkt's docker2aci does ("80-tcp"). */
function declaredPorts(exposed: Record<string, object> | undefined): NamedPort[] {
  const out: NamedPort[] = [];
  for (const key of Object.keys(exposed ?? {})) {
    const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(key);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) continue;
    const protocol = (m[2] ?? 'tcp') as 'tcp' | 'udp';
    out.push({ name: `${m[1]}-${protocol}`, port: Number(m[1]), protocol });
  }
  return out;
}

/**
 * rkt's `--port NAME:HOSTPORT`: publishes a port an image declares by name.
 * Resolved once the images are known, into ordinary port mappings.
 */
function publishNamedPorts(net: PodNet, apps: PodAppRecord[], requests: { name: string; hostPort: number; hostIP?: string }[]): PodNet {
  if (requests.length === 0) return net;
  if (typeof net !== 'object') {
    throw new GantryError('USAGE', `--port needs a CNI network; the pod's network is ${net}`, { hint: 'use --net=default (or another CNI network) with --port' });
  }
  const declared = apps.flatMap((a) => a.ports ?? []);
  const ports = [...net.ports];
  for (const r of requests) {
    const found = declared.find((p) => p.name === r.name);
    if (!found) {
      throw new GantryError('USAGE', `no app of the pod declares a port named "${r.name}"`, {
        hint: declared.length ? `declared ports: ${declared.map((p) => `${p.name} (${p.port}/${p.protocol})`).join(', ')}` : 'the images declare no ports; use -p HOSTPORT:PODPORT',
      });
    }
    ports.push({ ...(r.hostIP ? { hostIP: r.hostIP } : {}), hostPort: r.hostPort, podPort: found.port, protocol: found.protocol });
  }
  return { ...net, ports };
}

export interface PreparedPod {
  uuid: string;
  dir: string;
  manifest: PodManifest;
  /** Held lock (only when `then` is 'run'). */
  lockFd?: number;
}

/** Creates a pod from `req`; leaves it `prepared` (unlocked) or in `run` (locked, for the caller to start). */
export async function preparePod(ctx: Context, req: PodRequest, then: 'prepared' | 'run'): Promise<PreparedPod> {
  if (req.apps.length === 0) throw new GantryError('USAGE', 'a pod needs at least one image', { hint: 'gantry run IMAGE [--- IMAGE2 ...]' });
  const volumes = [...(req.volumes ?? [])];
  validateVolumes(volumes, req.apps.map((a, i) => ({ name: a.name ?? `#${i + 1}`, mounts: a.mounts })));
  const pod = createPod(ctx);
  let dir = pod.dir;
  try {
    const store = await Store.open(ctx);
    let manifest: PodManifest;
    try {
      // pod.json is written under the store's use lock: image gc (exclusive)
      // then either sees this pod's images as in use or runs before them.
      manifest = await store.withUseLock(async () => {
        const apps = await resolveApps(ctx, store, req.apps, { pullPolicy: req.pullPolicy, platform: req.platform, volumes });
        const built: PodManifest = {
          gantryPodVersion: POD_MANIFEST_VERSION,
          uuid: pod.uuid,
          createdAt: new Date().toISOString(),
          stage1: req.stage1,
          ...(req.ociRuntime ? { ociRuntime: req.ociRuntime } : {}),
          ...(req.hostname ? { hostname: req.hostname } : {}),
          net: publishNamedPorts(req.net, apps, req.namedPorts ?? []),
          ...(req.dns ? { dns: req.dns } : {}),
          ...(req.hostsEntries?.length ? { hostsEntries: req.hostsEntries } : {}),
          ...(req.pidMode ? { pidMode: req.pidMode } : {}),
          volumes,
          apps,
          ...(req.annotations ? { annotations: req.annotations } : {}),
        };
        writePodManifest(dir, built);
        return built;
      });
    } finally {
      store.close();
    }
    dir = movePod(ctx, pod.uuid, 'prepare', then);
    if (then === 'prepared') {
      unlockPod(pod.lockFd);
      return { uuid: pod.uuid, dir, manifest };
    }
    return { uuid: pod.uuid, dir, manifest, lockFd: pod.lockFd };
  } catch (err) {
    // Nothing ran yet: the half-made pod goes away now rather than at gc.
    try {
      const garbage = movePod(ctx, pod.uuid, 'prepare', 'garbage');
      fs.rmSync(garbage, { recursive: true, force: true });
    } catch {
      // gc will find it in prepare with a free lock
    }
    unlockPod(pod.lockFd);
    throw err;
  }
}

interface AppcIn {
  acKind?: unknown;
  apps?: {
    name?: unknown;
    image?: { name?: unknown; id?: unknown };
    app?: { exec?: unknown; user?: unknown; group?: unknown; workingDirectory?: unknown; environment?: { name?: unknown; value?: unknown }[]; isolators?: { name?: unknown; value?: Record<string, unknown> }[] };
    readOnlyRootFS?: unknown;
    mounts?: { volume?: unknown; path?: unknown; readOnly?: unknown }[];
  }[];
  volumes?: { name?: unknown; kind?: unknown; source?: unknown; readOnly?: unknown }[];
}

/**
 * Reads an appc pod manifest (`--pod-manifest FILE`): apps by image name
 * (or ID), exec, user, group, environment, working directory, the
 * memory/cpu/capability isolators, mounts and volumes.
 */
export function requestsFromAppcManifest(file: string): { apps: AppRequest[]; volumes: VolumeRecord[] } {
  let doc: AppcIn;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8')) as AppcIn;
  } catch (err) {
    throw new GantryError('CONFIG_INVALID', `cannot read pod manifest ${file}: ${(err as Error).message}`, { hint: 'give an appc pod manifest in JSON (gantry cat-manifest prints one)', cause: err });
  }
  const bad = (why: string) => new GantryError('CONFIG_INVALID', `pod manifest ${file}: ${why}`, { hint: 'see gantry cat-manifest for the expected shape' });
  if (doc.acKind !== 'PodManifest' || !Array.isArray(doc.apps) || doc.apps.length === 0) throw bad('acKind must be PodManifest with at least one app');
  const str = (v: unknown, what: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw bad(`${what} must be a string`);
    return v;
  };
  const volumes: VolumeRecord[] = (doc.volumes ?? []).map((v, i) => {
    const kind = v.kind;
    if (kind !== 'host' && kind !== 'empty') throw bad(`volumes[${i}].kind must be host or empty`);
    return { name: str(v.name, `volumes[${i}].name`) ?? '', kind, ...(v.source !== undefined ? { source: str(v.source, `volumes[${i}].source`)! } : {}), ...(v.readOnly === true ? { readOnly: true } : {}) };
  });
  const apps = doc.apps.map((a, i): AppRequest => {
    const image = str(a.image?.name, `apps[${i}].image.name`) ?? str(a.image?.id, `apps[${i}].image.id`);
    if (!image) throw bad(`apps[${i}] has no image name or id`);
    const exec = a.app?.exec;
    if (exec !== undefined && (!Array.isArray(exec) || exec.some((e) => typeof e !== 'string'))) throw bad(`apps[${i}].app.exec must be a list of strings`);
    const limits: ResourceLimits = {};
    const capsRetain: string[] = [];
    const capsRemove: string[] = [];
    for (const iso of a.app?.isolators ?? []) {
      const v = iso.value ?? {};
      if (iso.name === 'resource/memory' && v.limit !== undefined) limits.memoryBytes = parseQuantity(String(v.limit));
      else if (iso.name === 'resource/cpu' && v.limit !== undefined) limits.cpus = parseQuantity(String(v.limit));
      else if (iso.name === 'gantry.dev/pids' && typeof v.limit === 'number') limits.pids = v.limit;
      else if (iso.name === 'os/linux/capabilities-retain-set' && Array.isArray(v.set)) capsRetain.push(...v.set.map(String));
      else if (iso.name === 'os/linux/capabilities-remove-set' && Array.isArray(v.set)) capsRemove.push(...v.set.map(String));
    }
    const user = str(a.app?.user, `apps[${i}].app.user`);
    return {
      image,
      name: str(a.name, `apps[${i}].name`),
      ...(exec ? { exec: exec as string[] } : {}),
      env: (a.app?.environment ?? []).map((e) => `${String(e.name)}=${String(e.value ?? '')}`),
      ...(user ? { user } : {}),
      ...(a.app?.group !== undefined ? { group: str(a.app.group, `apps[${i}].app.group`) } : {}),
      ...(a.app?.workingDirectory !== undefined ? { workingDir: str(a.app.workingDirectory, `apps[${i}].app.workingDirectory`) } : {}),
      ...(a.readOnlyRootFS === true ? { readOnlyRootfs: true } : {}),
      capsRetain, capsRemove,
      ...(Object.keys(limits).length ? { limits } : {}),
      mounts: (a.mounts ?? []).map((m, j) => ({
        volume: str(m.volume, `apps[${i}].mounts[${j}].volume`) ?? '',
        target: str(m.path, `apps[${i}].mounts[${j}].path`) ?? '',
        ...(m.readOnly === true ? { readOnly: true } : {}),
      })),
    };
  });
  return { apps, volumes };
}

/** Kubernetes-style quantities: "64M", "64Mi", "500m", "2". */
function parseQuantity(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/.exec(text.trim());
  if (!m) throw new GantryError('CONFIG_INVALID', `"${text}" is not a quantity`, { hint: 'e.g. 64Mi, 500m, 2' });
  const f: Record<string, number> = { m: 0.001, k: 1e3, Ki: 1024, M: 1e6, Mi: 1024 ** 2, G: 1e9, Gi: 1024 ** 3, T: 1e12, Ti: 1024 ** 4 };
  return Number(m[1]) * (m[2] ? f[m[2]]! : 1);
}
