/** `gantry image inspect IMAGE`: the store's record of an image and its config, as JSON. */
import { requireStoredImage } from '../../image/lookup.js';
import { Store } from '../../store/store.js';
import { GantryError } from '../../errors.js';
import { writeJson, type Command } from '../command.js';

export const inspectCommand: Command = {
  name: 'inspect',
  usage: 'gantry image inspect IMAGE',
  summary: 'Print what the store knows of an image (names, digests, layers, sizes, times) and its config, as JSON.',
  flags: {},
  async run(args, env) {
    if (args.positionals.length !== 1) throw new GantryError('USAGE', 'image inspect takes exactly one image');
    const store = await Store.open(env.ctx);
    try {
      const image = requireStoredImage(store, args.positionals[0]!);
      const config = JSON.parse((await store.content.readBytes(image.configDigest)).toString('utf8')) as unknown;
      writeJson(env, { ...image, config });
      return 0;
    } finally {
      store.close();
    }
  },
};
