/**
 * Pods on disk through the CLI, as root, with real crun: prepare and
 * run-prepared (and two of them racing), detached pods seen by list/status/
 * logs and ended by stop, several apps with `---`, kill -9 of a foreground
 * `gantry run` cleaned up by gc, images kept while pods use them, and the
 * bad inputs. After every test nothing of its pods is left: no mount under
 * its dir, no cgroup gantry/<uuid>, no process.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { detectCgroups } from '../src/stage1/ns/cgroups.js';
import { GANTRY_MAIN, gantry, tempDir, type CliResult } from './lib/cli.js';
import { fixture, tarBuffer, writeOciLayout } from './lib/fixtures.js';
import { mountsUnder } from '../src/sys/mounts.js';

const IMAGE = 'localhost/busybox:latest';
let busybox: string;

before(async () => {
  busybox = await fixture('busybox');
});

interface T { dir: string; cleanup: () => void; g: (args: string[], timeoutMs?: number) => Promise<CliResult> }

async function setup(): Promise<T> {
  const t = tempDir('gantry-pod-');
  const g = (args: string[], timeoutMs = 60_000) => gantry(['--dir', t.dir, ...args], { timeoutMs });
  const f = await g(['fetch', `oci:${busybox}:latest`]);
  assert.equal(f.code, 0, f.stderr);
  return { ...t, g };
}

/** PIDs whose command line contains `marker` (the apps' own unique words). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(marker)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

async function assertNothingLeft(t: T, uuids: string[], marker?: string): Promise<void> {
  const gc = await t.g(['gc', '--grace-period=0']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.deepEqual(mountsUnder(t.dir), [], 'no mounts left');
  for (const uuid of uuids) {
    for (const h of detectCgroups().hierarchies) {
      assert.equal(fs.existsSync(path.join(h.mountPoint, 'gantry', uuid)), false, `no cgroup ${uuid} in ${h.mountPoint}`);
    }
  }
  if (marker) assert.deepEqual(processesWith(marker), [], 'no process of the pod left');
  for (const s of ['run', 'prepare', 'prepared', 'exited-garbage', 'garbage', 'embryo']) {
    const d = path.join(t.dir, 'pods', s);
    if (fs.existsSync(d)) assert.deepEqual(fs.readdirSync(d), [], `pods/${s} is empty`);
  }
}

/** Always leaves the machine clean (a failed test's pods are collected first); the assertions live in assertNothingLeft. */
async function teardown(t: T): Promise<void> {
  if (mountsUnder(t.dir).length > 0) await t.g(['gc', '--grace-period=0']);
  const left = mountsUnder(t.dir);
  if (left.length === 0) t.cleanup();
  assert.deepEqual(left, [], 'no mounts left after the test');
}

