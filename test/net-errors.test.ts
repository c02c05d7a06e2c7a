/**
 * Bad input for pod networking, each with the real plugins: the error names
 * the network and plugin, and nothing of the failed pod stays configured (no
 * veth on the bridge, no interface in the netns besides lo, no IPAM lease,
 * no iptables rule with its id, no cache entry).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { isGantryError, type ErrorCode } from '../src/errors.js';
import { setupPodNetwork, teardownPodNetwork } from '../src/net/index.js';
import { bridgeNet, bridgePorts, cacheEntries, iptablesMentions, leaseFiles, netEnv, nsLinks, randomOctet, suffix, type NetEnv } from './net-helpers.js';

function rejectsWith(code: ErrorCode, ...patterns: RegExp[]) {
  return (err: unknown) => {
    assert.ok(isGantryError(err, code), `expected ${code}, got ${String(err)}`);
    for (const p of patterns) assert.match(`${err.message}\n${err.hint ?? ''}`, p);
    return true;
  };
}

/** Whether `pid` is gone or a zombie awaiting its reaper; bounded to ~2 s. */
async function deadOrZombie(pid: number): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return true;
    }
    if (/^\d+ \(.*\) [ZX] /.test(stat)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Asserts that nothing of `podId` is configured anywhere. */
async function assertNothingLeft(env: NetEnv, podId: string, netns: string, network: string, bridge?: string): Promise<void> {
  assert.deepEqual(await nsLinks(netns), ['lo'], 'only lo in the netns');
  if (bridge) assert.deepEqual(await bridgePorts(bridge), [], 'no veth on the bridge');
  assert.deepEqual(leaseFiles(env, network), [], 'no IPAM lease');
  assert.deepEqual(await iptablesMentions(podId), [], 'no iptables rule with the pod id');
  assert.deepEqual(cacheEntries(env, podId), [], 'no cache entry');
}

test('a network with no config, a broken config, a missing plugin: refused before anything is configured', async () => {
  const env = await netEnv('gantry-net-err1-');
  const s = suffix();
  const pod = `pe${s}${Date.now()}`;
  try {
    const ns = await env.newNetns('p');
    env.writeConf('10-ok.conflist', bridgeNet(env, `ok${s}`, `gte${s}`, `10.237.${randomOctet()}.0/24`));
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: 'nosuchnet' }], ports: [] }),
      rejectsWith('NETWORK_NOT_FOUND', /no CNI network named "nosuchnet"/, new RegExp(`available networks: .*ok${s}`)));

    const broken = env.writeConf('20-broken.conflist', '{"cniVersion": "1.0.0", "name": "broken", "plugins": [');
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: 'broken' }], ports: [] }),
      rejectsWith('CONFIG_INVALID', new RegExp(broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), /not valid JSON/));
    fs.rmSync(broken);

    env.writeConf('30-missing.conflist', { cniVersion: '1.0.0', name: 'missing', plugins: [{ type: 'bridge', bridge: `gte${s}` }, { type: 'nosuchplugin' }] });
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: `ok${s}` }, { name: 'missing' }], ports: [] }),
      rejectsWith('NETWORK_ERROR', /network "missing": CNI plugin "nosuchplugin" is not installed/, /looked in .*\/usr\/lib\/cni/));
    await assertNothingLeft(env, pod, ns, `ok${s}`);

    // -p on a network without a portMappings-capable plugin.
    env.writeConf('40-noportmap.conflist', bridgeNet(env, `np${s}`, `gte${s}`, `10.237.${randomOctet()}.0/24`, { portmap: false }));
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: `np${s}` }], ports: [{ hostPort: 18999, podPort: 80, protocol: 'tcp' }] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`network "np${s}" has no plugin with the portMappings capability`)));

    // Not a namespace, hostile pod id.
    const plain = path.join(env.tmp, 'plain');
    fs.writeFileSync(plain, '');
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: plain, networks: [{ name: `ok${s}` }], ports: [] }), rejectsWith('NETWORK_ERROR', /is not a network namespace/));
    await assert.rejects(setupPodNetwork(env.ctx, { podId: '../../etc', netnsPath: ns, networks: [{ name: `ok${s}` }], ports: [] }), rejectsWith('USAGE', /not a valid pod ID/));
    await assert.rejects(teardownPodNetwork(env.ctx, '../x'), rejectsWith('USAGE'));
    await assertNothingLeft(env, pod, ns, `ok${s}`);
  } finally {
    await teardownPodNetwork(env.ctx, pod).catch(() => {});
    await env.cleanup();
  }
});

