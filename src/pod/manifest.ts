/**
 * The pod manifest: what stage0 decided about a pod at prepare time, kept as
 * `<podDir>/pod.json` and read by every later command (run-prepared, list,
 * status, cat-manifest, gc, and `image gc` to keep the images pods use).
 *
 * pod.json is gantry's own format (versioned by `gantryPodVersion`); it
 * holds each app's resolved stage1 AppSpec minus host paths that depend on
 * where the pod dir is (volumes are resolved when the pod starts, because
 * the pod dir moves between state directories). `toAppcPodManifest` gives
 * the appc-style view `gantry cat-manifest` prints, and `fromAppcPodManifest`
 * reads such a document back (`gantry run --pod-manifest FILE`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { GantryError, errnoCode } from '../errors.js';
import { appCommand, type AppSpec, type HostsEntry, type MountSpec, type PodDns, type PodNet, type PodSpec } from '../stage1/abi.js';
import { writeFileAtomicSync } from '../util/fs.js';

export const POD_MANIFEST_FILE = 'pod.json';
export const POD_MANIFEST_VERSION = 1;

/** A pod volume: a host path, or an empty directory kept in the pod dir. */
export interface VolumeRecord {
  name: string;
  kind: 'host' | 'empty';
  /** Absolute host path (kind host). */
  source?: string;
  readOnly?: boolean;
}

/** Where an app sees a volume. */
export interface AppMountRecord {
  volume: string;
  target: string;
  readOnly?: boolean;
}

export interface PodAppRecord {
  name: string;
  image: { id: string; name?: string };
  /** The stage1 app spec, without name and mounts (kept beside it). */
  spec: Omit<AppSpec, 'name' | 'mounts'>;
  mounts: AppMountRecord[];
  /** Ports the image declares by name (appc names; "80-tcp" for an OCI "80/tcp"), for --port NAME:HOSTPORT. */
  ports?: NamedPort[];
}

export interface NamedPort {
  name: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

export interface PodManifest {
  gantryPodVersion: typeof POD_MANIFEST_VERSION;
  uuid: string;
  /** RFC 3339. */
  createdAt: string;
  stage1: 'ns' | 'fly';
  ociRuntime?: string;
  hostname?: string;
  net: PodNet;
  dns?: PodDns;
  hostsEntries?: HostsEntry[];
  pidMode?: 'app' | 'pod';
  volumes: VolumeRecord[];
  apps: PodAppRecord[];
  annotations?: Record<string, string>;
}

export function readPodManifest(podDir: string): PodManifest {
  const file = path.join(podDir, POD_MANIFEST_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new GantryError('POD_STATE', `pod ${path.basename(podDir)} has no manifest yet (it is still being prepared, or its preparation failed)`, {
        hint: 'gantry gc removes pods whose preparation failed',
      });
    }
    throw err;
  }
  let doc: PodManifest;
  try {
    doc = JSON.parse(text) as PodManifest;
  } catch (err) {
    throw new GantryError('CONFIG_INVALID', `pod manifest ${file} is not valid JSON`, { hint: 'remove the pod with gantry rm', cause: err });
  }
  if (doc.gantryPodVersion !== POD_MANIFEST_VERSION || !Array.isArray(doc.apps)) {
    throw new GantryError('CONFIG_INVALID', `pod manifest ${file} has an unknown version ${String(doc.gantryPodVersion)}`, {
      hint: 'it was written by another gantry version; remove the pod with gantry rm',
    });
  }
  return doc;
}