async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    if (await fn()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

interface ListEntry { uuid: string; state: string; apps: { name: string; state?: string; exitCode?: number; imageId: string }[] }
interface StatusView { uuid: string; state: string; apps: { name: string; state: string; exitCode?: number; pid?: number }[] }

async function listJson(t: T): Promise<ListEntry[]> {
  const r = await t.g(['list', '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ListEntry[];
}

async function statusJson(t: T, uuid: string): Promise<StatusView> {
  const r = await t.g(['status', '--format', 'json', uuid]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusView;
}

describe('pods on disk', { concurrency: false }, () => {
  test('prepare + run-prepared: exit code passes through; a pod runs once', async () => {
    const t = await setup();
    try {
      const p = await t.g(['prepare', '--net=none', IMAGE, '--exec', '/bin/sh', '--', '-c', 'echo prepared-ran; exit 7']);
      assert.equal(p.code, 0, p.stderr);
      const uuid = p.stdout.trim();
      assert.match(uuid, /^[0-9a-f-]{36}$/);
      assert.equal((await listJson(t)).find((x) => x.uuid === uuid)?.state, 'prepared');
      const m = await t.g(['cat-manifest', uuid.slice(0, 8)]);
      assert.equal(m.code, 0, m.stderr);
      const manifest = JSON.parse(m.stdout) as { acKind: string; apps: { app: { exec: string[] } }[] };
      assert.equal(manifest.acKind, 'PodManifest');
      assert.deepEqual(manifest.apps[0]!.app.exec, ['/bin/sh', '-c', 'echo prepared-ran; exit 7']);

      const r = await t.g(['run-prepared', uuid]);
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stdout, /prepared-ran/);
      const again = await t.g(['run-prepared', uuid]);
      assert.equal(again.code, 12, 'POD_STATE: a pod runs once');
      const s = await statusJson(t, uuid);
      assert.equal(s.state, 'exited');
      assert.equal(s.apps[0]!.exitCode, 7);
      await assertNothingLeft(t, [uuid]);
    } finally {
      await teardown(t);
    }
  });

  test('two concurrent run-prepared of one pod: exactly one runs, the other gets POD_STATE', async () => {
    const t = await setup();
    try {
      const uuid = (await t.g(['prepare', '--net=none', IMAGE, '--exec', '/bin/sh', '--', '-c', 'sleep 1; echo once'])).stdout.trim();
      const [a, b] = await Promise.all([t.g(['run-prepared', uuid]), t.g(['run-prepared', uuid])]);
      const codes = [a.code, b.code].sort();
      assert.deepEqual(codes, [0, 12], `${a.stderr}\n${b.stderr}`);
      assert.equal((a.stdout + b.stdout).match(/once/g)?.length, 1);
      await assertNothingLeft(t, [uuid]);
    } finally {
      await teardown(t);
    }
  });

  test('detached pod: list/status while running, logs -f follows, rm refuses, stop ends it', async () => {
    const t = await setup();
    const marker = 'sleep 4711';
    try {
      const d = await t.g(['run', '-d', '--net=none', IMAGE, '--exec', '/bin/sh', '--', '-c', `echo hello-out; echo hello-err >&2; exec ${marker}`]);
      assert.equal(d.code, 0, d.stderr);
      const uuid = d.stdout.trim();
      assert.match(uuid, /^[0-9a-f-]{36}$/);
      const l = (await listJson(t)).find((x) => x.uuid === uuid);
      assert.equal(l?.state, 'running');
      const s = await statusJson(t, uuid);
      assert.equal(s.state, 'running');
      assert.equal(s.apps[0]!.state, 'running');
      assert.ok((s.apps[0]!.pid ?? 0) > 0, 'a running app has a pid');
      await waitFor('the app\'s output in the log', async () => (await t.g(['logs', uuid])).stdout.includes('hello-out'));
      const logs = await t.g(['logs', uuid]);
      assert.match(logs.stdout, /hello-out/);
      assert.match(logs.stderr, /hello-err/);

      const rm = await t.g(['rm', uuid]);
      assert.equal(rm.code, 12, 'rm refuses a running pod');
      const waitShort = await t.g(['status', '--wait=300ms', uuid]);
      assert.equal(waitShort.code, 12, 'status --wait times out on a running pod');

      // logs -f runs until the pod exits.
      const follow = t.g(['logs', '-f', uuid], 30_000);
      await new Promise((r) => setTimeout(r, 300));
      const stop = await t.g(['stop', '--timeout=1s', uuid], 30_000);
      assert.equal(stop.code, 0, stop.stderr);
      const f = await follow;
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, /hello-out/);
      const after = await statusJson(t, uuid);
      assert.equal(after.state, 'exited');
      assert.equal(after.apps[0]!.state, 'exited');
      assert.ok(after.apps[0]!.exitCode !== undefined && after.apps[0]!.exitCode !== 0, 'stopped app has a non-zero exit code');
      const stopAgain = await t.g(['stop', uuid]);
      assert.equal(stopAgain.code, 12, 'stop of an exited pod is POD_STATE');
      const enter = await t.g(['enter', uuid, 'true']);
      assert.equal(enter.code, 12, 'enter of an exited pod is POD_STATE');
      const rm2 = await t.g(['rm', uuid]);
      assert.equal(rm2.code, 0, rm2.stderr);
      await assertNothingLeft(t, [uuid], marker);
    } finally {
      await teardown(t);
    }
  });

  test('two apps with ---: both run, the exit code is the first non-zero', async () => {
    const t = await setup();
    try {
      const r = await t.g(['run', '--net=none', IMAGE, '--name', 'first', '--exec', '/bin/sh', '--', '-c', 'echo from-first',
        '---', IMAGE, '--name', 'second', '-e', 'WHO=second', '--exec', '/bin/sh', '--', '-c', 'echo from-$WHO; exit 5']);
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stdout, /from-first/);
      assert.match(r.stdout, /from-second/);
      const [pod] = await listJson(t);
      assert.deepEqual(pod!.apps.map((a) => a.name), ['first', 'second']);
      const logs = await t.g(['logs', '--app', 'second', pod!.uuid]);
      assert.match(logs.stdout, /from-second/);
      assert.doesNotMatch(logs.stdout, /from-first/);
      const bad = await t.g(['run', IMAGE, '---', IMAGE, '--net=host']);
      assert.equal(bad.code, 2, 'pod flags after --- are refused');
      await assertNothingLeft(t, [pod!.uuid]);
    } finally {
      await teardown(t);
    }
  });

  test('kill -9 of a foreground gantry run: list says exited, gc cleans mounts, cgroups, processes', async () => {
    const t = await setup();
    const marker = 'sleep 4712';
    try {
      const child = spawn(process.execPath, [GANTRY_MAIN, '--dir', t.dir, 'run', '--net=none', IMAGE, '--exec', '/bin/sh', '--', '-c', `echo up-and-running; exec ${marker}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      const exited = new Promise((r) => child.on('exit', r));
      try {
        await waitFor('the app to print its marker', () => out.includes('up-and-running'));
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      const [pod] = await listJson(t);
      assert.equal(pod!.state, 'exited', 'a pod whose gantry died is exited');
      assert.ok(processesWith(marker).length > 0, 'the app outlived its gantry (gc must end it)');
      await assertNothingLeft(t, [pod!.uuid], marker);
    } finally {
      await teardown(t);
    }
  });

  test('image gc and image rm keep images pods use', async () => {
    const t = await setup();
    try {
      const uuid = (await t.g(['prepare', '--net=none', IMAGE, '--exec', 'true'])).stdout.trim();
      const gc = await t.g(['image', 'gc', '--grace-period=0']);
      assert.equal(gc.code, 0, gc.stderr);
      const images = await t.g(['image', 'list']);
      assert.match(images.stdout, /busybox/, 'the image of a prepared pod survives image gc');
      const rm = await t.g(['image', 'rm', IMAGE]);
      assert.equal(rm.code, 12, 'image rm refuses an image a pod uses');
      const run = await t.g(['run-prepared', uuid]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal((await t.g(['rm', uuid])).code, 0);
      assert.equal((await t.g(['image', 'gc', '--grace-period=0'])).code, 0);
      assert.doesNotMatch((await t.g(['image', 'list'])).stdout, /busybox/, 'without pods, image gc removes it');
      await assertNothingLeft(t, [uuid]);
    } finally {
      await teardown(t);
    }
  });

  test('bad input: clear errors, documented exit codes, no pod left behind', async () => {
    const t = await setup();
    const uuidsSeen: string[] = [];
    try {
      // An image without Entrypoint and Cmd.
      const layout = path.join(t.dir, 'nocmd');
      await writeOciLayout(layout, { layers: [await tarBuffer([{ name: 'etc/', type: 'directory' }])], config: { config: {} } });
      assert.equal((await t.g(['fetch', `oci:${layout}:latest`])).code, 0);
      const nocmd = await t.g(['run', '--net=none', `oci:${layout}:latest`]);
      assert.equal(nocmd.code, 2, nocmd.stderr);
      assert.match(nocmd.stderr, /no command/);

      const user = await t.g(['run', '--net=none', IMAGE, '--user', 'nosuchuser', '--exec', 'true']);
      assert.equal(user.code, 14, user.stderr);
      assert.match(user.stderr, /nosuchuser/);

      for (const spec of ['data,kind=host', 'data,kind=weird,source=/tmp', '/only-one-part', '/a:relative', 'x,kind=host,source=/nonexistent-gantry-path', '/tmp:/x:rx']) {
        const v = await t.g(['run', '--net=none', IMAGE, '-v', spec, '--exec', 'true']);
        assert.equal(v.code, 2, `${spec}: ${v.stderr}`);
      }
      const mount = await t.g(['run', '--net=none', IMAGE, '--mount', 'volume=undeclared,target=/x', '--exec', 'true']);
      assert.equal(mount.code, 2, mount.stderr);
      assert.match(mount.stderr, /undeclared/);

      assert.equal((await t.g(['status', '00000000-0000-4000-8000-000000000000'])).code, 3);
      assert.equal((await t.g(['stop', 'not-a-uuid!'])).code, 3);
      assert.equal((await t.g(['run', '--net=bogus net', IMAGE])).code, 2);
      assert.equal((await t.g(['run', '--memory', 'lots', IMAGE])).code, 2);
      assert.equal((await t.g(['run', '-d', '--rm', IMAGE])).code, 2);
      // A detached start that fails: RUNTIME_ERROR, and the pod is retired (exited), nothing of it running.
      const badStart = await t.g(['run', '-d', '--net=none', IMAGE, '--exec', '/no-such-program-gantry']);
      assert.equal(badStart.code, 13, badStart.stderr);
      assert.match(badStart.stderr, /no-such-program-gantry/);
      const retired = (await listJson(t)).filter((x) => x.state !== 'prepared');
      assert.equal(retired.length, 1);
      assert.equal(retired[0]!.state, 'exited');
      assert.ok(fs.existsSync(path.join(t.dir, 'pods', 'exited-garbage', retired[0]!.uuid, 'stage1-gc-done')), 'stage1 cleaned up after the failed start');
      uuidsSeen.push(retired[0]!.uuid);
      // Pod flags after the first image are checked the same way.
      const late = await t.g(['run', '--net=none', IMAGE, '--rm', '-d', '--exec', 'true']);
      assert.equal(late.code, 2, late.stderr);
      assert.match(late.stderr, /--rm and --detach do not mix/);
      assert.equal((await t.g(['run', '--net=none', IMAGE, '-t', '-d', '--exec', 'true'])).code, 2);
      for (const verb of ['run', 'prepare']) {
        const twoTty = await t.g([verb, '--net=none', '-t', IMAGE, '--exec', 'true', '---', IMAGE, '--exec', 'true']);
        assert.equal(twoTty.code, 2, `${verb} -t with two apps: ${twoTty.stderr}`);
        assert.match(twoTty.stderr, /--interactive works with a pod of one app/);
      }

      const a = (await t.g(['prepare', '--net=none', IMAGE, '--exec', 'true'])).stdout.trim();
      const b = (await t.g(['prepare', '--net=none', IMAGE, '--exec', 'true'])).stdout.trim();
      for (const flags of [['-d', '--rm'], ['-d', '-t']]) {
        const clash = await t.g(['run-prepared', ...flags, a]);
        assert.equal(clash.code, 2, `run-prepared ${flags.join(' ')}: ${clash.stderr}`);
        assert.match(clash.stderr, /do not mix/);
      }
      assert.equal((await listJson(t)).find((x) => x.uuid === a)?.state, 'prepared', 'a refused run-prepared leaves the pod prepared');
      const stopPrepared = await t.g(['stop', a]);
      assert.equal(stopPrepared.code, 12, 'stop of a prepared pod is POD_STATE');
      // A one-character prefix shared by both, if they share it, is ambiguous.
      if (a[0] === b[0]) assert.equal((await t.g(['status', a[0]!])).code, 3);
      assert.equal((await t.g(['rm', a, b])).code, 0);
      // Several UUIDs: a failure for one is reported (as JSON with --format json), the others still go.
      const c = (await t.g(['prepare', '--net=none', IMAGE, '--exec', 'true'])).stdout.trim();
      const mixed = await t.g(['--format', 'json', 'rm', 'ffffffff-0000-4000-8000-000000000000', c]);
      assert.equal(mixed.code, 3, mixed.stderr);
      assert.deepEqual((JSON.parse(mixed.stdout) as { removed: string[] }).removed, [c]);
      assert.equal((JSON.parse(mixed.stderr.trim()) as { error: { code: string } }).error.code, 'POD_NOT_FOUND');
      await assertNothingLeft(t, [a, b, c, ...uuidsSeen]);
    } finally {
      await teardown(t);
    }
  });
});

after(() => {});