test('a plugin failing after others succeeded: the error names it, and the chain is rolled back', async () => {
  const env = await netEnv('gantry-net-err2-');
  const s = suffix();
  const pod = `pf${s}${Date.now()}`;
  const bridge = `gtf${s}`;
  const network = `fail${s}`;
  // bridge + portmap succeed, then tuning fails on a sysctl that does not exist.
  env.writeConf('f.conflist', bridgeNet(env, network, bridge, `10.238.${randomOctet()}.0/24`, { extra: [{ type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.no_such_knob': '1' } }] }));
  // bridge failing on its own config: an interface name longer than Linux allows.
  env.writeConf('g.conflist', { cniVersion: '1.0.0', name: `bad${s}`, plugins: [{ type: 'bridge', bridge: 'this-name-is-far-too-long-for-linux', ipam: { type: 'host-local', dataDir: path.join(env.ctx.dir, 'net', 'ipam'), ranges: [[{ subnet: '10.239.0.0/24' }]] } }] });
  try {
    const ns = await env.newNetns('p');
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: network }], ports: [{ hostIP: '127.0.0.1', hostPort: 18100 + Math.floor(Math.random() * 800), podPort: 80, protocol: 'tcp' }] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`network "${network}": CNI plugin "tuning" ADD failed`), /no_such_knob/));
    await assertNothingLeft(env, pod, ns, network, bridge);

    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: `bad${s}` }], ports: [] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`network "bad${s}": CNI plugin "bridge" ADD failed`)));
    await assertNothingLeft(env, pod, ns, `bad${s}`);
  } finally {
    await teardownPodNetwork(env.ctx, pod).catch(() => {});
    await env.cleanup();
  }
});

test('a plugin that hangs is killed after the timeout, with its children, and the chain rolled back', async () => {
  const env = await netEnv('gantry-net-err3-');
  const s = suffix();
  const pod = `ph${s}${Date.now()}`;
  const bridge = `gth${s}`;
  const network = `hang${s}`;
  const bin = path.join(env.tmp, 'cni-bin');
  fs.mkdirSync(bin);
  const pidFile = path.join(env.tmp, 'sleeper.pid');
  // The hang is a child of the plugin's shell, so only a group kill ends it.
  fs.writeFileSync(path.join(bin, 'hangs'), `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then sleep 60 & echo $! > ${pidFile}; wait; fi\nexit 0\n`, { mode: 0o755 });
  env.writeConf('h.conflist', bridgeNet(env, network, bridge, `10.240.${randomOctet()}.0/24`, { extra: [{ type: 'hangs' }] }));
  const saved = { path: process.env.CNI_PATH, timeout: process.env.GANTRY_CNI_TIMEOUT_MS };
  process.env.CNI_PATH = bin;
  process.env.GANTRY_CNI_TIMEOUT_MS = '1500';
  try {
    const ns = await env.newNetns('p');
    const started = Date.now();
    await assert.rejects(setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: network }], ports: [] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`network "${network}": CNI plugin "hangs" ADD did not finish within 1500 ms and was killed`)));
    assert.ok(Date.now() - started < 10_000, 'bounded by the timeout');
    const sleeper = Number(fs.readFileSync(pidFile, 'utf8'));
    assert.ok(await deadOrZombie(sleeper), 'the plugin\'s child was killed too');
    await assertNothingLeft(env, pod, ns, network, bridge);
  } finally {
    if (saved.path === undefined) delete process.env.CNI_PATH; else process.env.CNI_PATH = saved.path;
    if (saved.timeout === undefined) delete process.env.GANTRY_CNI_TIMEOUT_MS; else process.env.GANTRY_CNI_TIMEOUT_MS = saved.timeout;
    await teardownPodNetwork(env.ctx, pod).catch(() => {});
    await env.cleanup();
  }
});

