/** `gantry rm UUID...`: remove pods that are not running (prepared, exited, failed), with stage1's cleanup. */
import { GantryError } from '../errors.js';
import { findPod, removePod } from '../pod/pods.js';
import { forEachArg, writeJson, type Command } from './command.js';

export const rmCommand: Command = {
  name: 'rm',
  usage: 'gantry rm UUID...',
  summary: 'Remove pods that are not running. A running pod is refused (POD_STATE): stop it first.',
  flags: {},
  async run(args, env) {
    if (args.positionals.length === 0) throw new GantryError('USAGE', 'rm needs at least one pod UUID');
    const removed: string[] = [];
    const code = await forEachArg(env, args.positionals, async (text) => {
      const pod = findPod(env.ctx, text);
      await removePod(env.ctx, pod);
      removed.push(pod.uuid);
      if (env.format !== 'json') env.stdout.write(`${pod.uuid}\n`);
    });
    if (env.format === 'json') writeJson(env, { removed });
    return code;
  },
};
