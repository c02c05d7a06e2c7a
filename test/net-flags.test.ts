import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isGantryError } from '../src/errors.js';
import { parseNetFlag, parsePortFlag } from '../src/net/flags.js';
import { decodeProcAddress } from '../src/net/ports.js';
import { summarizeResult } from '../src/net/result.js';
import { parseConfig } from '../src/net/config.js';

function usage(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => isGantryError(err, 'USAGE') && pattern.test(err.message));
}

test('--net: default, host, none, names with args, lists', () => {
  assert.equal(parseNetFlag('host'), 'host');
  assert.equal(parseNetFlag('none'), 'none');
  assert.deepEqual(parseNetFlag('default'), { networks: [{ name: 'default' }], ports: [] });
  assert.deepEqual(parseNetFlag('default,lan:IP=10.1.2.3;K_2=v'), {
    networks: [{ name: 'default' }, { name: 'lan', args: { IP: '10.1.2.3', K_2: 'v' } }],
    ports: [],
  });
  assert.deepEqual(parseNetFlag('a:X=1;'), { networks: [{ name: 'a', args: { X: '1' } }], ports: [] });
});

test('--net: bad input names the bad part', () => {
  usage(() => parseNetFlag(''), /needs a value/);
  usage(() => parseNetFlag('host,default'), /"host" cannot be combined/);
  usage(() => parseNetFlag('default,none'), /"none" cannot be combined/);
  usage(() => parseNetFlag('a,,b'), /empty network name/);
  usage(() => parseNetFlag('../etc'), /"\.\.\/etc" is not a valid network name/);
  usage(() => parseNetFlag('a,a'), /names network "a" twice/);
  usage(() => parseNetFlag('a:'), /no KEY=VALUE/);
  usage(() => parseNetFlag('a:novalue'), /"novalue" of network "a" is not KEY=VALUE/);
  usage(() => parseNetFlag('a:1X=2'), /argument name "1X"/);
  usage(() => parseNetFlag('a:X=1=2'), /must not contain "="/);
  usage(() => parseNetFlag('a:X=1;X=2'), /"X" of network "a" is given twice/);
});

test('--port: forms and defaults', () => {
  assert.deepEqual(parsePortFlag('8080:80'), { hostPort: 8080, podPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePortFlag('127.0.0.1:18080:80'), { hostIP: '127.0.0.1', hostPort: 18080, podPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePortFlag('53:53/udp'), { hostPort: 53, podPort: 53, protocol: 'udp' });
  assert.deepEqual(parsePortFlag('[::1]:8080:80/TCP'), { hostIP: '::1', hostPort: 8080, podPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePortFlag('0.0.0.0:1:65535'), { hostPort: 1, podPort: 65535, protocol: 'tcp' });
});

test('--port: bad input names the bad part', () => {
  usage(() => parsePortFlag(''), /needs a value/);
  usage(() => parsePortFlag('80'), /not HOSTPORT:PODPORT/);
  usage(() => parsePortFlag('a:b:c:d'), /not HOSTPORT:PODPORT/);
  usage(() => parsePortFlag('0:80'), /host port 0 is out of range/);
  usage(() => parsePortFlag('8080:70000'), /pod port 70000 is out of range/);
  usage(() => parsePortFlag('http:80'), /host port "http" is not a port number/);
  usage(() => parsePortFlag('8080:80/sctp'), /protocol "sctp"/);
  usage(() => parsePortFlag('300.1.1.1:80:80'), /"300\.1\.1\.1" is not an IPv4 address/);
  usage(() => parsePortFlag('[zz]:80:80'), /"zz" is not an IPv6 address/);
  usage(() => parsePortFlag('-1:80'), /not a port number/);
});

test('/proc/net addresses decode', () => {
  assert.equal(decodeProcAddress('0100007F'), '127.0.0.1');
  assert.equal(decodeProcAddress('00000000'), '0.0.0.0');
  assert.equal(decodeProcAddress('00000000000000000000000000000000'), '::');
  assert.equal(decodeProcAddress('0000000000000000FFFF00000100007F'), '127.0.0.1');
  assert.equal(decodeProcAddress('00000000000000000000000001000000'), '0:0:0:0:0:0:0:1');
});

test('results of 1.0.0, 0.4.0 and 0.2.0 plugins summarize alike', () => {
  const v1 = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'br0', mac: 'aa' }, { name: 'veth1', mac: 'bb' }, { name: 'eth0', mac: 'cc', sandbox: '/ns' }],
    ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 2 }, { address: '10.9.9.9/24', interface: 0 }],
    dns: { nameservers: ['10.0.0.1'], search: [] },
  };
  assert.deepEqual(summarizeResult('n', 'eth0', v1), { name: 'n', interface: 'eth0', ips: ['10.0.0.2/24'], gateway: '10.0.0.1', mac: 'cc', dns: { nameservers: ['10.0.0.1'] } });
  const v04 = { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.3/24', gateway: '10.0.0.1' }] };
  assert.deepEqual(summarizeResult('n', 'eth1', v04), { name: 'n', interface: 'eth1', ips: ['10.0.0.3/24'], gateway: '10.0.0.1' });
  const v02 = { cniVersion: '0.2.0', ip4: { ip: '10.0.0.4/24', gateway: '10.0.0.1' } };
  assert.deepEqual(summarizeResult('n', 'eth0', v02), { name: 'n', interface: 'eth0', ips: ['10.0.0.4/24'], gateway: '10.0.0.1' });
  assert.deepEqual(summarizeResult('n', 'eth0', 'garbage'), { name: 'n', interface: 'eth0', ips: [] });
});

test('configs: single .conf wrapped, hostile plugin types and versions refused', () => {
  const one = parseConfig('/x/a.conf', JSON.stringify({ cniVersion: '0.3.1', name: 'a', type: 'bridge', bridge: 'b' }));
  assert.equal(one.plugins.length, 1);
  assert.equal(one.plugins[0]!.type, 'bridge');
  assert.equal(one.plugins[0]!.bridge, 'b');
  assert.equal('name' in one.plugins[0]!, false);
  const bad = (text: string, pattern: RegExp) =>
    assert.throws(() => parseConfig('/x/bad.conflist', text), (err: unknown) => isGantryError(err, 'CONFIG_INVALID') && err.message.includes('/x/bad.conflist') && pattern.test(err.message));
  bad('{', /not valid JSON/);
  bad('[]', /not a JSON object/);
  bad(JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [{ type: '../../bin/sh' }] }), /not a plain plugin name/);
  bad(JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [] }), /"plugins" is missing or empty/);
  bad(JSON.stringify({ cniVersion: '9.9.9', name: 'x', plugins: [{ type: 'bridge' }] }), /cniVersion "9\.9\.9" is not supported/);
  bad(JSON.stringify({ cniVersion: '1.0.0', name: 'a/b', plugins: [{ type: 'bridge' }] }), /not a valid network name/);
  bad(JSON.stringify({ name: 'x', plugins: [{ type: 'bridge' }] }), /no "cniVersion"/);
});
