/**
 * bench/pull: pull a multi-layer image (>= 100 MB uncompressed) from a local
 * registry with gantry, `podman pull`, and `skopeo copy` + `umoci unpack`,
 * alternating, each round from an empty store; prints medians and ratios.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from '../test/lib/fixtures.js';
import { pushOciLayout, startRegistry } from '../test/lib/registry.js';
import { podmanSetup, report, timed, type Sample } from './common.js';

const rounds = Number(process.env.ROUNDS ?? 5);
const gantry = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../src/cli/main.js');

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-pull-'));
  const registry = await startRegistry();
  try {
    const layout = await fixture('big');
    await pushOciLayout(layout, 'latest', registry.host, { format: 'v2s2', repository: 'big' });
    const ref = `${registry.host}/big:latest`;
    const podman = podmanSetup(path.join(work, 'podman'));
    const samples: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      const dir = path.join(work, `gantry-${round}`);
      samples.push({ tool: 'gantry fetch', ms: timed('node', [gantry, '--dir', dir, '--insecure-options=http', 'fetch', `docker://${ref}`]) });
      fs.rmSync(dir, { recursive: true, force: true });

      samples.push({ tool: 'podman pull', ms: timed('podman', [...podman.args, 'pull', '-q', '--tls-verify=false', ref], podman.env) });
      timed('podman', [...podman.args, 'rmi', '-a', '-f'], podman.env);

      const oci = path.join(work, `skopeo-${round}`);
      const start = process.hrtime.bigint();
      timed('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${ref}`, `oci:${oci}:latest`]);
      timed('umoci', ['unpack', '--image', `${oci}:latest`, path.join(oci, 'bundle')]);
      samples.push({ tool: 'skopeo copy + umoci unpack', ms: Number(process.hrtime.bigint() - start) / 1e6 });
      fs.rmSync(oci, { recursive: true, force: true });
      process.stderr.write(`round ${round + 1}/${rounds} done\n`);
    }
    report(`pull of ${ref} (${rounds} rounds, empty store each time)`, samples, 'podman pull');
  } finally {
    await registry.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
