/** `gantry fetch REF...`: fetch images into the store and print one image ID per line. */
import { fetchImage, type PullPolicy } from '../image/fetch.js';
import { Store } from '../store/store.js';
import { GantryError } from '../errors.js';
import { stringFlag, type FlagSpecs } from './args.js';
import { writeJson, type Command } from './command.js';
import { parsePlatform } from './platform.js';

export const PULL_FLAGS: FlagSpecs = {
  'pull-policy': { type: 'string', value: 'never|new|update', description: 'never: store only; new: fetch if absent; update: always ask the source' },
  platform: { type: 'string', value: 'OS/ARCH[/VARIANT]', description: 'platform to select from a multi-arch image (default: this host)' },
};

export function parsePullPolicy(value: string | undefined, fallback: PullPolicy): PullPolicy {
  if (value === undefined) return fallback;
  if (value === 'never' || value === 'new' || value === 'update') return value;
  throw new GantryError('USAGE', `--pull-policy must be never, new or update, not "${value}"`);
}

export const fetchCommand: Command = {
  name: 'fetch',
  usage: 'gantry fetch [flags] REF...',
  summary:
    'Fetch images and print their IDs. REF is docker://[host/]repo[:tag|@digest], oci:DIR[:tag], ' +
    'oci-archive:FILE[:tag], docker-archive:FILE, https://host/path/image.aci, ./image.aci, or an image ID/name in the store.',
  flags: PULL_FLAGS,
  async run(args, env) {
    if (args.positionals.length === 0) throw new GantryError('USAGE', 'fetch needs at least one image reference', { hint: 'e.g. gantry fetch docker://busybox' });
    const policy = parsePullPolicy(stringFlag(args, 'pull-policy'), 'update');
    const platform = parsePlatform(stringFlag(args, 'platform'));
    const store = await Store.open(env.ctx);
    try {
      const results = [];
      for (const ref of args.positionals) {
        const result = await fetchImage(env.ctx, store, ref, { pullPolicy: policy, platform });
        if (result.verification?.status === 'skipped') env.ctx.warn(`${ref}: ${result.verification.reason}`);
        results.push({ reference: ref, id: result.image.id, names: result.image.names, transferred: result.transferred, verification: result.verification });
        if (env.format === 'text') env.stdout.write(`${result.image.id}\n`);
      }
      if (env.format === 'json') writeJson(env, results);
      return 0;
    } finally {
      store.close();
    }
  },
};
