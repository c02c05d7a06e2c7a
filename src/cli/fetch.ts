/** `gantry fetch REF...`: fetch images into the store and print one image ID per line. */
import { fetchImage, type PullPolicy } from '../image/fetch.js';
import { Store } from '../store/store.js';
import { GantryError } from '../errors.js';
import { boolFlag, stringFlag, type FlagSpecs } from './args.js';
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
    'oci-archive:FILE[:tag], docker-archive:FILE, https://host/path/image.aci, ./image.aci, an appc name with labels ' +
    '(example.com/app:1.0,os=linux,arch=amd64: found by appc discovery), or an image ID/name in the store. Signatures are checked ' +
    '(ACIs: gantry trust keys; others: the signature policy); --insecure-options=image skips the check.',
  flags: {
    ...PULL_FLAGS,
    'signature-policy': { type: 'string', value: 'FILE', description: 'containers-policy.json to check OCI/Docker signatures with (default: <local-config>/policy.json, /etc/containers/policy.json, else accept with a warning)' },
    'trust-keys-from-https': { type: 'boolean', description: 'trust the keys appc discovery offers over https when none is trusted for the image yet' },
  },
  async run(args, env) {
    if (args.positionals.length === 0) throw new GantryError('USAGE', 'fetch needs at least one image reference', { hint: 'e.g. gantry fetch docker://busybox' });
    const policy = parsePullPolicy(stringFlag(args, 'pull-policy'), 'update');
    const platform = parsePlatform(stringFlag(args, 'platform'));
    const policyFile = stringFlag(args, 'signature-policy');
    const trust = { ...(policyFile !== undefined ? { policyFile } : {}), trustKeysFromHttps: boolFlag(args, 'trust-keys-from-https') };
    const store = await Store.open(env.ctx);
    try {
      const results = [];
      for (const ref of args.positionals) {
        const result = await fetchImage(env.ctx, store, ref, { pullPolicy: policy, platform, trust });
        // Unverified images were already warned about by the library; say who signed the others.
        if (result.verification?.status === 'verified') env.stderr.write(`signature verified: ${result.verification.signer} (${result.verification.fingerprint})\n`);
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
