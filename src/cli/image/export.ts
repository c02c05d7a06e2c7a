/** `gantry image export [--format oci|aci] IMAGE FILE`: write an image as an OCI archive or an ACI. */
import { exportAci, exportOciArchive } from '../../image/export.js';
import { requireStoredImage } from '../../image/lookup.js';
import { Store } from '../../store/store.js';
import { GantryError } from '../../errors.js';
import { stringFlag } from '../args.js';
import type { Command } from '../command.js';

export const exportCommand: Command = {
  name: 'export',
  usage: 'gantry image export [--format oci|aci] [--tag TAG] IMAGE FILE',
  summary: 'Write an image as an OCI archive (skopeo copy oci-archive:FILE, podman load) or, with --format aci, as an unsigned ACI.',
  flags: {
    tag: { type: 'string', value: 'TAG', description: 'the ref name recorded in the archive (default: the tag of the image name)' },
    format: { type: 'string', value: 'oci|aci', description: 'archive format: oci (default), or aci (manifest + flattened rootfs/)' },
  },
  async run(args, env) {
    if (args.positionals.length !== 2) throw new GantryError('USAGE', 'image export takes an image and a file name');
    const [text, file] = args.positionals as [string, string];
    const format = stringFlag(args, 'format') ?? 'oci';
    if (format !== 'oci' && format !== 'aci') throw new GantryError('USAGE', `image export --format ${format}: unknown format`, { hint: 'use --format oci or --format aci' });
    const store = await Store.open(env.ctx);
    try {
      const image = requireStoredImage(store, text);
      await store.withUseLock(() => (format === 'aci' ? exportAci(store, image, file) : exportOciArchive(store, image, file, stringFlag(args, 'tag'))));
      return 0;
    } finally {
      store.close();
    }
  },
};
