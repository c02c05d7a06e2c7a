/** `gantry app start|stop|rm UUID --app NAME`: act on one app of a running pod. */
import { GantryError } from '../../errors.js';
import { removeApp, startApp, stopApp } from '../../pod/apps.js';
import { findPod } from '../../pod/pods.js';
import { boolFlag, parseDuration, stringFlag, type FlagSpecs, type ParsedArgs } from '../args.js';
import type { Command } from '../command.js';

const APP: FlagSpecs = { app: { type: 'string', value: 'NAME', description: 'the app (required)' } };

function target(args: ParsedArgs, verb: string): { uuid: string; app: string } {
  const app = stringFlag(args, 'app');
  if (args.positionals.length !== 1 || app === undefined) throw new GantryError('USAGE', `app ${verb} takes one pod UUID and --app NAME`);
  return { uuid: args.positionals[0]!, app };
}

export const appStartCommand: Command = {
  name: 'start',
  usage: 'gantry app start UUID --app NAME',
  summary: 'Start an app of a running pod that was added or stopped.',
  flags: APP,
  async run(args, env) {
    const t = target(args, 'start');
    await startApp(env.ctx, findPod(env.ctx, t.uuid), t.app);
    return 0;
  },
};

export const appStopCommand: Command = {
  name: 'stop',
  usage: 'gantry app stop UUID --app NAME [--force] [--timeout=10s]',
  summary: 'Stop one app of a running pod; the others keep running.',
  flags: {
    ...APP,
    force: { type: 'boolean', description: 'send SIGKILL at once' },
    timeout: { type: 'string', value: 'DURATION', description: 'time between the stop signal and SIGKILL (default 10s)' },
  },
  async run(args, env) {
    const t = target(args, 'stop');
    await stopApp(env.ctx, findPod(env.ctx, t.uuid), t.app, { force: boolFlag(args, 'force'), timeoutMs: parseDuration(stringFlag(args, 'timeout') ?? '10s', 'timeout') });
    return 0;
  },
};

export const appRmCommand: Command = {
  name: 'rm',
  usage: 'gantry app rm UUID --app NAME',
  summary: 'Remove a (stopped) app from a running pod.',
  flags: APP,
  async run(args, env) {
    const t = target(args, 'rm');
    await removeApp(env.ctx, findPod(env.ctx, t.uuid), t.app);
    return 0;
  },
};
