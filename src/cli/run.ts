/**
 * `gantry run IMAGE [flags] [-- ARGS]`: fetch what is missing, then run the
 * image as a one-app pod in the foreground through a stage1. The pod lives
 * as long as the command; the exit code is the app's.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { GantryError } from '../errors.js';
import { fetchImage } from '../image/fetch.js';
import type { ImageConfig } from '../image/model.js';
import type { AppSpec, PodNet, ResourceLimits } from '../stage1/abi.js';
import { Store } from '../store/store.js';
import { boolFlag, listFlag, stringFlag, type FlagSpecs } from './args.js';
import type { Command } from './command.js';
import { PULL_FLAGS, parsePullPolicy } from './fetch.js';
import { parsePlatform } from './platform.js';

const RUN_FLAGS: FlagSpecs = {
  ...PULL_FLAGS,
  exec: { type: 'string', value: 'CMD', description: 'command to run instead of the image\'s entrypoint' },
  name: { type: 'string', value: 'NAME', description: 'app name (default: from the image name)' },
  environment: { type: 'list', short: 'e', value: 'KEY=VALUE', description: 'set an environment variable (repeatable)' },
  user: { type: 'string', value: 'USER', description: 'user to run as: name, uid, uid:gid or name:group' },
  group: { type: 'string', value: 'GROUP', description: 'primary group: name or gid' },
  'working-dir': { type: 'string', value: 'DIR', description: 'working directory inside the app' },
  hostname: { type: 'string', value: 'NAME', description: 'pod hostname' },
  net: { type: 'string', value: 'none|host', description: 'network: none (loopback only) or host' },
  memory: { type: 'string', value: 'SIZE', description: 'memory limit, e.g. 64M, 1G' },
  cpu: { type: 'string', value: 'CPUS', description: 'CPU limit in CPUs, e.g. 0.5' },
  'pids-limit': { type: 'string', value: 'N', description: 'maximum number of processes' },
  'cap-retain': { type: 'list', value: 'CAP', description: 'add a capability to the default set (repeatable, comma lists)' },
  'cap-remove': { type: 'list', value: 'CAP', description: 'remove a capability from the default set (repeatable, comma lists)' },
  'readonly-rootfs': { type: 'boolean', description: 'mount the app\'s root filesystem read-only' },
  'stage1-name': { type: 'string', value: 'ns', description: 'stage1 to run the pod with (ns)' },
  'oci-runtime': { type: 'string', value: 'crun|runc|PATH', description: 'OCI runtime stage1 ns uses (default crun)' },
};

export const runCommand: Command = {
  name: 'run',
  usage: 'gantry run [flags] IMAGE [-- ARGS...]',
  summary: 'Run an image as a pod in the foreground; the exit code is the app\'s.',
  flags: RUN_FLAGS,
  async run(args, env) {
    if (args.positionals.length !== 1) {
      throw new GantryError('USAGE', args.positionals.length === 0 ? 'run needs an image' : `run takes one image for now, got: ${args.positionals.join(' ')}`, {
        hint: 'put the app\'s own arguments after --, e.g. gantry run IMAGE --exec /bin/sh -- -c "echo hi"',
      });
    }
    const stage1Name = stringFlag(args, 'stage1-name') ?? 'ns';
    if (stage1Name !== 'ns') throw new GantryError('USAGE', `unknown stage1 "${stage1Name}"`, { hint: 'this version has --stage1-name=ns' });
    const net = (stringFlag(args, 'net') ?? 'none') as PodNet;
    if (net !== 'none' && net !== 'host') {
      throw new GantryError('USAGE', `--net=${net} is not supported yet`, { hint: 'use --net=none or --net=host' });
    }
    const limits: ResourceLimits = {};
    const memory = stringFlag(args, 'memory');
    if (memory !== undefined) limits.memoryBytes = parseSize(memory, 'memory');
    const cpu = stringFlag(args, 'cpu');
    if (cpu !== undefined) limits.cpus = parsePositive(cpu, 'cpu');
    const pids = stringFlag(args, 'pids-limit');
    if (pids !== undefined) limits.pids = Math.floor(parsePositive(pids, 'pids-limit'));

    const store = await Store.open(env.ctx);
    let app: AppSpec;
    const uuid = randomUUID();
    const podDir = path.join(env.ctx.dir, 'pods', 'run', uuid);
    try {
      const { image } = await fetchImage(env.ctx, store, args.positionals[0]!, {
        pullPolicy: parsePullPolicy(stringFlag(args, 'pull-policy'), 'new'),
        platform: parsePlatform(stringFlag(args, 'platform')),
      });
      store.meta.touch(image.id);
      const config = JSON.parse((await store.content.readBytes(image.configDigest)).toString('utf8')) as ImageConfig;
      if (image.format !== 'oci') throw new GantryError('MEDIA_TYPE_UNSUPPORTED', `running appc images comes with the trust issue; ${image.id} is an ACI`);
      const exec = stringFlag(args, 'exec');
      app = {
        name: stringFlag(args, 'name') ?? appNameOf(image.names[0]),
        layers: store.layerPaths(image),
        config: config.config ?? {},
        exec: exec === undefined ? undefined : [exec, ...args.rest],
        args: exec === undefined && args.sawDoubleDash ? args.rest : undefined,
        env: listFlag(args, 'environment'),
        user: stringFlag(args, 'user'),
        group: stringFlag(args, 'group'),
        workingDir: stringFlag(args, 'working-dir'),
        readOnlyRootfs: boolFlag(args, 'readonly-rootfs'),
        capsRetain: listFlag(args, 'cap-retain').flatMap((c) => c.split(',')),
        capsRemove: listFlag(args, 'cap-remove').flatMap((c) => c.split(',')),
        limits,
      };
    } finally {
      store.close();
    }

    const { nsStage1 } = await import('../stage1/ns/index.js');
    const stage1 = nsStage1(env.ctx);
    await fs.mkdir(podDir, { recursive: true, mode: 0o700 });
    try {
      const result = await stage1.run({
        uuid,
        podDir,
        apps: [app],
        hostname: stringFlag(args, 'hostname'),
        net,
        ociRuntime: stringFlag(args, 'oci-runtime'),
      });
      const oom = result.apps.find((a) => a.oomKilled);
      if (oom) env.ctx.warn(`app ${oom.app} was killed by the OOM killer (memory limit reached)`);
      return result.exitCode;
    } finally {
      // Pods on disk (prepare, status, gc after exit) come with the pod
      // lifecycle; until then a foreground pod leaves nothing behind.
      await stage1.gc({ uuid, podDir, ociRuntime: stringFlag(args, 'oci-runtime') }).catch(() => {});
      await fs.rm(podDir, { recursive: true, force: true });
    }
  },
};

/** "docker.io/library/busybox:latest" -> "busybox". */
function appNameOf(imageName: string | undefined): string {
  const base = (imageName ?? 'app').split('/').pop()!.split(/[:@]/)[0]!;
  const clean = base.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return clean || 'app';
}

function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmgt]i?b?|b)?$/i.exec(text.trim());
  if (!m) throw new GantryError('USAGE', `--${flag}: "${text}" is not a size`, { hint: 'use e.g. 512K, 64M, 1G' });
  const unit = (m[2] ?? 'b').toLowerCase()[0]!;
  const factor: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.floor(Number(m[1]) * factor[unit]!);
}

function parsePositive(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new GantryError('USAGE', `--${flag} must be a positive number, not "${text}"`);
  return n;
}
