/** `gantry image gc`: remove images unused for the grace period and every unreferenced blob and snapshot. */
import { imagesInUse } from '../../pod/pods.js';
import { Store } from '../../store/store.js';
import { recordAudit } from '../../audit/log.js';
import { parseDuration, stringFlag } from '../args.js';
import { writeJson, type Command } from '../command.js';

export const gcCommand: Command = {
  name: 'gc',
  usage: 'gantry image gc [--grace-period=24h]',
  summary: 'Remove images not used (fetched or run) within the grace period, then every blob and layer snapshot no image uses.',
  flags: { 'grace-period': { type: 'string', value: 'DURATION', description: 'keep images used within this long (default 24h, as rkt); 0 removes every image' } },
  async run(args, env) {
    const gracePeriodMs = parseDuration(stringFlag(args, 'grace-period') ?? '24h', 'grace-period');
    const store = await Store.open(env.ctx);
    try {
      // Images of pods on disk (any state) stay, however long ago they were used.
      const report = await store.gc({ gracePeriodMs, extraRoots: () => imagesInUse(env.ctx).keys() });
      await recordAudit(env.ctx, 'image-gc', 'images', {
        removedImages: report.removedImages.map((i) => i.id),
        removedBlobs: report.removedBlobs.length,
        removedSnapshots: report.removedSnapshots.length,
      });
      if (env.format === 'json') {
        writeJson(env, { removedImages: report.removedImages.map((i) => i.id), removedBlobs: report.removedBlobs, removedSnapshots: report.removedSnapshots });
      } else {
        for (const image of report.removedImages) env.stdout.write(`removed image ${image.id} (${image.names.join(',') || 'no name'})\n`);
        env.stdout.write(`removed ${report.removedBlobs.length} blob(s) and ${report.removedSnapshots.length} layer snapshot(s)\n`);
      }
      return 0;
    } finally {
      store.close();
    }
  },
};
