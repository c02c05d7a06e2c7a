/** `gantry image verify [IMAGE...]`: re-hash blobs and report corruption. */
import { requireStoredImage } from '../../image/lookup.js';
import { Store } from '../../store/store.js';
import { GantryError } from '../../errors.js';
import { writeJson, type Command } from '../command.js';

export const verifyCommand: Command = {
  name: 'verify',
  usage: 'gantry image verify [IMAGE...]',
  summary: 'Re-hash every blob of the given images (default: every blob in the store) and report any that is missing or corrupt.',
  flags: {},
  async run(args, env) {
    const store = await Store.open(env.ctx);
    try {
      const problems: { digest: string; images: string[]; problem: 'missing' | 'corrupt' }[] = [];
      const images = args.positionals.length ? args.positionals.map((t) => requireStoredImage(store, t)) : store.meta.listImages();
      const users = new Map<string, string[]>();
      for (const img of images) {
        for (const d of [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)]) {
          users.set(d, [...(users.get(d) ?? []), img.id]);
        }
      }
      const digests = args.positionals.length ? [...users.keys()] : [...new Set([...users.keys(), ...(await store.content.list())])];
      let checked = 0;
      for (const digest of digests) {
        checked++;
        if (!(await store.content.has(digest))) problems.push({ digest, images: users.get(digest) ?? [], problem: 'missing' });
        else if (!(await store.content.verify(digest))) problems.push({ digest, images: users.get(digest) ?? [], problem: 'corrupt' });
      }
      if (env.format === 'json') writeJson(env, { checked, problems });
      else {
        for (const p of problems) env.stdout.write(`${p.problem}: ${p.digest}${p.images.length ? ` (used by ${p.images.join(', ')})` : ''}\n`);
        env.stdout.write(`${checked} blob(s) checked, ${problems.length} problem(s)\n`);
      }
      if (problems.length) {
        throw new GantryError('STORE_CORRUPT', `${problems.length} blob(s) missing or corrupt`, { hint: 'remove the affected images (gantry image rm) and fetch them again' });
      }
      return 0;
    } finally {
      store.close();
    }
  },
};
