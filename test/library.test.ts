/** The library entry (package.json "exports": "."): what an embedder imports works without the CLI. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import * as gantry from '../src/index.js';

test('the library entry exports the pull, pod and stage1 operations', () => {
  for (const name of ['createContext', 'fetchImage', 'preparePod', 'startPod', 'listPods', 'findPod', 'podStatus', 'removePod', 'gcPods', 'stage1For', 'loadStage1', 'parseReference', 'parseNetFlag'] as const) {
    assert.equal(typeof gantry[name], 'function', name);
  }
  assert.equal(typeof gantry.Store.open, 'function');
  assert.equal(gantry.EXIT_CODES.NETWORK_ERROR, 15);
});

test('library calls throw GantryError with stable codes', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-lib-'));
  try {
    const ctx = gantry.createContext({ dir: tmp, localConfig: path.join(tmp, 'conf') });
    assert.deepEqual(gantry.listPods(ctx), []);
    assert.throws(() => gantry.findPod(ctx, 'deadbeef'), (err: unknown) => gantry.isGantryError(err, 'POD_NOT_FOUND'));
    await assert.rejects(gantry.preparePod(ctx, { apps: [], net: 'none', stage1: 'ns' }, 'prepared'), (err: unknown) => gantry.isGantryError(err, 'USAGE'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
