/** `gantry app start|stop|rm UUID --app NAME`: act on one app of a running pod. */
import type { Context } from '../../context.js';
import { GantryError } from '../../errors.js';
import { removeApp, startApp, stopApp } from '../../pod/apps.js';
import { findPod, type PodInfo } from '../../pod/pods.js';
import { boolFlag, parseDuration, stringFlag, type FlagSpecs, type ParsedArgs } from '../args.js';
import type { Command } from '../command.js';

const APP: FlagSpecs = { app: { type: 'string', value: 'NAME', description: 'the app (required)' } };

/** A command taking one pod UUID and --app NAME; `act` does the work. */
function appVerb(
  name: string, usage: string, summary: string, flags: FlagSpecs,
  act: (ctx: Context, pod: PodInfo, app: string, args: ParsedArgs) => Promise<void>,
): Command {
  return {
    name, usage, summary, flags: { ...APP, ...flags },
    async run(args, env) {
      const app = stringFlag(args, 'app');
      if (args.positionals.length !== 1 || app === undefined) throw new GantryError('USAGE', `app ${name} takes one pod UUID and --app NAME`);
      await act(env.ctx, findPod(env.ctx, args.positionals[0]!), app, args);
      return 0;
    },
  };
}

export const appStartCommand = appVerb('start', 'gantry app start UUID --app NAME', 'Start an app of a running pod that was added or stopped.', {},
  (ctx, pod, app) => startApp(ctx, pod, app));

export const appStopCommand = appVerb('stop', 'gantry app stop UUID --app NAME [--force] [--timeout=10s]', 'Stop one app of a running pod; the others keep running.', {
  force: { type: 'boolean', description: 'send SIGKILL at once' },
  timeout: { type: 'string', value: 'DURATION', description: 'time between the stop signal and SIGKILL (default 10s)' },
}, (ctx, pod, app, args) => stopApp(ctx, pod, app, { force: boolFlag(args, 'force'), timeoutMs: parseDuration(stringFlag(args, 'timeout') ?? '10s', 'timeout') }));

export const appRmCommand = appVerb('rm', 'gantry app rm UUID --app NAME', 'Remove a (stopped) app from a running pod.', {},
  (ctx, pod, app) => removeApp(ctx, pod, app));
