/**
 * Pod networking through the CLI with the real CNI plugins: each test writes
 * its own "default" network (own bridge and subnet) into its own
 * --local-config, so it never touches a real gantry0.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createContext } from '../src/context.js';
import { defaultNetworkConfig } from '../src/net/config.js';
import { gantry, tempDir } from './lib/cli.js';
import { copyFixture, fixture } from './lib/fixtures.js';
import { httpGetRetry } from './net-helpers.js';

interface Env { dir: string; config: string; bridge: string; cleanup: () => void; base: string[] }

let counter = 0;
function networkEnv(): Env {
  const { dir, cleanup } = tempDir('gantry-net-');
  const config = path.join(dir, 'config');
  const n = (process.pid % 200) + counter++;
  const bridge = `gtest${process.pid % 1000}x${counter}`;
  const subnet = `10.${210 + (counter % 40)}.${n % 250}.0/24`;
  const state = path.join(dir, 'state');
  fs.mkdirSync(path.join(config, 'net.d'), { recursive: true });
  const conf = defaultNetworkConfig(createContext({ dir: state }), { bridge, subnet });
  fs.writeFileSync(path.join(config, 'net.d', 'default.conflist'), JSON.stringify(conf));
  return {
    dir: state,
    config,
    bridge,
    base: ['--dir', state, '--local-config', config, '--insecure-options=image'],
    cleanup: () => {
      try {
        execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
      } catch {
        // already gone
      }
      cleanup();
    },
  };
}

/** What the pod left on the host: veths on its bridge, leases, iptables rules naming it. */
function leftovers(env: Env, uuid: string): string[] {
  const found: string[] = [];
  const veths = execFileSync('ip', ['-o', 'link', 'show', 'master', env.bridge], { encoding: 'utf8' }).trim();
  if (veths) found.push(`veth on ${env.bridge}: ${veths}`);
  const ipam = path.join(env.dir, 'net', 'ipam');
  if (fs.existsSync(ipam)) {
    for (const net of fs.readdirSync(ipam)) {
      for (const f of fs.readdirSync(path.join(ipam, net))) {
        if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) found.push(`lease ${net}/${f}`);
      }
    }
  }
  const rules = execFileSync('iptables-save', { encoding: 'utf8' }).split('\n').filter((l) => l.includes(uuid));
  found.push(...rules.map((r) => `iptables: ${r}`));
  const netns = execFileSync('sh', ['-c', `grep -c ${uuid} /proc/mounts || true`], { encoding: 'utf8' }).trim();
  if (netns !== '0') found.push(`${netns} mount(s) of the pod`);
  return found;
}

async function podIp(env: Env, uuid: string): Promise<string> {
  const status = await gantry([...env.base, '--format', 'json', 'status', uuid]);
  assert.equal(status.code, 0, status.stderr);
  const parsed = JSON.parse(status.stdout) as { network?: { ips: string[] }[] };
  const ip = parsed.network?.[0]?.ips[0];
  assert.ok(ip, `pod ${uuid} has no IP in status: ${status.stdout}`);
  return ip.split('/')[0]!;
}

