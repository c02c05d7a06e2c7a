/**
 * `gantry run`: prepare a pod from one or more images (rkt's `---`
 * separator) and run it: in the foreground, where the pod lives as long as
 * the command and the exit code is the apps' (the first non-zero), or
 * detached (`-d`), printing the pod's UUID once every app has started.
 */
import { GantryError } from '../errors.js';
import { preparePod } from '../pod/prepare.js';
import { startPod } from '../pod/run.js';
import { boolFlag } from './args.js';
import type { Command } from './command.js';
import { APP_FLAGS, POD_FLAGS, RUN_ONLY_FLAGS, podRequestFromArgv } from './app/flags.js';

export const runCommand: Command = {
  name: 'run',
  usage: 'gantry run [pod flags] IMAGE [app flags] [-- ARGS] [--- IMAGE2 [app flags] [-- ARGS] ...]',
  summary: 'Run a pod from one or more images (separated by ---). Foreground: the exit code is the apps\' (the first non-zero); --detach prints the pod UUID.',
  flags: { ...POD_FLAGS, ...RUN_ONLY_FLAGS, ...APP_FLAGS },
  parseOptions: { stopAtPositional: true },
  async run(args, env) {
    const detach = boolFlag(args, 'detach');
    const interactive = boolFlag(args, 'interactive');
    const req = podRequestFromArgv(args);
    // Flags may also come right after the first image: read them after parsing.
    const rm = boolFlag(args, 'rm');
    const detached = detach || boolFlag(args, 'detach');
    const tty = interactive || boolFlag(args, 'interactive');
    if (detached && rm) throw new GantryError('USAGE', '--rm and --detach do not mix', { hint: 'gantry rm UUID removes a detached pod after it exited' });
    if (detached && tty) throw new GantryError('USAGE', '--interactive and --detach do not mix');
    if (tty) {
      if (req.apps.length !== 1) throw new GantryError('USAGE', '--interactive works with a pod of one app');
      req.apps[0]!.tty = process.stdin.isTTY === true;
    }
    const pod = await preparePod(env.ctx, req, 'run');
    env.ctx.debug(`pod ${pod.uuid} prepared in ${pod.dir}`);
    const result = await startPod(env.ctx, { uuid: pod.uuid, dir: pod.dir, manifest: pod.manifest, lockFd: pod.lockFd! }, { detach: detached, interactive: tty, rm });
    if (detached) {
      env.stdout.write(`${pod.uuid}\n`);
      return 0;
    }
    for (const a of result.apps) if (a.oomKilled) env.ctx.warn(`app ${a.app} was killed by the OOM killer (memory limit reached)`);
    return result.exitCode;
  },
};
