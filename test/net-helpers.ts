/**
 * Shared set-up for the CNI tests: a temp state dir and local config with
 * the test's own network configs (own bridge names and subnets, so they never
 * touch a real gantry0 or each other), netns files, and host-side probes.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createContext, type Context } from '../src/context.js';
import { createNamespaceFiles, removeNamespaceFiles } from '../src/sys/namespaces.js';

export const execFileP = promisify(execFile);

// Tests never read the host's /etc/cni/net.d.
process.env.GANTRY_CNI_CONF_DIRS = '';

export interface NetEnv {
  tmp: string;
  ctx: Context;
  confDir: string;
  bridges: Set<string>;
  nsFiles: string[];
  procs: ChildProcess[];
  writeConf(file: string, value: unknown): string;
  newNetns(label: string): Promise<string>;
  cleanup(): Promise<void>;
}

/** A random 4-hex suffix so concurrent runs of the suite pick distinct bridges. */
export function suffix(): string {
  return Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0');
}

export function randomOctet(): number {
  return 1 + Math.floor(Math.random() * 250);
}

export async function netEnv(prefix: string): Promise<NetEnv> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const confDir = path.join(tmp, 'conf', 'net.d');
  fs.mkdirSync(confDir, { recursive: true });
  const warnings: string[] = [];
  const ctx = createContext({ dir: path.join(tmp, 'state'), localConfig: path.join(tmp, 'conf'), warn: (m) => warnings.push(m) });
  const env: NetEnv = {
    tmp,
    ctx,
    confDir,
    bridges: new Set(),
    nsFiles: [],
    procs: [],
    writeConf(file, value) {
      const p = path.join(confDir, file);
      fs.writeFileSync(p, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
      return p;
    },
    async newNetns(label) {
      const files = await createNamespaceFiles(path.join(tmp, 'ns', label), ['net']);
      env.nsFiles.push(files.net);
      return files.net;
    },
    async cleanup() {
      for (const p of env.procs) if (p.exitCode === null && p.pid) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      await removeNamespaceFiles(env.nsFiles);
      for (const br of env.bridges) await execFileP('ip', ['link', 'del', br]).catch(() => {});
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
  return env;
}

/** A bridge network config list in the shape of gantry's default, with test-owned names. */
export function bridgeNet(env: NetEnv, name: string, bridge: string, subnet: string, opts: { cniVersion?: string; range?: { rangeStart: string; rangeEnd: string }; extra?: unknown[]; portmap?: boolean } = {}): Record<string, unknown> {
  env.bridges.add(bridge);
  return {
    cniVersion: opts.cniVersion ?? '1.0.0',
    name,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: path.join(env.ctx.dir, 'net', 'ipam'),
          routes: [{ dst: '0.0.0.0/0' }],
          ranges: [[{ subnet, ...(opts.range ?? {}) }]],
        },
      },
      ...(opts.portmap === false ? [] : [{ type: 'portmap', capabilities: { portMappings: true } }]),
      ...(opts.extra ?? []),
    ],
  };
}

/** Runs busybox httpd inside the netns serving `dir` on port 80; tracked for cleanup. */
export function startHttpd(env: NetEnv, netns: string, dir: string): ChildProcess {
  const child = spawn('nsenter', [`--net=${netns}`, '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', dir], { stdio: 'ignore' });
  env.procs.push(child);
  return child;
}

export async function stopProc(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, 'SIGKILL');
  await exited;
}

export function httpGet(url: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout fetching ${url}`)));
    req.on('error', reject);
  });
}

/** Retries a GET until it answers; bounded to ~5 s. */
export async function httpGetRetry(url: string): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 25; i++) {
    try {
      return await httpGet(url, 1000);
    } catch (err) {
      last = err;
      await sleep(200);
    }
  }
  throw last;
}

export async function iptablesMentions(text: string): Promise<string[]> {
  const saved = (await execFileP('iptables-save', [], { maxBuffer: 64 * 1024 * 1024 })).stdout;
  return saved.split('\n').filter((l) => l.includes(text));
}

export async function bridgePorts(bridge: string): Promise<string[]> {
  const out = await execFileP('ip', ['-o', 'link', 'show', 'master', bridge]).catch(() => ({ stdout: '' }));
  return out.stdout.split('\n').filter(Boolean);
}

export async function nsLinks(netns: string): Promise<string[]> {
  const out = await execFileP('nsenter', [`--net=${netns}`, 'ip', '-br', 'link']);
  return out.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]!.replace(/@.*/, ''));
}

export function leaseFiles(env: NetEnv, network: string): string[] {
  const dir = path.join(env.ctx.dir, 'net', 'ipam', network);
  try {
    return fs.readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  } catch {
    return [];
  }
}

export function cacheEntries(env: NetEnv, podId: string): string[] {
  try {
    return fs.readdirSync(path.join(env.ctx.dir, 'net', 'cache', podId));
  } catch {
    return [];
  }
}