describe('pod networking', () => {
  let busybox: string;
  before(async () => {
    busybox = `oci:${await fixture('busybox')}:latest`;
  });

  test('httpd in a pod answers on its pod IP and through -p on 127.0.0.1; stop + gc leave nothing', async () => {
    const env = networkEnv();
    const hostPort = 18080 + (process.pid % 500);
    try {
      fs.mkdirSync(path.join(env.dir, '..', 'www'), { recursive: true });
      const run = await gantry([...env.base, 'run', '-d', '-p', `127.0.0.1:${hostPort}:80`, busybox,
        '--exec', '/bin/sh', '--', '-c', 'mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 80 -h /www']);
      assert.equal(run.code, 0, run.stderr);
      const uuid = run.stdout.trim();
      const ip = await podIp(env, uuid);
      assert.match(ip, /^10\.\d+\.\d+\.\d+$/);
      assert.equal((await httpGetRetry(`http://${ip}/`)).trim(), 'hello-from-pod');
      assert.equal((await httpGetRetry(`http://127.0.0.1:${hostPort}/`)).trim(), 'hello-from-pod');

      const list = JSON.parse((await gantry([...env.base, '--format', 'json', 'list'])).stdout) as unknown[];
      assert.ok(JSON.stringify(list).includes(ip), 'list shows the pod IP');

      assert.equal((await gantry([...env.base, 'stop', uuid])).code, 0);
      const gc = await gantry([...env.base, 'gc', '--grace-period=0']);
      assert.equal(gc.code, 0, gc.stderr);
      assert.deepEqual(leftovers(env, uuid), []);
    } finally {
      env.cleanup();
    }
  });

  test('two pods on one network reach each other by IP; a --net=none pod has only lo', async () => {
    const env = networkEnv();
    try {
      const server = await gantry([...env.base, 'run', '-d', busybox, '--exec', '/bin/sh', '--', '-c', 'mkdir -p /w && echo peer > /w/index.html && exec httpd -f -p 8080 -h /w']);
      assert.equal(server.code, 0, server.stderr);
      const uuid = server.stdout.trim();
      const ip = await podIp(env, uuid);
      const client = await gantry([...env.base, 'run', busybox, '--exec', '/bin/sh', '--', '-c',
        `for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://${ip}:8080/ && exit 0; sleep 0.2; done; exit 1`]);
      assert.equal(client.code, 0, client.stderr);
      assert.match(client.stdout, /peer/);

      const none = await gantry([...env.base, 'run', '--net=none', busybox, '--exec', '/bin/sh', '--', '-c', 'ls /sys/class/net']);
      assert.equal(none.code, 0, none.stderr);
      assert.deepEqual(none.stdout.trim().split(/\s+/), ['lo']);

      assert.equal((await gantry([...env.base, 'stop', '--force', uuid])).code, 0);
      assert.equal((await gantry([...env.base, 'gc', '--grace-period=0'])).code, 0);
      assert.deepEqual(leftovers(env, uuid), []);
    } finally {
      env.cleanup();
    }
  });

  test('kill -9 of a running gantry run, then gc: no veth, lease, rule or netns of the pod remains', async () => {
    const env = networkEnv();
    try {
      const child = spawn(process.execPath, [path.resolve('dist/src/cli/main.js'), ...env.base, 'run', busybox, '--exec', '/bin/sh', '--', '-c', 'echo started; sleep 60'], { stdio: ['ignore', 'pipe', 'pipe'] });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the pod did not start within 20 s')), 20_000);
        child.stdout.on('data', (d: Buffer) => {
          if (d.toString().includes('started')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const pods = JSON.parse((await gantry([...env.base, '--format', 'json', 'list'])).stdout) as { uuid: string }[];
      assert.equal(pods.length, 1);
      const uuid = pods[0]!.uuid;
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const gc = await gantry([...env.base, 'gc', '--grace-period=0']);
      assert.equal(gc.code, 0, gc.stderr);
      assert.deepEqual(leftovers(env, uuid), []);
    } finally {
      env.cleanup();
    }
  });

  test('an unknown network and a second pod on a taken host port are refused cleanly', async () => {
    const env = networkEnv();
    const hostPort = 18600 + (process.pid % 200);
    try {
      for (const port of ['8080:80', '80-tcp:8080']) {
        const noCni = await gantry([...env.base, 'run', '--net=none', '-p', port, busybox, '--exec', '/bin/true']);
        assert.equal(noCni.code, 2, noCni.stderr);
        assert.match(noCni.stderr, /--port needs a CNI network/);
      }
      const unknown = await gantry([...env.base, 'run', '--net=nosuchnet', busybox, '--exec', '/bin/true']);
      assert.notEqual(unknown.code, 0);
      assert.match(unknown.stderr, /nosuchnet/);

      const first = await gantry([...env.base, 'run', '-d', '-p', `${hostPort}:80`, busybox, '--exec', '/bin/sleep', '--', '60']);
      assert.equal(first.code, 0, first.stderr);
      const second = await gantry([...env.base, 'run', '-p', `${hostPort}:80`, busybox, '--exec', '/bin/true']);
      assert.notEqual(second.code, 0);
      assert.match(second.stderr, new RegExp(String(hostPort)));
      const pods = JSON.parse((await gantry([...env.base, '--format', 'json', 'list'])).stdout) as { uuid: string; state: string }[];
      assert.equal(pods.filter((p) => p.state === 'running').length, 1);
      assert.equal((await gantry([...env.base, 'stop', '--force', first.stdout.trim()])).code, 0);
      assert.equal((await gantry([...env.base, 'gc', '--grace-period=0'])).code, 0);
      for (const p of pods) assert.deepEqual(leftovers(env, p.uuid), []);
    } finally {
      env.cleanup();
    }
  });

  test('rkt\'s --port NAME:HOSTPORT publishes a port the image declares; an unknown name is refused', async () => {
    const env = networkEnv();
    const hostPort = 18800 + (process.pid % 150);
    try {
      const layout = path.join(env.dir, '..', 'web');
      await copyFixture('busybox', layout);
      execFileSync('umoci', ['config', '--image', `${layout}:latest`, '--tag', 'web', '--config.exposedports', '80/tcp']);
      const web = `oci:${layout}:web`;
      const unknown = await gantry([...env.base, 'run', '--port', `http:${hostPort}`, web, '--exec', '/bin/true']);
      assert.equal(unknown.code, 2, unknown.stderr);
      assert.match(unknown.stderr, /no app of the pod declares a port named "http"/);
      assert.match(unknown.stderr, /80-tcp \(80\/tcp\)/);

      const run = await gantry([...env.base, 'run', '-d', '--port', `80-tcp:${hostPort}`, web,
        '--exec', '/bin/sh', '--', '-c', 'mkdir -p /w && echo named-port > /w/index.html && exec httpd -f -p 80 -h /w']);
      assert.equal(run.code, 0, run.stderr);
      assert.equal((await httpGetRetry(`http://127.0.0.1:${hostPort}/`)).trim(), 'named-port');
      assert.equal((await gantry([...env.base, 'stop', '--force', run.stdout.trim()])).code, 0);
      assert.equal((await gantry([...env.base, 'gc', '--grace-period=0'])).code, 0);
      assert.deepEqual(leftovers(env, run.stdout.trim()), []);
    } finally {
      env.cleanup();
    }
  });
});
