/** `gantry image render IMAGE DIR`: write the image's complete filesystem into DIR. */
import { requireStoredImage } from '../../image/lookup.js';
import { renderSnapshots } from '../../store/render.js';
import { Store } from '../../store/store.js';
import { GantryError } from '../../errors.js';
import type { Command } from '../command.js';

export const renderCommand: Command = {
  name: 'render',
  usage: 'gantry image render IMAGE DIR',
  summary: 'Write the complete filesystem of an image into DIR (which must be empty or absent), as an overlay mount of its layers would show it.',
  flags: {},
  async run(args, env) {
    if (args.positionals.length !== 2) throw new GantryError('USAGE', 'image render takes an image and a target directory');
    const [text, target] = args.positionals as [string, string];
    const store = await Store.open(env.ctx);
    try {
      const image = requireStoredImage(store, text);
      await store.withUseLock(() => renderSnapshots(store.layerPaths(image), target));
      return 0;
    } finally {
      store.close();
    }
  },
};
