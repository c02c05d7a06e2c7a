/**
 * stage1 pods against the real thing: shared pod namespaces, detached pods
 * under conmon (lock, status, CRI logs, stop), --pid=pod, app verbs, enter,
 * gc after kill -9 of the process running a pod, stage1 fly, and two
 * measurements (start overhead against `crun run`, RSS per idle detached
 * pod). Needs root, crun, runc, conmon and busybox-static.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createContext } from '../src/context.js';
import { isGantryError } from '../src/errors.js';
import type { AppSpec, PodRef, PodSpec, PodStatus } from '../src/stage1/abi.js';
import { nsStage1 } from '../src/stage1/ns/index.js';
import { flyStage1 } from '../src/stage1/fly/index.js';
import { mountsUnder } from '../src/sys/mounts.js';
import { assertNoRuntimeLeft, stage1Env, teardown, type Stage1Env } from './lib/stage1.js';
import { detectCgroups } from '../src/stage1/ns/cgroups.js';
import { readAppRecord, readPodRecord } from '../src/stage1/ns/pod.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../src/sys/libc.js';

const CRI_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] .*$/;

type Env = Stage1Env;
const setup = (): Env => stage1Env('gantry-pod-');

function newPod(env: Env, apps: AppSpec[], extra: Partial<PodSpec> = {}): PodSpec {
  const uuid = randomUUID();
  return { uuid, podDir: path.join(env.base, 'pods', uuid), apps, net: 'none', ...extra };
}

function app(env: Env, name: string, script: string, extra: Partial<AppSpec> = {}): AppSpec {
  return { name, layers: [env.layer], config: {}, exec: ['/bin/sh', '-c', script], ...extra };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) break;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function gcAndCheck(env: Env, pod: PodRef): Promise<void> {
  await nsStage1(env.ctx).gc(pod);
  await nsStage1(env.ctx).gc(pod); // idempotent
  assert.deepEqual(mountsUnder(pod.podDir), [], 'no mounts left under the pod dir');
  assertNoRuntimeLeft(env, pod.uuid);
}

function lockHeld(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const got = flock(fd, LOCK_EX | LOCK_NB);
    if (got) flock(fd, LOCK_UN);
    return !got;
  } finally {
    fs.closeSync(fd);
  }
}

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

function appState(st: PodStatus, name: string) {
  return st.apps.find((a) => a.name === name);
}

test('detached pod: apps share loopback and hostname, not files; lock, status, CRI logs, stop', async () => {
  const env = setup();
  const s1 = nsStage1(env.ctx);
  const pod = newPod(env, [
    app(env, 'web', 'mkdir /www && echo hi-from-web > /www/index.html && echo serving && exec httpd -f -p 127.0.0.1:8080 -h /www'),
    app(env, 'client', 'for i in $(seq 1 50); do wget -q -O - http://127.0.0.1:8080/ && break; sleep 0.1; done; hostname; ls /www; echo done'),
  ], { hostname: 'shared-host', hostsEntries: [{ ip: '10.1.2.3', names: ['db'] }], dns: { servers: ['10.0.0.53'], search: ['example.test'] } });
  try {
    fs.mkdirSync(pod.podDir, { recursive: true });
    const lockFile = path.join(pod.podDir, 'lock');
    const fd = fs.openSync(lockFile, 'a');
    assert.ok(flock(fd, LOCK_EX | LOCK_NB));
    const res = await s1.run(pod, { detach: true, lockFd: fd });
    fs.closeSync(fd); // stage0 exits: the monitors keep the lock
    assert.deepEqual(res, { apps: [], exitCode: 0 });
    assert.equal(lockHeld(lockFile), true, 'the lock is held while the pod runs');

    const st = await waitFor('client to exit', async () => {
      const s = await s1.status(pod);
      return appState(s, 'client')?.state === 'exited' ? s : undefined;
    });
    assert.equal(appState(st, 'client')!.exitCode, 0);
    assert.equal(appState(st, 'web')!.state, 'running');
    assert.ok(appState(st, 'web')!.pid! > 0);
    assert.ok(appState(st, 'web')!.startedAt);

    const clientLog = fs.readFileSync(path.join(pod.podDir, 'logs/client.log'), 'utf8');
    for (const line of clientLog.trim().split('\n')) assert.match(line, CRI_LINE);
    assert.match(clientLog, / stdout F hi-from-web$/m, 'the client reached the web app on 127.0.0.1');
    assert.match(clientLog, / stdout F shared-host$/m, 'same hostname in both apps');
    assert.match(clientLog, / stderr F ls: \/www: No such file or directory$/m, 'the apps do not see each other\'s files');
    assert.match(fs.readFileSync(path.join(pod.podDir, 'logs/web.log'), 'utf8'), / stdout F serving$/m);
    const resolv = fs.readFileSync(path.join(pod.podDir, 'stage1-etc/resolv.conf'), 'utf8');
    assert.match(resolv, /^nameserver 10\.0\.0\.53$/m);
    assert.match(resolv, /^search example\.test$/m);
    assert.match(fs.readFileSync(path.join(pod.podDir, 'stage1-etc/hosts'), 'utf8'), /^10\.1\.2\.3\tdb$/m);

    // Memory of an idle detached pod: its monitors (conmon) — there is no other keeper.
    const monitors = ['web'].map((n) => readAppRecord(pod.podDir, n)!.monitorProc!.pid);
    const kb = monitors.reduce((a, p) => a + rssKb(p), 0);
    console.log(`# RSS of the monitor of one idle detached app (conmon): ${kb} kB`);

    // A fresh status from the records only (as another process would see it).
    const again = await nsStage1(createContext({ dir: path.join(env.base, 'state') })).status({ uuid: pod.uuid, podDir: pod.podDir });
    assert.equal(appState(again, 'web')!.state, 'running');

    // httpd is PID 1 of its namespace and has no SIGTERM handler, so the kernel drops SIGTERM: SIGKILL follows.
    const t0 = Date.now();
    await s1.stop(pod, { timeoutMs: 300 });
    assert.ok(Date.now() - t0 < 4000);
    const after = await s1.status(pod);
    assert.equal(appState(after, 'web')!.state, 'exited');
    assert.equal(appState(after, 'web')!.exitCode, 137);
    assert.equal(appState(after, 'web')!.signal, 'SIGKILL');
    assert.ok(appState(after, 'web')!.finishedAt);
    await waitFor('the lock to be released', () => !lockHeld(lockFile), 5000);
    await assert.rejects(s1.stop(pod), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await assert.rejects(s1.enter(pod, 'web', ['true']), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await gcAndCheck(env, pod);
    assert.equal(readPodRecord(pod.podDir), undefined);
  } finally {
    await nsStage1(env.ctx).gc(pod).catch(() => undefined);
    teardown(env);
  }
});

test('--pid=pod: an app sees the other app\'s processes; output is prefixed by app name', async () => {
  const env = setup();
  const pod = newPod(env, [app(env, 'first', 'sleep 1'), app(env, 'second', 'ps -o args; hostname')], { pidMode: 'pod', hostname: 'pid-pod' });
  const outFile = path.join(env.base, 'out');
  const out = fs.openSync(outFile, 'w');
  try {
    const res = await nsStage1(env.ctx).run(pod, { stdio: ['ignore', out, 'ignore'], forwardSignals: false });
    assert.equal(res.exitCode, 0);
    const text = fs.readFileSync(outFile, 'utf8');
    assert.match(text, /^\[second\] sleep 1$/m, text);
    assert.match(text, /^\[second\] pid-pod$/m);
    const st = await nsStage1(env.ctx).status(pod);
    assert.deepEqual(st.apps.map((a) => [a.name, a.state, a.exitCode]), [['first', 'exited', 0], ['second', 'exited', 0]]);
    assert.match(fs.readFileSync(path.join(pod.podDir, 'logs/second.log'), 'utf8'), / stdout F pid-pod$/m);
    await gcAndCheck(env, pod);
  } finally {
    fs.closeSync(out);
    await nsStage1(env.ctx).gc(pod).catch(() => undefined);
    teardown(env);
  }
});

test('app add/start/stop/rm on a running pod; enter runs in the app\'s rootfs', async () => {
  const env = setup();
  const s1 = nsStage1(env.ctx);
  const pod = newPod(env, [app(env, 'one', 'echo mine > /tmp/marker; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done')]);
  try {
    await s1.run(pod, { detach: true });
    const pid0 = (await waitFor('one running', async () => appState(await s1.status(pod), 'one')?.pid))!;
    await waitFor('marker', () => fs.existsSync(path.join(pod.podDir, 'apps/one/upper/tmp/marker')));

    const outFile = path.join(env.base, 'enter-out');
    const out = fs.openSync(outFile, 'w');
    const code = await s1.enter(pod, 'one', ['/bin/sh', '-c', 'cat /tmp/marker /etc/image-marker; exit 3'], { stdio: ['ignore', out, 'ignore'] });
    fs.closeSync(out);
    assert.equal(code, 3);
    assert.equal(fs.readFileSync(outFile, 'utf8'), 'mine\nfrom-the-image\n');
    await assert.rejects(s1.enter(pod, 'nope', ['true']), (e: unknown) => isGantryError(e, 'POD_NOT_FOUND'));

    await s1.appAdd(pod, app(env, 'two', 'hostname; cat /proc/net/dev | wc -l; ls /tmp'));
    assert.equal(appState(await s1.status(pod), 'two')!.state, 'created');
    await assert.rejects(s1.appAdd(pod, app(env, 'two', 'true')), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await s1.appStart(pod, 'two');
    const st = await waitFor('two to exit', async () => {
      const s = await s1.status(pod);
      return appState(s, 'two')?.state === 'exited' ? s : undefined;
    });
    assert.equal(appState(st, 'two')!.exitCode, 0);
    assert.equal(appState(st, 'one')!.state, 'running');
    assert.equal(appState(st, 'one')!.pid, pid0, 'the first app was not restarted');
    const log = fs.readFileSync(path.join(pod.podDir, 'logs/two.log'), 'utf8');
    assert.match(log, new RegExp(` stdout F gantry-${pod.uuid.slice(0, 8)}$`, 'm'), 'the new app joined the pod UTS namespace');
    assert.match(log, / stdout F 3$/m, 'loopback only: the pod network namespace');
    assert.doesNotMatch(log, /marker/, 'its own rootfs');

    await s1.appRm(pod, 'two');
    assert.equal(appState(await s1.status(pod), 'two'), undefined);
    await assert.rejects(s1.appStart(pod, 'two'), (e: unknown) => isGantryError(e, 'POD_NOT_FOUND'));
    await s1.appStop(pod, 'one', { timeoutMs: 200 }); // sh ignores SIGTERM as PID 1: SIGKILL after the timeout
    const final = appState(await s1.status(pod), 'one')!;
    assert.equal(final.state, 'exited');
    assert.equal(final.exitCode, 137);
    await assert.rejects(s1.appAdd(pod, app(env, 'three', 'true')), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await gcAndCheck(env, pod);
  } finally {
    await nsStage1(env.ctx).gc(pod).catch(() => undefined);
    teardown(env);
  }
});

test('gc after kill -9 of the process running a foreground pod leaves no mount, cgroup or process', async () => {
  const env = setup();
  const uuid = randomUUID();
  const podDir = path.join(env.base, 'pods', uuid);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const script = path.join(env.base, 'runner.mjs');
  fs.writeFileSync(script, `
    import { createContext } from ${JSON.stringify(path.join(here, '../src/context.js'))};
    import { nsStage1 } from ${JSON.stringify(path.join(here, '../src/stage1/ns/index.js'))};
    const ctx = createContext({ dir: ${JSON.stringify(path.join(env.base, 'state'))} });
    await nsStage1(ctx).run({ uuid: ${JSON.stringify(uuid)}, podDir: ${JSON.stringify(podDir)}, net: 'none',
      apps: [{ name: 'a', layers: [${JSON.stringify(env.layer)}], config: {}, exec: ['/bin/sleep', '30'] },
             { name: 'b', layers: [${JSON.stringify(env.layer)}], config: {}, exec: ['/bin/sleep', '30'] }] },
      { stdio: ['ignore', 'ignore', 'ignore'] });
  `);
  const child = spawn(process.execPath, [script], { stdio: 'ignore' });
  try {
    const pids = await waitFor('both apps running', async () => {
      const st = await nsStage1(env.ctx).status({ uuid, podDir }).catch(() => undefined);
      const ps = st?.apps.map((a) => a.pid).filter((p): p is number => p !== undefined) ?? [];
      return ps.length === 2 ? ps : undefined;
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const monitors = ['a', 'b'].map((n) => readAppRecord(podDir, n)!.monitorProc!.pid);
    assert.ok(mountsUnder(podDir).length > 0, 'the killed run left mounts behind');
    await gcAndCheck(env, { uuid, podDir });
    for (const p of [...pids, ...monitors]) assert.equal(fs.existsSync(`/proc/${p}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${p}/status`, 'utf8')), false, `process ${p} is gone`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await nsStage1(env.ctx).gc({ uuid, podDir }).catch(() => undefined);
    teardown(env);
  }
});

test('fly: host network and hostname, own rootfs, full capabilities; no app verbs', async () => {
  const env = setup();
  const fly = flyStage1(env.ctx);
  const pod = newPod(env, [app(env, 'tool', 'cat /proc/net/dev | wc -l; hostname; cat /etc/image-marker; ls /work 2>&1; grep -E "^(CapEff|Seccomp):" /proc/self/status')], { stage1: 'fly' });
  const outFile = path.join(env.base, 'out');
  const out = fs.openSync(outFile, 'w');
  try {
    const res = await fly.run(pod, { stdio: ['ignore', out, out], forwardSignals: false });
    const text = fs.readFileSync(outFile, 'utf8');
    assert.equal(res.exitCode, 0, text);
    const lines = text.split('\n');
    assert.equal(lines[0], String(fs.readFileSync('/proc/net/dev', 'utf8').trim().split('\n').length), 'the host\'s interfaces');
    assert.equal(lines[1], os.hostname());
    assert.equal(lines[2], 'from-the-image');
    assert.match(text, /ls: \/work: No such file or directory/, 'the image rootfs, not the host\'s');
    assert.match(text, /^Seccomp:\s+0$/m);
    assert.doesNotMatch(text, /^CapEff:\s+00000000a80425fb$/m, 'more than Docker\'s default set');
    await assert.rejects(fly.appAdd(pod, app(env, 'x', 'true')), (e: unknown) => isGantryError(e, 'RUNTIME_ERROR') && /not supported by fly/.test(e.message));
    await fly.gc(pod);
    assert.deepEqual(mountsUnder(pod.podDir), []);
    assertNoRuntimeLeft(env, pod.uuid);
  } finally {
    fs.closeSync(out);
    await fly.gc(pod).catch(() => undefined);
    teardown(env);
  }
});

test('runc: a detached pod runs, is stopped and collected', async () => {
  const env = setup();
  const s1 = nsStage1(env.ctx);
  const pod = newPod(env, [app(env, 'svc', 'trap "exit 9" TERM; echo up; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done')], { ociRuntime: 'runc' });
  try {
    await s1.run(pod, { detach: true });
    await waitFor('svc log', () => fs.existsSync(path.join(pod.podDir, 'logs/svc.log')) && /stdout F up/.test(fs.readFileSync(path.join(pod.podDir, 'logs/svc.log'), 'utf8')));
    const ref = { uuid: pod.uuid, podDir: pod.podDir, ociRuntime: 'runc' };
    assert.equal(appState(await s1.status(ref), 'svc')!.state, 'running');
    await s1.stop(ref, { timeoutMs: 5000 });
    assert.equal(appState(await s1.status(ref), 'svc')!.exitCode, 9);
    await gcAndCheck(env, ref);
  } finally {
    await nsStage1(env.ctx).gc(pod).catch(() => undefined);
    teardown(env);
  }
});

test('bad input: hostile DNS and hosts entries, status of an unknown pod, verbs on a pod never started', async () => {
  const env = setup();
  const s1 = nsStage1(env.ctx);
  try {
    const bad = newPod(env, [app(env, 'a', 'true')], { dns: { servers: ['1.1.1.1\nnameserver 6.6.6.6'] } });
    await assert.rejects(s1.run(bad, { stdio: ['ignore', 'ignore', 'ignore'] }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await s1.gc(bad);
    const bad2 = newPod(env, [app(env, 'a', 'true')], { hostsEntries: [{ ip: '1.2.3.4', names: [] }] });
    await assert.rejects(s1.run(bad2, { stdio: ['ignore', 'ignore', 'ignore'] }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    await s1.gc(bad2);
    await assert.rejects(s1.run(newPod(env, [app(env, 'a', 'true')], { pidMode: 'all' as 'pod' })), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    const ghost = { uuid: randomUUID(), podDir: path.join(env.base, 'pods/ghost') };
    assert.deepEqual(await s1.status(ghost), { apps: [] });
    await assert.rejects(s1.stop(ghost), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await assert.rejects(s1.enter(ghost, 'a', ['true']), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await assert.rejects(s1.appAdd(ghost, app(env, 'a', 'true')), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await assert.rejects(s1.status({ uuid: 'x', podDir: ghost.podDir }), (e: unknown) => isGantryError(e, 'CONFIG_INVALID'));
    // A pod runs once.
    const once = newPod(env, [app(env, 'a', 'true')]);
    await s1.run(once, { stdio: ['ignore', 'ignore', 'ignore'] });
    await assert.rejects(s1.run(once, { stdio: ['ignore', 'ignore', 'ignore'] }), (e: unknown) => isGantryError(e, 'POD_STATE'));
    await gcAndCheck(env, once);
  } finally {
    teardown(env);
  }
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

test('measure: foreground `true` through stage1 against `crun run` of a ready bundle', async () => {
  const env = setup();
  try {
    // A ready bundle for crun: the spec gantry wrote, on an overlay gantry mounted.
    const bundleDir = path.join(env.base, 'bundle');
    fs.mkdirSync(path.join(bundleDir, 'rootfs'), { recursive: true });
    fs.cpSync(env.layer, path.join(bundleDir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    const gantryMs: number[] = [];
    const crunMs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const pod = newPod(env, [{ name: 'a', layers: [env.layer], config: {}, exec: ['/bin/true'] }]);
      let t = performance.now();
      const r = await nsStage1(env.ctx).run(pod, { stdio: ['ignore', 'ignore', 'ignore'], forwardSignals: false });
      gantryMs.push(performance.now() - t);
      assert.equal(r.exitCode, 0);
      if (i === 0) {
        const spec = JSON.parse(fs.readFileSync(path.join(pod.podDir, 'apps/a/config.json'), 'utf8')) as Record<string, unknown> & { linux: Record<string, unknown> };
        spec.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }];
        spec.linux.cgroupsPath = '/gantry-bench/ctr';
        spec.mounts = (spec.mounts as Array<{ destination: string }>).filter((m) => !m.destination.startsWith('/etc/'));
        fs.writeFileSync(path.join(bundleDir, 'config.json'), JSON.stringify(spec));
      }
      await nsStage1(env.ctx).gc(pod);
      t = performance.now();
      const c = spawnSync('crun', ['--root', path.join(env.base, 'crun-bench'), 'run', '--bundle', bundleDir, `bench-${i}`], { stdio: 'ignore' });
      crunMs.push(performance.now() - t);
      assert.equal(c.status, 0);
    }
    const g = median(gantryMs);
    const c = median(crunMs);
    console.log(`# stage1 ns foreground run of /bin/true: median ${g.toFixed(1)} ms; crun run of a ready bundle: ${c.toFixed(1)} ms; overhead ${(g - c).toFixed(1)} ms`);
    assert.ok(g - c < 150, `stage1 overhead ${g - c} ms`);
  } finally {
    for (const h of detectCgroups().hierarchies) {
      try {
        fs.rmdirSync(path.join(h.mountPoint, 'gantry-bench'));
      } catch {
        // absent
      }
    }
    teardown(env);
  }
});
