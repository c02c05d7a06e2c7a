/**
 * stage1 ns against the real thing: overlay mounts, crun and runc, cgroups.
 * Each test builds a busybox "layer" dir, runs one pod in its own temp
 * --dir, and checks that nothing is left behind (mounts, cgroups, runtime
 * state). Needs root, crun, runc and busybox-static.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createContext } from '../src/context.js';
import type { InsecureCheck } from '../src/context.js';
import { isGantryError } from '../src/errors.js';
import type { AppSpec, PodResult, PodSpec } from '../src/stage1/abi.js';
import { nsStage1 } from '../src/stage1/ns/index.js';
import { appPaths, mountAppRootfs, removeAppDir, resolveInRoot } from '../src/stage1/ns/rootfs.js';
import { mountsUnder } from '../src/sys/mounts.js';
import { assertNoRuntimeLeft, stage1Env, teardown, type Stage1Env } from './lib/stage1.js';
import { resolveUser } from '../src/stage1/user.js';
import { detectCgroups, layoutProblems } from '../src/stage1/ns/cgroups.js';
import { buildAppSpec, readHostFacts } from '../src/stage1/ns/spec.js';

type Env = Stage1Env;
const setup = (insecure: InsecureCheck[] = []): Env => stage1Env('gantry-ns-', insecure);

function assertNothingLeft(env: Env, uuid: string): void {
  assert.deepEqual(mountsUnder(env.base), [], 'no mounts left under the test dir');
  assertNoRuntimeLeft(env, uuid);
}

interface Outcome { result: PodResult; stdout: string; stderr: string; uuid: string }

async function runOne(env: Env, app: Partial<AppSpec>, pod: Partial<PodSpec> = {}): Promise<Outcome> {
  const uuid = randomUUID();
  const outFile = path.join(env.base, `out-${uuid}`);
  const errFile = path.join(env.base, `err-${uuid}`);
  const out = fs.openSync(outFile, 'w');
  const err = fs.openSync(errFile, 'w');
  try {
    const result = await nsStage1(env.ctx).run({
      uuid,
      podDir: path.join(env.base, 'pods', uuid),
      net: 'none',
      apps: [{ name: 'app', layers: [env.layer], config: {}, ...app }],
      ...pod,
    }, { stdio: ['ignore', out, err] });
    return { result, stdout: fs.readFileSync(outFile, 'utf8'), stderr: fs.readFileSync(errFile, 'utf8'), uuid };
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
  }
}

const sh = (script: string): Partial<AppSpec> => ({ exec: ['/bin/sh', '-c', script] });
const statusField = (status: string, field: string): string | undefined => new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(status)?.[1];

test('stdout passes through and the exit code is the app\'s', async () => {
  const env = setup();
  try {
    const o = await runOne(env, sh('echo hello; echo oops >&2; exit 7'));
    assert.equal(o.stdout, 'hello\n');
    assert.equal(o.stderr, 'oops\n');
    assert.equal(o.result.exitCode, 7);
    assert.deepEqual(o.result.apps, [{ app: 'app', exitCode: 7, oomKilled: false }]);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('image entrypoint/cmd, env merge and working dir', async () => {
  const env = setup();
  try {
    const o = await runOne(env, {
      config: { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo "$FOO $BAR $HOSTNAME"; pwd; echo $PATH; echo $HOME'], Env: ['FOO=image', 'BAR=image'], WorkingDir: '/tmp' },
      env: ['BAR=override'],
    }, { hostname: 'web-1' });
    assert.equal(o.result.exitCode, 0, o.stderr);
    const lines = o.stdout.split('\n');
    assert.equal(lines[0], 'image override web-1');
    assert.equal(lines[1], '/tmp');
    assert.equal(lines[2], '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    assert.equal(lines[3], '/root');
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('user by name and by number, hostname and /etc/hosts', async () => {
  const env = setup();
  try {
    let o = await runOne(env, { ...sh('id; echo $HOME; hostname; grep -c web-2 /etc/hosts; grep Cap[EP][fr][fm] /proc/self/status'), user: 'app' }, { hostname: 'web-2' });
    assert.equal(o.result.exitCode, 0, o.stderr);
    const lines = o.stdout.split('\n');
    assert.match(lines[0]!, /^uid=1000\(app\) gid=1000\(app\) groups=1000\(app\),2000\(extra\)$/, 'the primary group is a supplementary group too (CVE-2023-25173)');
    assert.equal(lines[1], '/home/app');
    assert.equal(lines[2], 'web-2');
    assert.equal(lines[3], '1');
    assert.match(o.stdout, /CapEff:\s+0000000000000000/, 'a non-root user has no effective capabilities');
    o = await runOne(env, { ...sh('id -u; id -g'), user: '1234:2000' });
    assert.equal(o.stdout, '1234\n2000\n');
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('unknown user, missing command and bad names are errors that leave nothing behind', async () => {
  const env = setup();
  try {
    await assert.rejects(runOne(env, { ...sh('true'), user: 'nobody-here' }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID') && /nobody-here/.test(e.message));
    await assert.rejects(runOne(env, { ...sh('true'), user: 'app:nogroup' }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { config: {} }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID') && /no command; give --exec/.test(e.message));
    await assert.rejects(runOne(env, { ...sh('true'), name: '../evil' }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, sh('true'), { hostname: 'bad host' }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { ...sh('true'), layers: [path.join(env.base, 'missing')] }), (e: unknown) => isGantryError(e, 'STORE_CORRUPT'));
    await assert.rejects(runOne(env, sh('true'), { ociRuntime: 'no-such-runtime' }), (e: unknown) => isGantryError(e, 'RUNTIME_ERROR'));
    await assert.rejects(runOne(env, { ...sh('true'), capsRetain: ['CAP_BOGUS'] }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { ...sh('true'), env: ['NOEQUALS'] }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { ...sh('true'), mounts: [{ source: 'relative', destination: '/x' }] }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { ...sh('true'), mounts: [{ source: env.layer, destination: '/' }] }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { ...sh('true'), limits: { memoryBytes: 1.5 } }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, sh('true'), { uuid: 'not-a-uuid' }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await assert.rejects(runOne(env, { exec: ['/bin/nonexistent'] }), (e: unknown) => isGantryError(e, 'RUNTIME_ERROR') && /nonexistent/.test(e.message));
    assert.deepEqual(mountsUnder(env.base), []);
    assert.equal(fs.existsSync(path.join(env.base, 'state/runtime/crun')) ? fs.readdirSync(path.join(env.base, 'state/runtime/crun')).length : 0, 0);
  } finally {
    teardown(env);
  }
});

const DOCKER_CAPS = '00000000a80425fb';

test('default hardening: seccomp, no_new_privs, Docker capabilities, masked and read-only paths', async () => {
  const env = setup();
  try {
    const o = await runOne(env, sh('cat /proc/self/status; echo masked=$(head -c 16 /proc/timer_list | wc -c); echo fw=$(ls /sys/firmware | wc -l); echo x > /proc/sys/kernel/hostname && echo sys-writable'));
    assert.equal(statusField(o.stdout, 'Seccomp'), '2');
    assert.equal(statusField(o.stdout, 'NoNewPrivs'), '1');
    assert.equal(statusField(o.stdout, 'CapEff'), DOCKER_CAPS);
    assert.equal(statusField(o.stdout, 'CapBnd'), DOCKER_CAPS);
    assert.equal(statusField(o.stdout, 'CapInh'), '0000000000000000');
    // This kernel has no /proc/kcore; /proc/timer_list is masked the same way.
    assert.match(o.stdout, /^masked=0$/m);
    assert.match(o.stdout, /^fw=0$/m);
    assert.doesNotMatch(o.stdout, /sys-writable/);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('seccomp refuses what the profile does not allow, unless the capability is kept', async () => {
  const env = setup();
  try {
    // sethostname(2) needs CAP_SYS_ADMIN and the profile allows it only with that capability.
    let o = await runOne(env, sh('hostname other; echo rc=$?'));
    assert.match(o.stdout, /rc=1/);
    o = await runOne(env, { ...sh('hostname other && hostname'), capsRetain: ['SYS_ADMIN'] });
    assert.equal(o.stdout, 'other\n', o.stderr);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('insecure options switch off seccomp, capabilities and paths', async () => {
  const env = setup(['seccomp', 'capabilities', 'paths']);
  try {
    const o = await runOne(env, sh('cat /proc/self/status; echo masked=$(head -c 16 /proc/timer_list | wc -c)'));
    assert.equal(statusField(o.stdout, 'Seccomp'), '0');
    assert.notEqual(statusField(o.stdout, 'CapEff'), DOCKER_CAPS);
    assert.equal(statusField(o.stdout, 'NoNewPrivs'), '1');
    assert.match(o.stdout, /^masked=16$/m);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('read-only rootfs refuses writes; volumes are mounted', async () => {
  const env = setup();
  try {
    const vol = path.join(env.base, 'vol');
    fs.mkdirSync(vol);
    fs.writeFileSync(path.join(vol, 'data'), 'from-host\n');
    const o = await runOne(env, {
      ...sh('touch /newfile; echo rc=$?; cat /data/data; echo written > /data/out'),
      readOnlyRootfs: true,
      mounts: [{ source: vol, destination: '/data' }],
    });
    assert.match(o.stdout, /rc=1/);
    assert.match(o.stderr, /Read-only file system/);
    assert.match(o.stdout, /from-host/);
    assert.equal(fs.readFileSync(path.join(vol, 'out'), 'utf8'), 'written\n');
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('memory limit: an app allocating more is OOM-killed', async () => {
  const env = setup();
  try {
    const o = await runOne(env, {
      ...sh('x=0123456789abcdef; while true; do x="$x$x"; done'),
      limits: { memoryBytes: 16 * 1024 * 1024 },
    });
    assert.equal(o.result.exitCode, 137);
    assert.equal(o.result.apps[0]!.signal, 'SIGKILL');
    assert.equal(o.result.apps[0]!.oomKilled, true);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('pids limit: forks beyond it fail', async () => {
  const env = setup();
  try {
    const script = 'ok=0; i=0; while [ $i -lt 20 ]; do i=$((i+1)); if sleep 2 & then ok=$((ok+1)); fi; done 2>/dev/null; echo ok=$ok';
    const o = await runOne(env, { ...sh(script), limits: { pids: 8 } });
    const ok = Number(/ok=(\d+)/.exec(o.stdout)?.[1] ?? '-1');
    assert.ok((ok >= 0 && ok < 20) || o.result.exitCode !== 0, `forks were limited (stdout ${o.stdout}, stderr ${o.stderr})`);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('runc: exit code, hardening, OOM', async () => {
  const env = setup();
  try {
    let o = await runOne(env, sh('grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status; hostname; exit 5'), { ociRuntime: 'runc', hostname: 'runc-pod' });
    assert.equal(o.result.exitCode, 5, o.stderr);
    assert.equal(statusField(o.stdout, 'Seccomp'), '2');
    assert.equal(statusField(o.stdout, 'NoNewPrivs'), '1');
    assert.equal(statusField(o.stdout, 'CapEff'), DOCKER_CAPS);
    assert.match(o.stdout, /^runc-pod$/m);
    assertNothingLeft(env, o.uuid);
    o = await runOne(env, { ...sh('x=0123456789abcdef; while true; do x="$x$x"; done'), limits: { memoryBytes: 16 * 1024 * 1024 } }, { ociRuntime: 'runc' });
    assert.equal(o.result.exitCode, 137);
    assert.equal(o.result.apps[0]!.oomKilled, true);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('a pod with two apps runs both; the pod exit code is the first failure', async () => {
  const env = setup();
  const uuid = randomUUID();
  try {
    const result = await nsStage1(env.ctx).run({
      uuid, podDir: path.join(env.base, 'pods', uuid), net: 'none',
      apps: [
        { name: 'one', layers: [env.layer], config: { Cmd: ['/bin/true'] } },
        { name: 'two', layers: [env.layer], config: { Cmd: ['/bin/sh', '-c', 'exit 4'] } },
      ],
    }, { stdio: ['ignore', 'ignore', 'ignore'], forwardSignals: false });
    assert.equal(result.exitCode, 4);
    assert.deepEqual(result.apps.map((a) => [a.app, a.exitCode]), [['one', 0], ['two', 4]]);
    assertNothingLeft(env, uuid);
  } finally {
    teardown(env);
  }
});

test('net=host shares the host network; net=none has only loopback', async () => {
  const env = setup();
  try {
    let o = await runOne(env, sh('cat /proc/net/dev | wc -l'));
    assert.equal(o.stdout.trim(), '3', 'header lines + lo');
    o = await runOne(env, sh('cat /proc/net/dev | wc -l; cat /etc/resolv.conf | wc -c'), { net: 'host' });
    const hostLines = fs.readFileSync('/proc/net/dev', 'utf8').trim().split('\n').length;
    assert.equal(o.stdout.split('\n')[0], String(hostLines), o.stderr);
    assertNothingLeft(env, o.uuid);
  } finally {
    teardown(env);
  }
});

test('SIGTERM to gantry is forwarded to the app', async () => {
  const env = setup();
  const uuid = randomUUID();
  const outFile = path.join(env.base, 'out');
  const out = fs.openSync(outFile, 'w');
  try {
    const running = nsStage1(env.ctx).run({
      uuid, podDir: path.join(env.base, 'pods', uuid), net: 'none',
      apps: [{ name: 'app', layers: [env.layer], config: {}, exec: ['/bin/sh', '-c', 'trap "echo got-term; exit 3" TERM; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done'] }],
    }, { stdio: ['ignore', out, 'ignore'] });
    for (let i = 0; i < 100 && !fs.readFileSync(outFile, 'utf8').includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    process.kill(process.pid, 'SIGTERM');
    const result = await running;
    assert.equal(result.exitCode, 3);
    assert.match(fs.readFileSync(outFile, 'utf8'), /got-term/);
    assertNothingLeft(env, uuid);
  } finally {
    fs.closeSync(out);
    teardown(env);
  }
});

test('gc is idempotent and removes the app dirs', async () => {
  const env = setup();
  try {
    const o = await runOne(env, sh('echo data > /file'));
    const podDir = path.join(env.base, 'pods', o.uuid);
    assert.ok(fs.existsSync(path.join(podDir, 'apps/app/upper/file')), 'the upper dir outlives the run');
    await nsStage1(env.ctx).gc({ uuid: o.uuid, podDir });
    await nsStage1(env.ctx).gc({ uuid: o.uuid, podDir });
    assert.equal(fs.existsSync(path.join(podDir, 'apps')), false);
    assert.ok(fs.existsSync(env.layer + '/bin/busybox'), 'the layer is untouched');
    await assert.rejects(nsStage1(env.ctx).stop({ uuid: o.uuid, podDir }), (e: unknown) => isGantryError(e, 'POD_STATE'));
  } finally {
    teardown(env);
  }
});

test('overlay: deep images with long paths stay under the mount data limit', () => {
  const env = setup();
  try {
    const long = 'x'.repeat(120);
    for (const count of [40, 160]) {
      const layers: string[] = [];
      for (let i = 0; i < count; i++) {
        const d = path.join(env.base, `layers-${count}`, `${long}-${i}`);
        fs.mkdirSync(d, { recursive: true });
        fs.writeFileSync(path.join(d, `f${i}`), String(i));
        fs.writeFileSync(path.join(d, 'top'), String(i));
        layers.push(d);
      }
      const paths = appPaths(path.join(env.base, `pod-${count}`), 'app');
      fs.mkdirSync(paths.appDir, { recursive: true });
      mountAppRootfs(paths, layers);
      try {
        assert.equal(fs.readFileSync(path.join(paths.rootfs, 'f0'), 'utf8'), '0');
        assert.equal(fs.readFileSync(path.join(paths.rootfs, 'top'), 'utf8'), String(count - 1), 'the last layer is on top');
        assert.throws(() => mountAppRootfs(paths, layers), (e: unknown) => isGantryError(e, 'POD_STATE'));
      } finally {
        removeAppDir(paths);
      }
      assert.equal(fs.existsSync(paths.appDir), false);
      assert.equal(fs.readFileSync(path.join(layers[0]!, 'f0'), 'utf8'), '0', 'layers survive cleanup');
      removeAppDir(paths); // idempotent
    }
  } finally {
    teardown(env);
  }
});

test('user resolution never leaves the rootfs and refuses odd files', () => {
  const env = setup();
  try {
    const root = path.join(env.base, 'hostile');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    // A passwd on the host that a symlink tries to reach.
    const hostFile = path.join(env.base, 'host-passwd');
    fs.writeFileSync(hostFile, 'evil:x:0:0::/:/bin/sh\n');
    fs.symlinkSync(`/../../../../..${hostFile}`, path.join(root, 'etc/passwd'));
    assert.equal(resolveInRoot(root, '/etc/passwd'), path.join(root, hostFile));
    assert.throws(() => resolveUser(root, 'evil'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    fs.unlinkSync(path.join(root, 'etc/passwd'));
    execFileSync('mkfifo', [path.join(root, 'etc/passwd')]);
    assert.throws(() => resolveUser(root, 'app'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID') && /not a regular file/.test(e.message));
    fs.unlinkSync(path.join(root, 'etc/passwd'));
    fs.symlinkSync('passwd', path.join(root, 'etc/passwd'));
    assert.throws(() => resolveUser(root, 'app'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID') && /symlink/.test(e.message));
    fs.unlinkSync(path.join(root, 'etc/passwd'));
    // No passwd at all: numeric users still work, names do not.
    assert.deepEqual(resolveUser(root, '42:43'), { uid: 42, gid: 43, additionalGids: [43], home: '/' });
    assert.throws(() => resolveUser(root, 'app'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    assert.throws(() => resolveUser(root, '99999999999'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    assert.throws(() => resolveUser(root, '-1'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    assert.throws(() => resolveUser(root, '1:'), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    assert.deepEqual(resolveUser(env.layer, 'app'), { uid: 1000, gid: 1000, additionalGids: [1000, 2000], home: '/home/app', name: 'app' });
    assert.deepEqual(resolveUser(env.layer, undefined), { uid: 0, gid: 0, additionalGids: [0], home: '/root', name: 'root' });
  } finally {
    teardown(env);
  }
});

test('spec: limits, shared namespaces and clamped rlimits', () => {
  const ctx = createContext();
  const host = { ...readHostFacts({ swapAccounted: true, cgroupV2: false }), nofileHard: 4096 };
  const spec = buildAppSpec({
    ctx,
    pod: { uuid: randomUUID(), podDir: '/nonexistent', apps: [], net: 'none' },
    app: { name: 'a', layers: [], config: { Cmd: ['x'] }, limits: { memoryBytes: 64 << 20, cpus: 0.5, pids: 100 } },
    user: { uid: 0, gid: 0, additionalGids: [], home: '/' },
    hostname: 'h', cgroupsPath: '/gantry/x/a/ctr',
    etc: { hostname: '/h', hosts: '/hosts', resolvConf: '/r' },
    host,
    sharedNamespacesFrom: { network: '/proc/1/ns/net', ipc: '/proc/1/ns/ipc' },
  });
  assert.deepEqual(spec.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }]);
  assert.deepEqual(spec.linux.resources.memory, { limit: 64 << 20, swap: 64 << 20 });
  assert.deepEqual(spec.linux.resources.cpu, { quota: 50000, period: 100000 });
  assert.deepEqual(spec.linux.resources.pids, { limit: 100 });
  assert.deepEqual(spec.linux.namespaces.find((n) => n.type === 'network'), { type: 'network', path: '/proc/1/ns/net' });
  assert.deepEqual(spec.linux.namespaces.find((n) => n.type === 'ipc'), { type: 'ipc', path: '/proc/1/ns/ipc' });
  assert.deepEqual(spec.linux.namespaces.find((n) => n.type === 'uts'), { type: 'uts' });
  assert.ok((spec.process.oomScoreAdj ?? 0) >= 0);
  assert.throws(() => buildAppSpec({
    ctx, pod: { uuid: randomUUID(), podDir: '/x', apps: [], net: 'none' },
    app: { name: 'a', layers: [], config: { Cmd: ['x'] }, limits: { memoryBytes: -5 } },
    user: { uid: 0, gid: 0, additionalGids: [], home: '/' }, hostname: 'h', cgroupsPath: '/c',
    etc: { hostname: '/h', hosts: '/hosts', resolvConf: '/r' }, host,
  }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
});

test('cgroups: a hybrid host with controllers on v2 needs their v1 hierarchies', () => {
  const v1 = (c: string) => ({ mountPoint: `/sys/fs/cgroup/${c}`, root: '/', v2: false, controllers: [c] });
  const unified = (controllers: string[]) => ({ mountPoint: '/sys/fs/cgroup/unified', root: '/', v2: true, controllers });
  assert.deepEqual(layoutProblems({ mode: 'hybrid', systemd: false, hierarchies: [v1('memory'), unified(['hugetlb'])] }), ['hugetlb']);
  assert.deepEqual(layoutProblems({ mode: 'hybrid', systemd: false, hierarchies: [v1('memory'), v1('hugetlb'), unified([])] }), []);
  assert.deepEqual(layoutProblems({ mode: 'v2', systemd: true, hierarchies: [{ ...unified(['memory', 'pids']), mountPoint: '/sys/fs/cgroup' }] }), []);
  // A hostile controller name read from the kernel must never become a path.
  assert.deepEqual(layoutProblems({ mode: 'hybrid', systemd: false, hierarchies: [v1('memory'), unified(['../../etc'])] }), []);
  // This host, whatever its layout, is usable after ensureCgroupLayout (the runs above prove crun accepts it).
  assert.deepEqual(layoutProblems(detectCgroups()), []);
});
