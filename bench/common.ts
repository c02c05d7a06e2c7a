/**
 * Shared pieces of the benchmarks: timing a command, medians, ratios, and a
 * podman that runs on this kind of host (private storage, ulimits within the
 * hard limits, since the host lacks CAP_SYS_RESOURCE).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface Sample { tool: string; ms: number }

/** Runs a command, fails loudly if it fails, returns wall time in ms. */
export function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env, timeout: 600_000 });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr?.toString().slice(-2000)}`);
  return ms;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function report(title: string, samples: Sample[], baseline: string): void {
  const tools = [...new Set(samples.map((s) => s.tool))];
  const medians = new Map(tools.map((t) => [t, median(samples.filter((s) => s.tool === t).map((s) => s.ms))]));
  console.log(`\n${title}`);
  console.log('tool'.padEnd(28) + 'runs'.padStart(6) + 'median ms'.padStart(12) + `  ratio to ${baseline}`);
  for (const t of tools) {
    const m = medians.get(t)!;
    const ratio = m / medians.get(baseline)!;
    console.log(t.padEnd(28) + String(samples.filter((s) => s.tool === t).length).padStart(6) + m.toFixed(1).padStart(12) + `  ${ratio.toFixed(2)}x`);
  }
}

/** Ensures podman is installed and returns the env + args that give it private storage under `work`. */
export function podmanSetup(work: string): { env: NodeJS.ProcessEnv; args: string[] } {
  if (spawnSync('sh', ['-c', 'command -v podman']).status !== 0) {
    const r = spawnSync('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('could not install podman');
  }
  fs.mkdirSync(work, { recursive: true });
  const conf = path.join(work, 'containers.conf');
  // podman's default ulimits exceed this host's hard limits (no CAP_SYS_RESOURCE).
  fs.writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n');
  return {
    env: { ...process.env, CONTAINERS_CONF: conf },
    args: ['--root', path.join(work, 'podman-root'), '--runroot', path.join(work, 'podman-run'), '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'],
  };
}
