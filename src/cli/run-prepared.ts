/**
 * `gantry run-prepared UUID`: run a prepared pod. Taking the pod's lock and
 * moving it from prepared to run is what makes two concurrent run-prepared
 * of one pod safe: exactly one wins, the other gets POD_STATE.
 */
import { GantryError } from '../errors.js';
import { tryLockPod, unlockPod } from '../pod/lock.js';
import { findPod, movePod } from '../pod/pods.js';
import { startPod } from '../pod/run.js';
import type { Command } from './command.js';
import { RUN_ONLY_FLAGS } from './app/flags.js';
import { reportStart, startOptionsFrom } from './run.js';

export const runPreparedCommand: Command = {
  name: 'run-prepared',
  usage: 'gantry run-prepared [--detach] [--interactive] [--rm] UUID',
  summary: 'Run a prepared pod. Foreground: the exit code is the apps\'; --detach prints the UUID once the apps started.',
  flags: {
    ...RUN_ONLY_FLAGS,
    interactive: { type: 'boolean', short: 't', description: 'give the app this terminal\'s stdin' },
  },
  async run(args, env) {
    if (args.positionals.length !== 1) throw new GantryError('USAGE', 'run-prepared takes one pod UUID');
    const options = startOptionsFrom(args);
    const pod = findPod(env.ctx, args.positionals[0]!);
    const notPrepared = () => new GantryError('POD_STATE', `pod ${pod.uuid} is not prepared (it is ${pod.state}${pod.dirState === 'prepared' ? ', being started by another gantry' : ''})`, {
      hint: 'only a prepared pod can be run, once; gantry prepare makes a new one',
    });
    if (pod.dirState !== 'prepared' || !pod.manifest) throw notPrepared();
    const lock = await tryLockPod(pod.dir);
    if (!('fd' in lock)) throw notPrepared();
    let dir: string;
    try {
      dir = movePod(env.ctx, pod.uuid, 'prepared', 'run');
    } catch (err) {
      unlockPod(lock.fd);
      throw err;
    }
    const result = await startPod(env.ctx, { uuid: pod.uuid, dir, manifest: pod.manifest, lockFd: lock.fd }, options);
    return reportStart(env, pod.uuid, result, options.detach);
  },
};
