/**
 * The audit log as a user meets it: fetch, run, stop, rm and gc through the
 * CLI each leave a record, the chain verifies, and each kind of tampering is
 * reported with its position.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { gantry, tempDir } from './lib/cli.js';
import { fixture } from './lib/fixtures.js';

test('fetch, run, stop, rm and gc are audited; edits, deletions, reordering and truncation are caught', async () => {
  const { dir, cleanup } = tempDir('gantry-audit-');
  const base = ['--dir', dir];
  try {
    const image = `oci:${await fixture('busybox')}:latest`;
    assert.equal((await gantry([...base, 'fetch', image])).code, 0);
    assert.equal((await gantry([...base, 'run', '--net=none', image, '--exec', '/bin/true'])).code, 0);
    const detached = await gantry([...base, 'run', '-d', '--net=none', image, '--exec', '/bin/sleep', '--', '30']);
    assert.equal(detached.code, 0, detached.stderr);
    const uuid = detached.stdout.trim();
    assert.equal((await gantry([...base, 'stop', '--force', uuid])).code, 0);
    assert.equal((await gantry([...base, 'rm', uuid])).code, 0);
    assert.equal((await gantry([...base, 'gc', '--grace-period=0'])).code, 0);

    const shown = await gantry([...base, '--format', 'json', 'audit', 'show']);
    assert.equal(shown.code, 0, shown.stderr);
    const events = (JSON.parse(shown.stdout) as { event: string }[]).map((r) => r.event);
    for (const e of ['fetch', 'run', 'stop', 'rm', 'gc']) assert.ok(events.includes(e), `no ${e} record in ${events.join(',')}`);
    assert.equal((await gantry([...base, 'audit', 'verify'])).code, 0);

    const log = path.join(dir, 'audit', 'log.jsonl');
    const original = fs.readFileSync(log, 'utf8');
    const lines = original.trimEnd().split('\n');
    assert.ok(lines.length >= 5);
    const tamperings: [string, string, RegExp][] = [
      ['edited', [lines[0], lines[1]!.replace(/"subject":"[^"]*"/, '"subject":"someone-else"'), ...lines.slice(2)].join('\n') + '\n', /line 2/],
      ['deleted', [lines[0], ...lines.slice(2)].join('\n') + '\n', /line 2/],
      ['reordered', [lines[0], lines[2], lines[1], ...lines.slice(3)].join('\n') + '\n', /line 2/],
      ['truncated', lines.slice(0, -1).join('\n') + '\n', new RegExp(`line ${lines.length}`)],
    ];
    for (const [kind, text, position] of tamperings) {
      fs.writeFileSync(log, text);
      const v = await gantry([...base, 'audit', 'verify']);
      assert.notEqual(v.code, 0, `${kind} tampering not detected`);
      assert.match(v.stdout + v.stderr, position, `${kind}: position not reported: ${v.stdout}${v.stderr}`);
    }
    fs.writeFileSync(log, original);
    assert.equal((await gantry([...base, 'audit', 'verify'])).code, 0);
  } finally {
    cleanup();
  }
});
