/**
 * The CNI path with the real plugins, on netns files without pods: a netns
 * on a test bridge network answers HTTP on its IP and through portmap on
 * 127.0.0.1, two netns reach each other, several networks (1.0.0, 0.4.0 and
 * a single 0.3.1 .conf) attach as eth0/eth1/eth2, and DEL - also replayed
 * from the cache after a "crash" and without the netns - leaves no veth,
 * lease or iptables rule.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { createContext } from '../src/context.js';
import { checkPodNetwork, ensureDefaultNetwork, podNetworkStatus, setupPodNetwork, teardownPodNetwork } from '../src/net/index.js';
import { removeNamespaceFiles } from '../src/sys/namespaces.js';
import {
  bridgeNet, bridgePorts, cacheEntries, execFileP, httpGet, httpGetRetry, iptablesMentions, leaseFiles, netEnv, nsLinks, randomOctet, startHttpd, stopProc, suffix,
} from './net-helpers.js';

const ip = (cidr: string) => cidr.split('/')[0]!;

test('a netns on a bridge network serves HTTP on its IP and via portmap on 127.0.0.1; a second netns reaches it; DEL cleans up', async () => {
  const env = await netEnv('gantry-net-cni-');
  const s = suffix();
  const bridge = `gtc${s}`;
  const octet = randomOctet();
  const net = `web${s}`;
  const hostPort = 18100 + Math.floor(Math.random() * 800);
  const podA = `pa${s}${Date.now()}`;
  const podB = `pb${s}${Date.now()}`;
  env.writeConf('10-web.conflist', bridgeNet(env, net, bridge, `10.231.${octet}.0/24`, { extra: [{ type: 'firewall' }] }));
  const www = path.join(env.tmp, 'www');
  fs.mkdirSync(www);
  fs.writeFileSync(path.join(www, 'index.html'), 'hello from the pod\n');
  try {
    const nsA = await env.newNetns('a');
    const nsB = await env.newNetns('b');
    const resA = await setupPodNetwork(env.ctx, { podId: podA, netnsPath: nsA, networks: [{ name: net }], ports: [{ hostIP: '127.0.0.1', hostPort, podPort: 80, protocol: 'tcp' }] });
    assert.equal(resA.networks.length, 1);
    const a = resA.networks[0]!;
    assert.equal(a.name, net);
    assert.equal(a.interface, 'eth0');
    assert.match(a.ips[0]!, new RegExp(`^10\\.231\\.${octet}\\.\\d+/24$`));
    assert.equal(a.gateway, `10.231.${octet}.1`);
    assert.match(a.mac ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.deepEqual(await podNetworkStatus(env.ctx, podA), resA);
    assert.deepEqual((await nsLinks(nsA)).sort(), ['eth0', 'lo']);

    const resB = await setupPodNetwork(env.ctx, { podId: podB, netnsPath: nsB, networks: [{ name: net }], ports: [] });
    const b = resB.networks[0]!;
    assert.notEqual(ip(a.ips[0]!), ip(b.ips[0]!));
    await checkPodNetwork(env.ctx, podA, nsA);
    await checkPodNetwork(env.ctx, podB, nsB);

    const httpd = startHttpd(env, nsA, www);
    try {
      assert.equal(await httpGetRetry(`http://${ip(a.ips[0]!)}/index.html`), 'hello from the pod\n');
      // portmap's DNAT for locally generated traffic to 127.0.0.1 (route_localnet + masquerade).
      assert.equal(await httpGet(`http://127.0.0.1:${hostPort}/index.html`), 'hello from the pod\n');
      // Debian's static busybox wget segfaults (NSS in a static binary); nc speaks HTTP/1.0 just as well.
      const reply = await execFileP('sh', ['-c', `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nsenter --net=${nsB} /bin/busybox nc -w 5 ${ip(a.ips[0]!)} 80`], { timeout: 10_000 });
      assert.match(reply.stdout, /^HTTP\/1\.[01] 200 /);
      assert.match(reply.stdout, /hello from the pod\n$/);
    } finally {
      await stopProc(httpd);
    }

    assert.ok((await iptablesMentions(podA)).length > 0, 'the plugins tag their rules with the pod id');
    assert.equal(leaseFiles(env, net).length, 2);
    assert.equal((await bridgePorts(bridge)).length, 2);

    await teardownPodNetwork(env.ctx, podA, nsA);
    await teardownPodNetwork(env.ctx, podA, nsA); // idempotent
    assert.deepEqual(await iptablesMentions(podA), []);
    assert.deepEqual(await iptablesMentions(ip(a.ips[0]!) + '/'), []);
    assert.deepEqual(leaseFiles(env, net), [ip(b.ips[0]!)]);
    assert.equal((await bridgePorts(bridge)).length, 1);
    assert.deepEqual(await nsLinks(nsA), ['lo']);
    assert.deepEqual(cacheEntries(env, podA), []);
    await assert.rejects(httpGet(`http://127.0.0.1:${hostPort}/`, 1000));

    // B was not touched by A's teardown.
    await checkPodNetwork(env.ctx, podB, nsB);
    await teardownPodNetwork(env.ctx, podB);
    assert.deepEqual(leaseFiles(env, net), []);
    assert.deepEqual(await bridgePorts(bridge), []);
  } finally {
    await teardownPodNetwork(env.ctx, podA).catch(() => {});
    await teardownPodNetwork(env.ctx, podB).catch(() => {});
    await env.cleanup();
  }
});

test('several networks (1.0.0 list, 0.4.0 list, 0.3.1 .conf) attach as eth0..eth2; DEL replays from the cache after a crash, with the configs gone', async () => {
  const env = await netEnv('gantry-net-multi-');
  const s = suffix();
  const o = randomOctet();
  const pod = `pm${s}${Date.now()}`;
  const n1 = `m1${s}`;
  const n2 = `m2${s}`;
  const n3 = `m3${s}`;
  env.writeConf('10-a.conflist', bridgeNet(env, n1, `gtm1${s}`, `10.233.${o}.0/24`));
  env.writeConf('20-b.conflist', bridgeNet(env, n2, `gtm2${s}`, `10.234.${o}.0/24`, { cniVersion: '0.4.0' }));
  env.bridges.add(`gtm3${s}`);
  env.writeConf('30-c.conf', {
    cniVersion: '0.3.1', name: n3, type: 'bridge', bridge: `gtm3${s}`,
    ipam: { type: 'host-local', dataDir: path.join(env.ctx.dir, 'net', 'ipam'), ranges: [[{ subnet: `10.235.${o}.0/24` }]] },
  });
  try {
    const ns = await env.newNetns('p');
    const res = await setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: n1 }, { name: n2, args: { IP: `10.234.${o}.77` } }, { name: n3 }], ports: [] });
    assert.deepEqual(res.networks.map((n) => [n.name, n.interface]), [[n1, 'eth0'], [n2, 'eth1'], [n3, 'eth2']]);
    // host-local honours CNI_ARGS IP=...: the --net args reach the plugins.
    assert.deepEqual(res.networks[1]!.ips, [`10.234.${o}.77/24`]);
    assert.match(res.networks[2]!.ips[0]!, new RegExp(`^10\\.235\\.${o}\\.`));
    assert.deepEqual((await nsLinks(ns)).sort(), ['eth0', 'eth1', 'eth2', 'lo']);
    await checkPodNetwork(env.ctx, pod, ns);

    // "Crash": a fresh context knows only the pod id; the config files are gone.
    fs.rmSync(env.confDir, { recursive: true });
    const fresh = createContext({ dir: env.ctx.dir, localConfig: env.ctx.localConfig });
    await teardownPodNetwork(fresh, pod);
    assert.deepEqual((await nsLinks(ns)).sort(), ['lo']);
    for (const n of [n1, n2, n3]) assert.deepEqual(leaseFiles(env, n), [], `lease of ${n}`);
    assert.deepEqual(await iptablesMentions(pod), []);
    assert.deepEqual(cacheEntries(env, pod), []);
  } finally {
    await teardownPodNetwork(env.ctx, pod).catch(() => {});
    await env.cleanup();
  }
});

test('DEL after the netns is gone (CNI_NETNS empty) still releases the lease and the iptables rules', async () => {
  const env = await netEnv('gantry-net-gone-');
  const s = suffix();
  const net = `g${s}`;
  const pod = `pg${s}${Date.now()}`;
  const bridge = `gtg${s}`;
  env.writeConf('g.conflist', bridgeNet(env, net, bridge, `10.236.${randomOctet()}.0/24`));
  try {
    const ns = await env.newNetns('p');
    await setupPodNetwork(env.ctx, { podId: pod, netnsPath: ns, networks: [{ name: net }], ports: [{ hostPort: 18900 + Math.floor(Math.random() * 99), podPort: 80, protocol: 'tcp' }] });
    assert.ok((await iptablesMentions(pod)).length > 0);
    await removeNamespaceFiles([ns]);
    await teardownPodNetwork(env.ctx, pod);
    assert.deepEqual(leaseFiles(env, net), []);
    assert.deepEqual(await iptablesMentions(pod), []);
    assert.deepEqual(await bridgePorts(bridge), [], 'the veth died with the netns');
    assert.deepEqual(cacheEntries(env, pod), []);
  } finally {
    await teardownPodNetwork(env.ctx, pod).catch(() => {});
    await env.cleanup();
  }
});

test('the default network config is written once, atomically, with leases under --dir', async () => {
  const env = await netEnv('gantry-net-default-');
  try {
    await Promise.all([ensureDefaultNetwork(env.ctx), ensureDefaultNetwork(env.ctx)]);
    const file = path.join(env.confDir, 'default.conflist');
    const conf = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(conf.name, 'default');
    assert.equal(conf.cniVersion, '1.0.0');
    assert.deepEqual(conf.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'firewall']);
    assert.equal(conf.plugins[0].bridge, 'gantry0');
    assert.equal(conf.plugins[0].ipam.dataDir, path.join(env.ctx.dir, 'net', 'ipam'));
    assert.deepEqual(fs.readdirSync(env.confDir), ['default.conflist']);
    // A user's own "default" (any file name) is left alone.
    fs.rmSync(file);
    env.writeConf('mine.conflist', { cniVersion: '1.0.0', name: 'default', plugins: [{ type: 'bridge', bridge: 'x' }] });
    await ensureDefaultNetwork(env.ctx);
    assert.deepEqual(fs.readdirSync(env.confDir), ['mine.conflist']);
  } finally {
    await env.cleanup();
  }
});
