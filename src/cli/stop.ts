/** `gantry stop UUID...`: each app's stop signal (SIGTERM by default), then SIGKILL after the timeout. */
import { GantryError } from '../errors.js';
import { findPod, requireRunning, waitForExit } from '../pod/pods.js';
import { stage1For } from '../pod/stage1.js';
import { recordAudit } from '../audit/log.js';
import { boolFlag, parseDuration, stringFlag } from './args.js';
import { forEachArg, type Command } from './command.js';

export const stopCommand: Command = {
  name: 'stop',
  usage: 'gantry stop [--force] [--timeout=10s] UUID...',
  summary: 'Stop running pods: each app\'s stop signal, then SIGKILL after --timeout; --force sends SIGKILL at once.',
  flags: {
    force: { type: 'boolean', description: 'send SIGKILL at once' },
    timeout: { type: 'string', value: 'DURATION', description: 'time between the stop signal and SIGKILL (default 10s)' },
  },
  async run(args, env) {
    if (args.positionals.length === 0) throw new GantryError('USAGE', 'stop needs at least one pod UUID');
    const timeoutMs = parseDuration(stringFlag(args, 'timeout') ?? '10s', 'timeout');
    const force = boolFlag(args, 'force');
    return forEachArg(env, args.positionals, async (text) => {
      const pod = findPod(env.ctx, text);
      const manifest = requireRunning(pod, 'stop');
      await stage1For(env.ctx, manifest).stop({ uuid: pod.uuid, podDir: pod.dir, ociRuntime: manifest.ociRuntime }, { force, timeoutMs });
      // The keeper lets go of the lock once the apps are gone; wait a bounded while for that.
      if (!(await waitForExit(pod, timeoutMs + 10_000))) env.ctx.warn(`pod ${pod.uuid} still holds its lock after stop`);
      await recordAudit(env.ctx, 'stop', pod.uuid, { force });
      env.stdout.write(`${pod.uuid}\n`);
    });
  },
};
