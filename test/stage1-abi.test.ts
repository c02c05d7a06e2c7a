/** appCommand: the one rule for an app's argv that stage0 (checks, cat-manifest) and stage1 (the OCI spec) share. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appCommand } from '../src/stage1/abi.js';

test('exec replaces the entrypoint and drops Cmd; args replace Cmd; both together stack', () => {
  const config = { Entrypoint: ['/bin/ep'], Cmd: ['--default'] };
  assert.deepEqual(appCommand({ config }), ['/bin/ep', '--default']);
  assert.deepEqual(appCommand({ config, args: ['--mine'] }), ['/bin/ep', '--mine']);
  assert.deepEqual(appCommand({ config, exec: ['/bin/sh'] }), ['/bin/sh']);
  assert.deepEqual(appCommand({ config, exec: ['/bin/sh'], args: ['-c', 'true'] }), ['/bin/sh', '-c', 'true']);
  assert.deepEqual(appCommand({ config: {} }), []);
  assert.deepEqual(appCommand({ config: { Entrypoint: null, Cmd: ['/bin/only-cmd'] } }), ['/bin/only-cmd']);
});
