/** `gantry image list`: the images in the store. */
import { Store } from '../../store/store.js';
import { boolFlag } from '../args.js';
import { formatBytes, shortId, writeJson, writeTable, type Command } from '../command.js';

export const listCommand: Command = {
  name: 'list',
  usage: 'gantry image list [--full] [--format json]',
  summary: 'List the images in the store.',
  flags: { full: { type: 'boolean', description: 'show full image IDs' } },
  async run(args, env) {
    const store = await Store.open(env.ctx);
    try {
      const images = store.meta.listImages();
      if (env.format === 'json') {
        writeJson(env, images);
        return 0;
      }
      const full = boolFlag(args, 'full');
      const rows = images.map((img) => [
        full ? img.id : shortId(img.id),
        img.names.join(',') || '<none>',
        formatBytes(img.size),
        `${img.platform.os}/${img.platform.architecture}${img.platform.variant ? `/${img.platform.variant}` : ''}`,
        img.fetchedAt,
        img.lastUsedAt,
      ]);
      writeTable(env, ['ID', 'NAME', 'SIZE', 'PLATFORM', 'FETCHED', 'LAST USED'], rows);
      return 0;
    } finally {
      store.close();
    }
  },
};
