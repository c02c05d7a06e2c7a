/** `gantry enter UUID [--app NAME] [CMD...]`: run a command inside a running app (default /bin/sh). */
import { GantryError } from '../errors.js';
import { findPod, requireRunning } from '../pod/pods.js';
import { stage1For } from '../pod/stage1.js';
import { parseArgs, stringFlag, type FlagSpecs } from './args.js';
import type { Command } from './command.js';

const FLAGS: FlagSpecs = {
  app: { type: 'string', value: 'NAME', description: 'the app to enter (needed when the pod has several)' },
};

export const enterCommand: Command = {
  name: 'enter',
  usage: 'gantry enter [--app NAME] UUID [CMD [ARGS...]]',
  summary: 'Run a command (default /bin/sh) inside a running app\'s namespaces and rootfs; the exit code is the command\'s.',
  flags: FLAGS,
  parseOptions: { stopAtPositional: true },
  async run(args, env) {
    const [uuid, ...after] = args.positionals;
    if (uuid === undefined) throw new GantryError('USAGE', 'enter needs a pod UUID');
    // Flags may also follow the UUID; the command starts at the first non-flag word (or after --).
    const tail = parseArgs(after, FLAGS, { stopAtPositional: true });
    const appName = stringFlag(tail, 'app') ?? stringFlag(args, 'app');
    const command = tail.positionals.length > 0 ? tail.positionals : tail.rest.length > 0 ? tail.rest : ['/bin/sh'];
    const pod = findPod(env.ctx, uuid);
    const manifest = requireRunning(pod, 'enter');
    let app = appName;
    if (app === undefined) {
      if (manifest.apps.length !== 1) {
        throw new GantryError('USAGE', `pod ${pod.uuid} has ${manifest.apps.length} apps: choose one with --app`, { hint: `apps: ${manifest.apps.map((a) => a.name).join(', ')}` });
      }
      app = manifest.apps[0]!.name;
    }
    const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
    return stage1For(env.ctx, manifest).enter({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: manifest.ociRuntime }, app, command, {
      stdio: ['inherit', 'inherit', 'inherit'], tty,
    });
  },
};
