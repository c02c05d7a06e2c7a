/**
 * Resource limits seen from the CLI: a memory limit below what the app needs
 * gets it OOM-killed, the exit code says so (137) and `status` records it, in
 * the foreground and for a detached pod; the pids limit holds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gantry, tempDir } from './lib/cli.js';
import { fixture } from './lib/fixtures.js';

const HOG = 'x=0123456789abcdef; while true; do x="$x$x"; done';

async function waitExited(base: string[], uuid: string): Promise<{ apps: { oomKilled?: boolean; exitCode?: number }[] }> {
  for (let i = 0; i < 100; i++) {
    const s = JSON.parse((await gantry([...base, '--format', 'json', 'status', uuid])).stdout) as { state: string; apps: { oomKilled?: boolean; exitCode?: number }[] };
    if (s.state === 'exited') return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`pod ${uuid} did not exit within 10 s`);
}

test('an app over its memory limit is OOM-killed and status says so', async () => {
  const { dir, cleanup } = tempDir();
  const base = ['--dir', dir];
  try {
    const image = `oci:${await fixture('busybox')}:latest`;
    const fg = await gantry([...base, 'run', '--net=none', '--memory=16M', image, '--exec', '/bin/sh', '--', '-c', HOG]);
    assert.equal(fg.code, 137, fg.stderr);
    assert.match(fg.stderr, /OOM/);

    const bg = await gantry([...base, 'run', '-d', '--net=none', '--memory=16M', image, '--exec', '/bin/sh', '--', '-c', HOG]);
    assert.equal(bg.code, 0, bg.stderr);
    const status = await waitExited(base, bg.stdout.trim());
    assert.equal(status.apps[0]!.oomKilled, true, JSON.stringify(status));
    assert.equal(status.apps[0]!.exitCode, 137);

    const pids = await gantry([...base, 'run', '--net=none', '--pids-limit=8', image, '--exec', '/bin/sh', '--', '-c',
      'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; echo all-started']);
    assert.notEqual(pids.code, 0);
    assert.doesNotMatch(pids.stdout, /all-started/);
    assert.match(pids.stderr, /can't fork|Resource temporarily unavailable/);
  } finally {
    await gantry([...base, 'gc', '--grace-period=0']);
    cleanup();
  }
});
