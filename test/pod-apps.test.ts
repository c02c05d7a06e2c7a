/**
 * Changing a running pod from the CLI (what the CRI needs): `app add` +
 * `app start` joins the pod without restarting the first app, `enter` runs a
 * command inside an app, `app stop` and `app rm` take one app away.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gantry, tempDir } from './lib/cli.js';
import { fixture } from './lib/fixtures.js';

interface Status { state: string; apps: { name: string; state: string; pid?: number; exitCode?: number }[] }

async function status(base: string[], uuid: string): Promise<Status> {
  const r = await gantry([...base, '--format', 'json', 'status', uuid]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
}

test('app add/start/stop/rm and enter on a running pod', async () => {
  const { dir, cleanup } = tempDir();
  const base = ['--dir', dir];
  try {
    const image = `oci:${await fixture('busybox')}:latest`;
    const run = await gantry([...base, 'run', '-d', '--net=none', '--hostname', 'shared', image, '--name', 'first', '--exec', '/bin/sleep', '--', '60']);
    assert.equal(run.code, 0, run.stderr);
    const uuid = run.stdout.trim();
    const firstPid = (await status(base, uuid)).apps.find((a) => a.name === 'first')!.pid;
    assert.ok(firstPid);

    const add = await gantry([...base, 'app', 'add', uuid, image, '--name', 'second', '--exec', '/bin/sleep', '--', '60']);
    assert.equal(add.code, 0, add.stderr);
    assert.equal((await gantry([...base, 'app', 'start', uuid, '--app', 'second'])).code, 0);
    const both = await status(base, uuid);
    assert.deepEqual(both.apps.map((a) => [a.name, a.state]).sort(), [['first', 'running'], ['second', 'running']]);
    assert.equal(both.apps.find((a) => a.name === 'first')!.pid, firstPid, 'the first app was not restarted');

    // The new app shares the pod's UTS namespace; enter runs inside its rootfs.
    const host = await gantry([...base, 'enter', '--app', 'second', uuid, '/bin/hostname']);
    assert.equal(host.code, 0, host.stderr);
    assert.equal(host.stdout.trim(), 'shared');
    const code = await gantry([...base, 'enter', '--app', 'first', uuid, '/bin/sh', '-c', 'test -x /bin/busybox && exit 4']);
    assert.equal(code.code, 4);

    assert.equal((await gantry([...base, 'app', 'stop', uuid, '--app', 'second', '--timeout=1s'])).code, 0);
    assert.equal((await status(base, uuid)).apps.find((a) => a.name === 'second')!.state, 'exited');
    assert.equal((await gantry([...base, 'app', 'rm', uuid, '--app', 'second'])).code, 0);
    const after = await status(base, uuid);
    assert.deepEqual(after.apps.map((a) => a.name), ['first']);
    assert.equal(after.apps[0]!.state, 'running');

    const unknown = await gantry([...base, 'app', 'start', uuid, '--app', 'nosuch']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /nosuch/);
    for (const verb of ['start', 'stop', 'rm']) {
      const noApp = await gantry([...base, 'app', verb, uuid]);
      assert.equal(noApp.code, 2, `app ${verb} without --app: ${noApp.stderr}`);
      assert.match(noApp.stderr, new RegExp(`app ${verb} takes one pod UUID and --app NAME`));
    }

    assert.equal((await gantry([...base, 'stop', '--force', uuid])).code, 0);
    const enterStopped = await gantry([...base, 'enter', uuid, '/bin/true']);
    assert.equal(enterStopped.code, 12, enterStopped.stderr);
  } finally {
    await gantry([...base, 'gc', '--grace-period=0']);
    cleanup();
  }
});
