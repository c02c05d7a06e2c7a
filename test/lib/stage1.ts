/**
 * What stage1 tests share: a busybox "image layer" made from the host's
 * busybox-static, a temp --dir per test, and the checks that a pod left no
 * cgroup and no runtime state behind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createContext, type Context, type InsecureCheck } from '../../src/context.js';
import { detectCgroups } from '../../src/stage1/ns/cgroups.js';
import { mountsUnder } from '../../src/sys/mounts.js';

const APPLETS = ['sh', 'echo', 'cat', 'id', 'hostname', 'true', 'false', 'sleep', 'env', 'pwd', 'touch', 'wc', 'grep', 'head', 'ls', 'kill', 'ps', 'httpd', 'wget', 'mkdir'];

/** A minimal image layer: busybox, users root and app (uid 1000, also in group extra), an image marker file. */
function makeLayer(dir: string): string {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'home/app']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  fs.writeFileSync(path.join(dir, 'etc/image-marker'), 'from-the-image\n');
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  return dir;
}

export interface Stage1Env { base: string; ctx: Context; layer: string }

export function stage1Env(prefix: string, insecure: InsecureCheck[] = []): Stage1Env {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { base, layer: makeLayer(path.join(base, 'layer')), ctx: createContext({ dir: path.join(base, 'state'), insecure }) };
}

/** No cgroup of the pod in any hierarchy, no crun/runc state of gantry's left under the test's --dir. */
export function assertNoRuntimeLeft(env: Stage1Env, uuid: string): void {
  for (const h of detectCgroups().hierarchies) {
    assert.equal(fs.existsSync(path.join(h.mountPoint, 'gantry', uuid)), false, `no cgroup left in ${h.mountPoint}`);
  }
  for (const rt of ['crun', 'runc']) {
    const root = path.join(env.base, 'state/runtime', rt);
    if (fs.existsSync(root)) assert.deepEqual(fs.readdirSync(root).filter((n) => n.startsWith('gantry-')), [], `no ${rt} state left`);
  }
}

export function teardown(env: Stage1Env): void {
  assert.deepEqual(mountsUnder(env.base), []);
  fs.rmSync(env.base, { recursive: true, force: true });
}
