/** `gantry app add UUID IMAGE [app flags] [-- ARGS]`: add and start an app in a running pod. */
import { GantryError } from '../../errors.js';
import { addApp } from '../../pod/apps.js';
import type { VolumeRecord } from '../../pod/manifest.js';
import { findPod } from '../../pod/pods.js';
import type { Command } from '../command.js';
import { APP_FLAGS, appRequestFrom, parseAppSegment } from './flags.js';

export const appAddCommand: Command = {
  name: 'add',
  usage: 'gantry app add UUID IMAGE [app flags] [-- ARGS]',
  summary: 'Add an app to a running pod (fetching its image if needed); gantry app start starts it. Prints the app name.',
  flags: {},
  parseOptions: { stopAtPositional: true },
  async run(args, env) {
    const [uuid, ...segment] = args.positionals;
    if (uuid === undefined || segment.length === 0) throw new GantryError('USAGE', 'app add needs a pod UUID and an image');
    if (segment.includes('---')) throw new GantryError('USAGE', 'app add adds one app; run it once per app');
    const { image, args: own, cmdArgs } = parseAppSegment(segment, APP_FLAGS);
    const volumes: VolumeRecord[] = [];
    const req = appRequestFrom(own, image, cmdArgs, volumes);
    const pod = findPod(env.ctx, uuid);
    const name = await addApp(env.ctx, pod, req, volumes);
    env.stdout.write(`${name}\n`);
    return 0;
  },
};
