/** `gantry cat-manifest UUID`: the pod's manifest, appc style (or gantry's own pod.json with --gantry). */
import { GantryError } from '../errors.js';
import { toAppcPodManifest } from '../pod/manifest.js';
import { findPod } from '../pod/pods.js';
import { boolFlag } from './args.js';
import { writeJson, type Command } from './command.js';

export const catManifestCommand: Command = {
  name: 'cat-manifest',
  usage: 'gantry cat-manifest [--gantry] UUID',
  summary: 'Print a pod\'s manifest as an appc pod manifest (usable with run --pod-manifest); --gantry prints gantry\'s own pod.json.',
  flags: { gantry: { type: 'boolean', description: 'print gantry\'s pod.json instead' } },
  async run(args, env) {
    if (args.positionals.length !== 1) throw new GantryError('USAGE', 'cat-manifest takes one pod UUID');
    const pod = findPod(env.ctx, args.positionals[0]!);
    if (!pod.manifest) throw new GantryError('POD_STATE', `pod ${pod.uuid} is ${pod.state}: it has no manifest yet`);
    writeJson(env, boolFlag(args, 'gantry') ? pod.manifest : toAppcPodManifest(pod.manifest));
    return 0;
  },
};
