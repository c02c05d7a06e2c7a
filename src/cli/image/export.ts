/** `gantry image export IMAGE FILE`: write an image as an OCI archive. */
import { exportOciArchive } from '../../image/export.js';
import { requireStoredImage } from '../../image/lookup.js';
import { Store } from '../../store/store.js';
import { GantryError } from '../../errors.js';
import { stringFlag } from '../args.js';
import type { Command } from '../command.js';

export const exportCommand: Command = {
  name: 'export',
  usage: 'gantry image export [--tag TAG] IMAGE FILE',
  summary: 'Write an image as an OCI archive (readable by skopeo copy oci-archive:FILE and podman load).',
  flags: {
    tag: { type: 'string', value: 'TAG', description: 'the ref name recorded in the archive (default: the tag of the image name)' },
    format: { type: 'string', value: 'oci', description: 'archive format: oci (default)' },
  },
  async run(args, env) {
    if (args.positionals.length !== 2) throw new GantryError('USAGE', 'image export takes an image and a file name');
    const [text, file] = args.positionals as [string, string];
    const format = stringFlag(args, 'format') ?? 'oci';
    if (format !== 'oci') throw new GantryError('USAGE', `image export --format ${format} is not supported yet`, { hint: 'use --format oci' });
    const store = await Store.open(env.ctx);
    try {
      const image = requireStoredImage(store, text);
      await store.withUseLock(() => exportOciArchive(store, image, file, stringFlag(args, 'tag')));
      return 0;
    } finally {
      store.close();
    }
  },
};
