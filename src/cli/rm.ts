/** `gantry rm UUID...`: remove pods that are not running (prepared, exited, failed), with stage1's cleanup. */
import { GantryError, isGantryError } from '../errors.js';
import { findPod, removePod } from '../pod/pods.js';
import { writeJson, type Command } from './command.js';

export const rmCommand: Command = {
  name: 'rm',
  usage: 'gantry rm UUID...',
  summary: 'Remove pods that are not running. A running pod is refused (POD_STATE): stop it first.',
  flags: {},
  async run(args, env) {
    if (args.positionals.length === 0) throw new GantryError('USAGE', 'rm needs at least one pod UUID');
    const removed: string[] = [];
    let firstError: GantryError | undefined;
    for (const text of args.positionals) {
      try {
        const pod = findPod(env.ctx, text);
        await removePod(env.ctx, pod);
        removed.push(pod.uuid);
        if (env.format !== 'json') env.stdout.write(`${pod.uuid}\n`);
      } catch (err) {
        if (!isGantryError(err)) throw err;
        env.stderr.write(`gantry: error: ${err.message}\n`);
        if (err.hint) env.stderr.write(`  hint: ${err.hint}\n`);
        firstError ??= err;
      }
    }
    if (env.format === 'json') writeJson(env, { removed });
    return firstError ? firstError.exitCode : 0;
  },
};
