/** `gantry image cat-manifest IMAGE`: print the image's manifest exactly as stored. */
import { requireStoredImage } from '../../image/lookup.js';
import { Store } from '../../store/store.js';
import { GantryError } from '../../errors.js';
import { boolFlag } from '../args.js';
import type { Command } from '../command.js';

export const catManifestCommand: Command = {
  name: 'cat-manifest',
  usage: 'gantry image cat-manifest [--pretty-print=false] IMAGE',
  summary: 'Print the manifest of an image (for ACIs: the appc image manifest).',
  flags: { 'pretty-print': { type: 'boolean', description: 'indent the JSON (default true); false prints the exact stored bytes' } },
  async run(args, env) {
    if (args.positionals.length !== 1) throw new GantryError('USAGE', 'image cat-manifest takes exactly one image');
    const store = await Store.open(env.ctx);
    try {
      const image = requireStoredImage(store, args.positionals[0]!);
      // For an ACI the manifest people mean is the appc one, kept as the config blob.
      const digest = image.format === 'appc' ? image.configDigest : image.manifestDigest;
      const bytes = await store.content.readBytes(digest);
      const pretty = args.flags.has('pretty-print') ? boolFlag(args, 'pretty-print') : true;
      env.stdout.write(pretty ? JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 2) + '\n' : bytes);
      return 0;
    } finally {
      store.close();
    }
  },
};