/** Writes pod.json atomically (temp file, fsync, rename). */
export function writePodManifest(podDir: string, manifest: PodManifest): void {
  writeFileAtomicSync(path.join(podDir, POD_MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
}

/** The host directory of an empty volume. */
export function emptyVolumeDir(podDir: string, name: string): string {
  return path.join(podDir, 'volumes', name);
}

/** Builds what stage1 needs from the manifest and the pod dir's current place. */
export function toPodSpec(manifest: PodManifest, podDir: string): PodSpec {
  const volumes = new Map(manifest.volumes.map((v) => [v.name, v]));
  const apps: AppSpec[] = manifest.apps.map((a) => {
    const mounts: MountSpec[] = a.mounts.map((m) => {
      const v = volumes.get(m.volume);
      if (!v) throw new GantryError('CONFIG_INVALID', `app ${a.name} mounts volume "${m.volume}", which the pod does not declare`);
      let source: string;
      if (v.kind === 'host') {
        source = v.source!;
      } else {
        source = emptyVolumeDir(podDir, v.name);
        fs.mkdirSync(source, { recursive: true, mode: 0o755 });
      }
      return { source, destination: m.target, readOnly: m.readOnly ?? v.readOnly ?? false };
    });
    return { ...a.spec, name: a.name, mounts };
  });
  return {
    uuid: manifest.uuid,
    podDir,
    apps,
    hostname: manifest.hostname,
    net: manifest.net,
    dns: manifest.dns,
    hostsEntries: manifest.hostsEntries,
    pidMode: manifest.pidMode,
    stage1: manifest.stage1,
    ociRuntime: manifest.ociRuntime,
  };
}

// --- appc view -------------------------------------------------------------

interface AppcNameValue { name: string; value: string }
interface AppcIsolator { name: string; value: unknown }

export interface AppcPodManifest {
  acVersion: string;
  acKind: 'PodManifest';
  apps: {
    name: string;
    image: { name?: string; id: string };
    app?: {
      exec?: string[];
      user?: string;
      group?: string;
      workingDirectory?: string;
      environment?: AppcNameValue[];
      isolators?: AppcIsolator[];
    };
    readOnlyRootFS?: boolean;
    mounts?: { volume: string; path: string; readOnly?: boolean }[];
    annotations?: AppcNameValue[];
  }[];
  volumes?: { name: string; kind: 'host' | 'empty'; source?: string; readOnly?: boolean }[];
  isolators?: AppcIsolator[];
  annotations?: AppcNameValue[];
  ports?: { name: string; hostPort: number; hostIP?: string }[];
}

/** The command an app runs: --exec, else the image's Entrypoint + (args or Cmd). */
export function toAppcPodManifest(m: PodManifest): AppcPodManifest {
  const annotations: AppcNameValue[] = [
    { name: 'gantry.dev/uuid', value: m.uuid },
    { name: 'gantry.dev/created', value: m.createdAt },
    { name: 'gantry.dev/stage1', value: m.stage1 },
    { name: 'gantry.dev/net', value: typeof m.net === 'string' ? m.net : JSON.stringify(m.net) },
  ];
  if (m.hostname) annotations.push({ name: 'gantry.dev/hostname', value: m.hostname });
  if (m.ociRuntime) annotations.push({ name: 'gantry.dev/oci-runtime', value: m.ociRuntime });
  if (m.pidMode) annotations.push({ name: 'gantry.dev/pid', value: m.pidMode });
  for (const [k, v] of Object.entries(m.annotations ?? {})) annotations.push({ name: k, value: v });
  return {
    acVersion: '0.8.11',
    acKind: 'PodManifest',
    apps: m.apps.map((a) => {
      const s = a.spec;
      const isolators: AppcIsolator[] = [];
      if (s.limits?.memoryBytes !== undefined) isolators.push({ name: 'resource/memory', value: { limit: String(s.limits.memoryBytes) } });
      if (s.limits?.cpus !== undefined) isolators.push({ name: 'resource/cpu', value: { limit: `${Math.round(s.limits.cpus * 1000)}m` } });
      if (s.limits?.pids !== undefined) isolators.push({ name: 'gantry.dev/pids', value: { limit: s.limits.pids } });
      if (s.capsRetain?.length) isolators.push({ name: 'os/linux/capabilities-retain-set', value: { set: s.capsRetain } });
      if (s.capsRemove?.length) isolators.push({ name: 'os/linux/capabilities-remove-set', value: { set: s.capsRemove } });
      if (s.seccomp === false) isolators.push({ name: 'os/linux/seccomp-retain-set', value: { set: ['@all'] } });
      const env = [...(s.config.Env ?? []), ...(s.env ?? [])].map((kv) => {
        const eq = kv.indexOf('=');
        return eq < 0 ? { name: kv, value: '' } : { name: kv.slice(0, eq), value: kv.slice(eq + 1) };
      });
      const user = s.user ?? s.config.User ?? '0';
      return {
        name: a.name,
        image: { name: a.image.name, id: a.image.id },
        app: {
          exec: appCommand(s),
          user: user.split(':')[0] || '0',
          group: s.group ?? user.split(':')[1] ?? '0',
          workingDirectory: s.workingDir ?? s.config.WorkingDir ?? '/',
          environment: env,
          isolators,
        },
        ...(s.readOnlyRootfs ? { readOnlyRootFS: true } : {}),
        mounts: a.mounts.map((mt) => ({ volume: mt.volume, path: mt.target, ...(mt.readOnly ? { readOnly: true } : {}) })),
      };
    }),
    volumes: m.volumes.map((v) => ({ ...v })),
    isolators: [],
    annotations,
    ports: typeof m.net === 'object' ? m.net.ports.map((p) => ({ name: `${p.protocol}-${p.podPort}`, hostPort: p.hostPort, ...(p.hostIP ? { hostIP: p.hostIP } : {}) })) : [],
  };
}