test('a host port already mapped by another pod or held by a host socket is refused; the first pod is unaffected', async () => {
  const env = await netEnv('gantry-net-err4-');
  const s = suffix();
  const bridge = `gtp${s}`;
  const network = `port${s}`;
  const podA = `pA${s}${Date.now()}`;
  const podB = `pB${s}${Date.now()}`;
  env.writeConf('p.conflist', bridgeNet(env, network, bridge, `10.241.${randomOctet()}.0/24`));
  const port = 18100 + Math.floor(Math.random() * 800);
  const server = net.createServer();
  try {
    const nsA = await env.newNetns('a');
    const nsB = await env.newNetns('b');
    await setupPodNetwork(env.ctx, { podId: podA, netnsPath: nsA, networks: [{ name: network }], ports: [{ hostIP: '127.0.0.1', hostPort: port, podPort: 80, protocol: 'tcp' }] });
    // Same port on every address clashes with 127.0.0.1; the same number over UDP does not.
    await assert.rejects(setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: network }], ports: [{ hostPort: port, podPort: 8080, protocol: 'tcp' }] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`host port ${port}/tcp .* is already mapped to pod ${podA}`)));
    await assertNothingLeft(env, podB, nsB, network + '-none');
    assert.equal(leaseFiles(env, network).length, 1, 'only the first pod\'s lease');
    assert.ok((await iptablesMentions(podA)).length > 0, 'the first pod keeps its rules');
    assert.deepEqual((await nsLinks(nsA)).sort(), ['eth0', 'lo']);

    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port + 1, '127.0.0.1', resolve));
    await assert.rejects(setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: network }], ports: [{ hostPort: port + 1, podPort: 80, protocol: 'tcp' }] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`host port ${port + 1}/tcp .* is in use by a process on the host`)));
    await assert.rejects(setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: network }], ports: [{ hostPort: 18001, podPort: 80, protocol: 'tcp' }, { hostPort: 18001, podPort: 81, protocol: 'tcp' }] }),
      rejectsWith('USAGE', /use the same host port/));
    assert.deepEqual(cacheEntries(env, podB), []);

    const ok = await setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: network }], ports: [{ hostPort: port, podPort: 53, protocol: 'udp' }] });
    assert.equal(ok.networks.length, 1);
  } finally {
    server.close();
    await teardownPodNetwork(env.ctx, podA).catch(() => {});
    await teardownPodNetwork(env.ctx, podB).catch(() => {});
    await env.cleanup();
  }
});

test('an exhausted IP range: the second pod fails cleanly, the first keeps its address', async () => {
  const env = await netEnv('gantry-net-err5-');
  const s = suffix();
  const bridge = `gtx${s}`;
  const network = `tiny${s}`;
  const podA = `xA${s}${Date.now()}`;
  const podB = `xB${s}${Date.now()}`;
  const o = randomOctet();
  env.writeConf('t.conflist', bridgeNet(env, network, bridge, `10.242.${o}.0/30`, { range: { rangeStart: `10.242.${o}.2`, rangeEnd: `10.242.${o}.2` } }));
  try {
    const nsA = await env.newNetns('a');
    const nsB = await env.newNetns('b');
    const first = await setupPodNetwork(env.ctx, { podId: podA, netnsPath: nsA, networks: [{ name: network }], ports: [] });
    assert.deepEqual(first.networks[0]!.ips, [`10.242.${o}.2/30`]);
    await assert.rejects(setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: network }], ports: [] }),
      rejectsWith('NETWORK_ERROR', new RegExp(`network "${network}": CNI plugin "bridge" ADD failed`), /no IP addresses available/));
    assert.deepEqual(await nsLinks(nsB), ['lo']);
    assert.deepEqual(await iptablesMentions(podB), []);
    assert.deepEqual(cacheEntries(env, podB), []);
    assert.deepEqual(leaseFiles(env, network), [`10.242.${o}.2`]);
    assert.equal((await bridgePorts(bridge)).length, 1, 'only the first pod\'s veth');
    assert.deepEqual((await nsLinks(nsA)).sort(), ['eth0', 'lo']);
    await teardownPodNetwork(env.ctx, podA);
    // The address is free again.
    const second = await setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: network }], ports: [] });
    assert.deepEqual(second.networks[0]!.ips, [`10.242.${o}.2/30`]);
  } finally {
    await teardownPodNetwork(env.ctx, podA).catch(() => {});
    await teardownPodNetwork(env.ctx, podB).catch(() => {});
    await env.cleanup();
  }
});
