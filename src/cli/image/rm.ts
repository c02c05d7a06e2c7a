/** `gantry image rm IMAGE...`: remove images (and the blobs and snapshots no other image uses). */
import { GantryError } from '../../errors.js';
import { recordAudit } from '../../audit/log.js';
import { canonicalName, findStoredImage } from '../../image/lookup.js';
import { imagesInUse } from '../../pod/pods.js';
import { Store } from '../../store/store.js';
import { writeJson, type Command } from '../command.js';

export const rmCommand: Command = {
  name: 'rm',
  usage: 'gantry image rm IMAGE...',
  summary: 'Remove images by ID, ID prefix or name. A name that is one of several of an image removes only that name.',
  flags: {},
  async run(args, env) {
    if (args.positionals.length === 0) throw new GantryError('USAGE', 'image rm needs at least one image');
    const store = await Store.open(env.ctx);
    let failures = 0;
    let inUseFailures = 0;
    try {
      // Decided and done under the store's exclusive lock, so a pod prepared
      // meanwhile is either seen as a user of its image or waits for us.
      const { result: removed, report } = await store.changeAndCollect(() => {
        const inUse = imagesInUse(env.ctx);
        const ids: string[] = [];
        for (const text of args.positionals) {
          const image = findStoredImage(store, text);
          if (!image) {
            env.stderr.write(`gantry: error: no image "${text}" in the store\n`);
            failures++;
            continue;
          }
          // The name the image was found by, as stored, if it was found by a name (not by ID).
          const canonical = canonicalName(text);
          const byName = image.names.find((n) => n === text || n === canonical);
          if (byName && image.names.length > 1) {
            store.meta.removeName(byName);
          } else if (inUse.has(image.id)) {
            const pods = inUse.get(image.id)!;
            env.stderr.write(`gantry: error: image ${image.id} is used by pod(s) ${pods.join(', ')}\n  hint: remove the pods first (gantry rm UUID, or gantry gc once they exited)\n`);
            inUseFailures++;
            continue;
          } else {
            store.meta.removeImage(image.id);
          }
          ids.push(image.id);
        }
        return ids;
      });
      for (const id of removed) await recordAudit(env.ctx, 'image-rm', id, { blobsRemoved: report.removedBlobs.length });
      if (env.format === 'json') writeJson(env, { removed, removedBlobs: report.removedBlobs.length, removedSnapshots: report.removedSnapshots.length });
      else for (const id of removed) env.stdout.write(`${id}\n`);
    } finally {
      store.close();
    }
    if (inUseFailures > 0) throw new GantryError('POD_STATE', `${inUseFailures} image(s) are used by pods and were kept`, { hint: 'remove those pods first' });
    if (failures > 0) throw new GantryError('IMAGE_NOT_FOUND', `${failures} of ${args.positionals.length} image(s) not found`, { hint: 'gantry image list shows what the store holds' });
    return 0;
  },
};
