/** `gantry prepare`: make a pod ready to run (images fetched, manifest written) and print its UUID. */
import { GantryError } from '../errors.js';
import { preparePod } from '../pod/prepare.js';
import { boolFlag } from './args.js';
import { writeJson, type Command } from './command.js';
import { APP_FLAGS, POD_FLAGS, markInteractive, podRequestFromArgv } from './app/flags.js';

export const prepareCommand: Command = {
  name: 'prepare',
  usage: 'gantry prepare [pod flags] IMAGE [app flags] [-- ARGS] [--- IMAGE2 ...]',
  summary: 'Prepare a pod without running it and print its UUID; gantry run-prepared UUID starts it.',
  flags: { ...POD_FLAGS, ...APP_FLAGS },
  parseOptions: { stopAtPositional: true },
  async run(args, env) {
    const req = podRequestFromArgv(args);
    if (boolFlag(args, 'detach') || boolFlag(args, 'rm')) throw new GantryError('USAGE', '--detach and --rm belong to run and run-prepared');
    // The terminal run-prepared will have is not known yet: the app is prepared for one.
    if (boolFlag(args, 'interactive')) markInteractive(req, true);
    const pod = await preparePod(env.ctx, req, 'prepared');
    if (env.format === 'json') writeJson(env, { uuid: pod.uuid, apps: pod.manifest.apps.map((a) => ({ name: a.name, image: a.image })) });
    else env.stdout.write(`${pod.uuid}\n`);
    return 0;
  },
};
