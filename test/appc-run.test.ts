/**
 * ACIs run like any other image: the app section of the image manifest
 * (exec, user/group, environment, working directory, isolators, mount
 * points), dependencies layered below the image, pathWhitelist, and
 * `image export --format aci` round trips. Real crun, ACIs built here with
 * the host's static busybox.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gantry, tempDir } from './lib/cli.js';
import { fixture, gzip, tarBuffer, type TarEntry } from './lib/fixtures.js';

const BUSYBOX = fs.readFileSync('/bin/busybox');

interface AciSpec {
  name: string;
  app?: Record<string, unknown>;
  labels?: { name: string; value: string }[];
  dependencies?: unknown[];
  pathWhitelist?: string[];
  withBusybox?: boolean;
  files?: Record<string, string>;
}

async function writeAci(dir: string, file: string, spec: AciSpec): Promise<string> {
  const manifest = {
    acKind: 'ImageManifest',
    acVersion: '0.8.11',
    name: spec.name,
    labels: spec.labels ?? [{ name: 'version', value: '1.0' }],
    ...(spec.app ? { app: spec.app } : {}),
    ...(spec.dependencies ? { dependencies: spec.dependencies } : {}),
    ...(spec.pathWhitelist ? { pathWhitelist: spec.pathWhitelist } : {}),
  };
  const entries: TarEntry[] = [
    { name: 'manifest', content: JSON.stringify(manifest) },
    { name: 'rootfs/', type: 'directory' },
  ];
  const dirs = new Set<string>();
  const addDirs = (p: string) => {
    const parts = p.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ name: `rootfs/${d}/`, type: 'directory' });
      }
    }
  };
  if (spec.withBusybox) {
    addDirs('bin/busybox');
    entries.push({ name: 'rootfs/bin/busybox', content: BUSYBOX, mode: 0o755 });
    entries.push({ name: 'rootfs/bin/sh', type: 'symlink', linkname: 'busybox' });
  }
  for (const [p, content] of Object.entries(spec.files ?? {})) {
    if (p.endsWith('/')) {
      addDirs(`${p}x`);
      continue;
    }
    addDirs(p);
    entries.push({ name: `rootfs/${p}`, content, mode: 0o755 });
  }
  const target = path.join(dir, file);
  fs.writeFileSync(target, gzip(await tarBuffer(entries)));
  return target;
}

const run = (dir: string, args: string[]) => gantry(['--dir', dir, '--insecure-options=image', ...args], { timeoutMs: 90_000 });

describe('appc images', () => {
  let tmp: { dir: string; cleanup: () => void };
  let state: string;
  before(() => {
    tmp = tempDir('gantry-appc-');
    state = path.join(tmp.dir, 'state');
  });
  after(() => tmp.cleanup());

  it('runs the fixture ACI with its own exec and environment', async () => {
    const aci = await fixture('busybox-aci');
    const r = await run(state, ['run', '--net=none', aci, '--exec', '/bin/sh', '--', '-c', 'echo "path=$PATH"']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /path=\/usr\/local\/sbin:/);
  });

  it('honours exec, user, group, environment, working directory and the memory isolator', async () => {
    const aci = await writeAci(tmp.dir, 'app.aci', {
      name: 'localhost/appc-app',
      withBusybox: true,
      files: { 'work/': '' },
      app: {
        exec: ['/bin/busybox', 'sh', '-c',
          'echo "greeting=$GREETING"; echo "uid=$(busybox id -u) gid=$(busybox id -g)"; echo "cwd=$(busybox pwd)"; '
          + 'echo "mem=$(busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || busybox cat /sys/fs/cgroup/memory.max)"'],
        user: '1000',
        group: '1001',
        workingDirectory: '/work',
        environment: [{ name: 'GREETING', value: 'hello from appc' }],
        isolators: [{ name: 'resource/memory', value: { limit: '48Mi' } }, { name: 'resource/cpu', value: { limit: '500m' } }],
      },
    });
    const r = await run(state, ['run', '--net=none', aci]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /greeting=hello from appc/);
    assert.match(r.stdout, /uid=1000 gid=1001/);
    assert.match(r.stdout, /cwd=\/work/);
    assert.match(r.stdout, new RegExp(`mem=${48 * 1024 * 1024}`));
  });

  it('applies a capability retain-set as the whole set', async () => {
    const aci = await writeAci(tmp.dir, 'caps.aci', {
      name: 'localhost/appc-caps',
      withBusybox: true,
      app: {
        exec: ['/bin/busybox', 'grep', 'CapBnd', '/proc/self/status'],
        user: '0', group: '0',
        isolators: [{ name: 'os/linux/capabilities-retain-set', value: { set: ['CAP_CHOWN', 'CAP_KILL'] } }],
      },
    });
    const r = await run(state, ['run', '--net=none', aci]);
    assert.equal(r.code, 0, r.stderr);
    // CAP_CHOWN is bit 0, CAP_KILL bit 5.
    assert.match(r.stdout, /CapBnd:\s+0*21\s*$/m);
  });

  it('fills an image mount point with an empty volume, or with the pod volume of that name', async () => {
    const aci = await writeAci(tmp.dir, 'mp.aci', {
      name: 'localhost/appc-mp',
      withBusybox: true,
      app: {
        exec: ['/bin/busybox', 'sh', '-c', 'busybox ls /data; echo x > /data/w && echo written'],
        user: '0', group: '0',
        mountPoints: [{ name: 'data', path: '/data' }],
      },
    });
    const empty = await run(state, ['run', '--net=none', aci]);
    assert.equal(empty.code, 0, empty.stderr);
    assert.match(empty.stdout, /written/);
    const host = path.join(tmp.dir, 'hostdata');
    fs.mkdirSync(host);
    fs.writeFileSync(path.join(host, 'from-host'), '');
    const filled = await run(state, ['run', '--net=none', '--volume', `data,kind=host,source=${host}`, aci]);
    assert.equal(filled.code, 0, filled.stderr);
    assert.match(filled.stdout, /from-host/);
    assert.ok(fs.existsSync(path.join(host, 'w')));
  });

  it('refuses a manifest with a bad isolator value, naming the field', async () => {
    const aci = await writeAci(tmp.dir, 'badiso.aci', {
      name: 'localhost/appc-badiso',
      withBusybox: true,
      app: { exec: ['/bin/busybox', 'true'], user: '0', group: '0', isolators: [{ name: 'resource/memory', value: { limit: 'lots' } }] },
    });
    const r = await run(state, ['run', '--net=none', aci]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /resource\/memory limit "lots" is not a quantity/);
  });

  it('layers a dependency below the image that needs it', async () => {
    const base = await writeAci(tmp.dir, 'base.aci', {
      name: 'localhost/appc-base', withBusybox: true, files: { 'etc/msg': 'from base\n', 'etc/base-only': 'base only\n' },
    });
    const app = await writeAci(tmp.dir, 'dependent.aci', {
      name: 'localhost/appc-dependent',
      files: { 'app/run.sh': 'busybox cat /etc/msg /etc/base-only\n', 'etc/msg': 'from app\n' },
      dependencies: [{ imageName: 'localhost/appc-base', labels: [{ name: 'version', value: '1.0' }] }],
      app: { exec: ['/bin/busybox', 'sh', '/app/run.sh'], user: '0', group: '0' },
    });
    const fetched = await run(state, ['fetch', base]);
    assert.equal(fetched.code, 0, fetched.stderr);
    const r = await run(state, ['run', '--net=none', app]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from app\nbase only\n');
  });

  it('refuses a missing dependency and a cycle with clear errors', async () => {
    const missing = await writeAci(tmp.dir, 'missing.aci', {
      name: 'localhost/appc-orphan', withBusybox: true,
      dependencies: [{ imageName: 'localhost/appc-nonexistent-dep' }],
      app: { exec: ['/bin/busybox', 'true'], user: '0', group: '0' },
    });
    const r1 = await run(state, ['fetch', missing]);
    assert.notEqual(r1.code, 0);
    assert.match(r1.stderr, /depends on localhost\/appc-nonexistent-dep, which is not in the store and could not be fetched/);
    const cyclic = await writeAci(tmp.dir, 'cyclic.aci', {
      name: 'localhost/appc-cyclic', withBusybox: true,
      dependencies: [{ imageName: 'localhost/appc-cyclic' }],
      app: { exec: ['/bin/busybox', 'true'], user: '0', group: '0' },
    });
    const r2 = await run(state, ['fetch', cyclic]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /dependency cycle localhost\/appc-cyclic -> localhost\/appc-cyclic/);
    const list = await run(state, ['image', 'list', '--format', 'json']);
    assert.doesNotMatch(list.stdout, /appc-orphan|appc-cyclic/);
  });

  it('hides what pathWhitelist leaves out', async () => {
    const aci = await writeAci(tmp.dir, 'wl.aci', {
      name: 'localhost/appc-whitelist', withBusybox: true,
      files: { 'keep/a': 'a\n', 'drop/b': 'b\n', 'etc/x': 'x\n', 'lib/keepdir/c': 'c\n' },
      pathWhitelist: ['/bin/busybox', '/keep/a', '/lib/keepdir'],
      app: { exec: ['/bin/busybox', 'sh', '-c', 'busybox ls /keep /drop /lib/keepdir; busybox test -e /etc/x && echo has-x; busybox test -e /bin/sh && echo has-sh; echo done'], user: '0', group: '0' },
    });
    const r = await run(state, ['run', '--net=none', aci]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^a$/m);
    assert.match(r.stdout, /^c$/m);
    assert.doesNotMatch(r.stdout, /^b$/m);
    assert.doesNotMatch(r.stdout, /has-x|has-sh/);
    assert.match(r.stdout, /done/);
  });

  it('exports an OCI image and an appc image with dependencies as ACIs that fetch and run elsewhere', async () => {
    const oci = await fixture('busybox');
    assert.equal((await run(state, ['fetch', `oci:${oci}:latest`])).code, 0);
    const out = path.join(tmp.dir, 'busybox-export.aci');
    const ex = await run(state, ['image', 'export', '--format', 'aci', `oci:${oci}:latest`, out]);
    if (ex.code !== 0) {
      // The store may know the image by its canonical name only.
      const list = JSON.parse((await run(state, ['image', 'list', '--format', 'json'])).stdout) as { id: string; names: string[] }[];
      const img = list.find((i) => i.names.some((n) => n.includes('busybox') && !n.startsWith('example.com')));
      assert.ok(img, ex.stderr);
      const again = await run(state, ['image', 'export', '--format', 'aci', img.id, out]);
      assert.equal(again.code, 0, again.stderr);
    }
    const manifest = await readManifest(out);
    assert.equal(manifest.acKind, 'ImageManifest');
    const other = path.join(tmp.dir, 'other');
    const r = await run(other, ['run', '--net=none', out, '--exec', '/bin/sh', '--', '-c', 'echo exported-ok']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /exported-ok/);

    const flat = path.join(tmp.dir, 'dependent-flat.aci');
    const ex2 = await run(state, ['image', 'export', '--format', 'aci', 'localhost/appc-dependent:1.0', flat]);
    assert.equal(ex2.code, 0, ex2.stderr);
    const m2 = await readManifest(flat);
    assert.equal(m2.dependencies, undefined);
    const third = path.join(tmp.dir, 'third');
    const r2 = await run(third, ['run', '--net=none', flat]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stdout, 'from app\nbase only\n');
  });

  it('refuses an unknown export format', async () => {
    const r = await run(state, ['image', 'export', '--format', 'zip', 'localhost/appc-base:1.0', path.join(tmp.dir, 'x.zip')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown format/);
  });
});

async function readManifest(aci: string): Promise<Record<string, unknown>> {
  const { execFileSync } = await import('node:child_process');
  return JSON.parse(execFileSync('tar', ['-xOf', aci, 'manifest'], { encoding: 'utf8' })) as Record<string, unknown>;
}
