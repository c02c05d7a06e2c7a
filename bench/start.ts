/**
 * bench/start: how long a pod takes from command to exit, side by side:
 *   - `gantry run --net=none IMAGE --exec true` (image already fetched)
 *   - `podman run --rm --network=none IMAGE true`
 *   - `crun run` of a ready bundle (the floor: the OCI runtime alone)
 * and the default-network case (gantry's CNI bridge vs podman's default
 * bridge); alternating, ROUNDS rounds (default 10); medians and ratios.
 * Then the memory a detached idle pod adds (its monitor processes), gantry
 * against podman.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture } from '../test/lib/fixtures.js';
import { median, podmanSetup, report, timed, type Sample } from './common.js';

const rounds = Number(process.env.ROUNDS ?? 10);
const gantryMain = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../src/cli/main.js');

function rssKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** PIDs of processes whose command line contains `needle`. */
function pidsMatching(needle: string, exe: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.startsWith(exe) && cmd.includes(needle)) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-start-'));
  const gantryDir = path.join(work, 'gantry');
  const podman = podmanSetup(path.join(work, 'podman'));
  const layout = await fixture('busybox');
  const gantryBase = ['--dir', gantryDir, '--local-config', path.join(work, 'gantry-config')];
  try {
    // Images: gantry's store, podman's storage, and a crun bundle from umoci.
    const id = execFileSync('node', [gantryMain, ...gantryBase, 'fetch', `oci:${layout}:latest`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    execFileSync('podman', [...podman.args, 'load', '-q', '-i', await fixture('busybox-oci-archive')], { env: podman.env, stdio: 'ignore' });
    const podmanImage = execFileSync('podman', [...podman.args, 'images', '-q'], { env: podman.env, encoding: 'utf8' }).trim().split('\n')[0]!;
    const bundle = path.join(work, 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${layout}:latest`, bundle], { stdio: 'ignore' });
    const config = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as { process: { args: string[]; terminal: boolean } };
    config.process.args = ['/bin/true'];
    config.process.terminal = false;
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(config));
    const crunRoot = path.join(work, 'crun-root');

    const samples: Sample[] = [];
    const netSamples: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      samples.push({ tool: 'gantry run --net=none', ms: timed('node', [gantryMain, ...gantryBase, 'run', '--rm', '--net=none', id, '--exec', '/bin/true']) });
      samples.push({ tool: 'podman run --network=none', ms: timed('podman', [...podman.args, 'run', '--rm', '--network=none', podmanImage, '/bin/true'], podman.env) });
      samples.push({ tool: 'crun run (ready bundle)', ms: timed('crun', ['--root', crunRoot, 'run', '--bundle', bundle, `bench-${round}`]) });
      netSamples.push({ tool: 'gantry run (default net)', ms: timed('node', [gantryMain, ...gantryBase, 'run', '--rm', id, '--exec', '/bin/true']) });
      netSamples.push({ tool: 'podman run (default bridge)', ms: timed('podman', [...podman.args, 'run', '--rm', podmanImage, '/bin/true'], podman.env) });
      process.stderr.write(`round ${round + 1}/${rounds}\n`);
    }
    report(`start-to-exit of /bin/true, no network (${rounds} rounds)`, samples, 'podman run --network=none');
    const crunMedian = median(samples.filter((s) => s.tool.startsWith('crun')).map((s) => s.ms));
    const gantryMedian = median(samples.filter((s) => s.tool.startsWith('gantry')).map((s) => s.ms));
    console.log(`gantry - crun: ${(gantryMedian - crunMedian).toFixed(1)} ms`);
    report(`start-to-exit of /bin/true, default network (${rounds} rounds)`, netSamples, 'podman run (default bridge)');

    // Memory of idle detached pods: the processes that keep them (monitors), not the apps.
    const pods = 5;
    const gantryUuids: string[] = [];
    for (let i = 0; i < pods; i++) {
      gantryUuids.push(execFileSync('node', [gantryMain, ...gantryBase, 'run', '-d', '--net=none', id, '--exec', '/bin/sleep', '--', '600'], { encoding: 'utf8' }).trim());
    }
    const podmanIds: string[] = [];
    for (let i = 0; i < pods; i++) {
      podmanIds.push(execFileSync('podman', [...podman.args, 'run', '-d', '--network=none', podmanImage, '/bin/sleep', '600'], { env: podman.env, encoding: 'utf8' }).trim());
    }
    await new Promise((r) => setTimeout(r, 500));
    const gantryKb = gantryUuids.flatMap((u) => pidsMatching(u.slice(0, 8), '/usr/bin/conmon')).reduce((n, pid) => n + rssKb(pid), 0);
    const podmanKb = podmanIds.flatMap((c) => pidsMatching(c, '/usr/bin/conmon')).reduce((n, pid) => n + rssKb(pid), 0);
    console.log(`\nmemory kept per idle detached pod (monitor RSS, ${pods} pods each):`);
    console.log(`  gantry: ${(gantryKb / pods / 1024).toFixed(2)} MiB    podman: ${(podmanKb / pods / 1024).toFixed(2)} MiB    ratio ${(gantryKb / Math.max(1, podmanKb)).toFixed(2)}x`);

    spawnSync('node', [gantryMain, ...gantryBase, 'stop', '--force', ...gantryUuids], { stdio: 'ignore' });
    spawnSync('node', [gantryMain, ...gantryBase, 'gc', '--grace-period=0'], { stdio: 'ignore' });
    spawnSync('podman', [...podman.args, 'rm', '-f', '-t', '0', ...podmanIds], { env: podman.env, stdio: 'ignore' });
  } finally {
    spawnSync('podman', [...podman.args, 'system', 'reset', '-f'], { env: podman.env, stdio: 'ignore' });
    spawnSync('node', [gantryMain, ...gantryBase, 'gc', '--grace-period=0'], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', 'gantry0'], { stdio: 'ignore' });
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
