import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createContext } from '../src/context.js';
import { isGantryError } from '../src/errors.js';
import { parseDockerName } from '../src/image/reference.js';
import { emptyRegistriesConf, expandShortName, loadRegistriesConf, mergeRegistriesConf, resolvePullSources } from '../src/image/registry/registries-conf.js';

let dir: string;
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-regconf-')); });
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function confDir(main: string | undefined, dropins: Record<string, string> = {}): string {
  const d = fs.mkdtempSync(path.join(dir, 'c-'));
  if (main !== undefined) fs.writeFileSync(path.join(d, 'registries.conf'), main);
  if (Object.keys(dropins).length > 0) {
    fs.mkdirSync(path.join(d, 'registries.conf.d'));
    for (const [name, text] of Object.entries(dropins)) fs.writeFileSync(path.join(d, 'registries.conf.d', name), text);
  }
  return d;
}

const load = (d: string) => loadRegistriesConf(createContext({ containersConfig: d }));

describe('registries.conf', () => {
  it('defaults when there is no file', () => {
    const conf = load(confDir(undefined));
    assert.deepEqual(conf.registries, []);
    const ref = parseDockerName('quay.io/a/b:1');
    assert.deepEqual(resolvePullSources(ref, conf), [{ registry: 'quay.io', repository: 'a/b', insecure: false, isMirror: false }]);
  });

  it('orders mirrors before the location and rewrites by longest prefix', () => {
    const conf = load(confDir(`
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.local:5000/hub"
insecure = true
[[registry.mirror]]
location = "mirror2.local"

[[registry]]
prefix = "docker.io/library/special"
location = "special.local/x/y"
insecure = true
`));
    const busybox = parseDockerName('busybox:1.36');
    assert.deepEqual(resolvePullSources(busybox, conf), [
      { registry: 'mirror.local:5000', repository: 'hub/library/busybox', insecure: true, isMirror: true },
      { registry: 'mirror2.local', repository: 'library/busybox', insecure: false, isMirror: true },
      { registry: 'docker.io', repository: 'library/busybox', insecure: false, isMirror: false },
    ]);
    assert.deepEqual(resolvePullSources(parseDockerName('library/special/sub'), conf), [
      { registry: 'special.local', repository: 'x/y/sub', insecure: true, isMirror: false },
    ]);
    // "special" must not match "specialist": prefixes end at a path boundary
    assert.equal(resolvePullSources(parseDockerName('specialist'), conf).length, 3);
    assert.deepEqual(conf.unqualifiedSearchRegistries, ['quay.io', 'docker.io']);
  });

  it('matches wildcard prefixes without rewriting', () => {
    const conf = load(confDir(`
[[registry]]
prefix = "*.corp.example"
insecure = true
`));
    assert.deepEqual(resolvePullSources(parseDockerName('reg.corp.example:5000/app'), conf), [
      { registry: 'reg.corp.example:5000', repository: 'app', insecure: true, isMirror: false },
    ]);
    assert.equal(resolvePullSources(parseDockerName('corp.example.evil.io/app'), conf)[0]!.insecure, false);
  });

  it('honours mirror-by-digest-only and pull-from-mirror', () => {
    const conf = load(confDir(`
[[registry]]
location = "a.example"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example"
[[registry]]
location = "b.example"
[[registry.mirror]]
location = "tags.example"
pull-from-mirror = "tag-only"
`));
    const digest = `@sha256:${'1'.repeat(64)}`;
    assert.equal(resolvePullSources(parseDockerName('a.example/x:1'), conf).length, 1);
    assert.equal(resolvePullSources(parseDockerName(`a.example/x${digest}`), conf).length, 2);
    assert.equal(resolvePullSources(parseDockerName('b.example/x:1'), conf).length, 2);
    assert.equal(resolvePullSources(parseDockerName(`b.example/x${digest}`), conf).length, 1);
  });

  it('blocks blocked registries', () => {
    const conf = load(confDir(`
[[registry]]
location = "evil.example"
blocked = true
`));
    assert.throws(() => resolvePullSources(parseDockerName('evil.example/x'), conf),
      (err: unknown) => isGantryError(err, 'REGISTRY_BLOCKED') && /evil\.example\/x/.test(err.message) && /registries\.conf/.test(err.message));
  });

  it('merges drop-ins in lexical order, later wins', () => {
    const d = confDir(`
unqualified-search-registries = ["first.example"]
[[registry]]
location = "x.example"
insecure = false
[aliases]
"app" = "first.example/app"
`, {
      '20-late.conf': '[[registry]]\nlocation = "x.example"\ninsecure = true\n[aliases]\n"app" = "late.example/app"\n',
      '10-early.conf': 'unqualified-search-registries = ["second.example"]\n[aliases]\n"app" = "early.example/app"\n"other" = "o.example/o"\n',
      'ignored.txt': 'not toml at all [[[',
    });
    const conf = load(d);
    assert.deepEqual(conf.unqualifiedSearchRegistries, ['second.example']);
    assert.equal(conf.registries.length, 1);
    assert.equal(conf.registries[0]!.insecure, true);
    assert.equal(conf.aliases.app, 'late.example/app');
    assert.equal(conf.aliases.other, 'o.example/o');
    assert.equal(conf.files.length, 3);
  });

  it('reports bad TOML with file and line', () => {
    const d = confDir('unqualified-search-registries = ["a.example"]\n[[registry]\nlocation = "x"\n');
    assert.throws(() => load(d), (err: unknown) => {
      assert.ok(isGantryError(err, 'CONFIG_INVALID'));
      assert.match(err.message, /registries\.conf:2:/);
      return true;
    });
  });

  it('rejects invalid values and the v1 format', () => {
    const bad: [string, RegExp][] = [
      ['[[registry]]\nlocation = 5\n', /"location" must be a string/],
      ['[[registry]]\nprefix = "a.example/x"\n', /needs a "location"/],
      ['[[registry]]\nlocation = "https://a.example"\n', /not host\[:port\]/],
      ['[[registry]]\nlocation = "a.example"\ninsecure = "yes"\n', /"insecure" must be true or false/],
      ['[[registry]]\nprefix = "*.a.example/path"\n', /wildcard/],
      ['unqualified-search-registries = "docker.io"\n', /list of strings/],
      ['[aliases]\n"x" = "x"\n', /fully qualified/],
      ['[registries.search]\nregistries = ["docker.io"]\n', /version 1/],
      ['[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\nlocation = "m.example"\npull-from-mirror = "sometimes"\n', /pull-from-mirror/],
    ];
    for (const [text, pattern] of bad) {
      const conf = emptyRegistriesConf();
      assert.throws(() => mergeRegistriesConf(conf, text, '/etc/test.conf'),
        (err: unknown) => isGantryError(err, 'CONFIG_INVALID') && pattern.test(err.message) && err.message.includes('/etc/test.conf'), text);
    }
  });

  it('rejects a rewrite that leaves no repository', () => {
    const conf = emptyRegistriesConf();
    mergeRegistriesConf(conf, '[[registry]]\nprefix = "a.example/x"\nlocation = "b.example"\n', 't.conf');
    assert.throws(() => resolvePullSources(parseDockerName('a.example/x'), conf), (err: unknown) => isGantryError(err, 'CONFIG_INVALID'));
  });
});

describe('expandShortName', () => {
  it('uses aliases first, then the search registries, docker.io by default', () => {
    const conf = emptyRegistriesConf();
    assert.deepEqual(expandShortName('busybox', conf).map((r) => r.canonical), ['docker.io/library/busybox:latest']);
    mergeRegistriesConf(conf, 'unqualified-search-registries = ["quay.io", "docker.io"]\n[aliases]\n"app" = "alias.example/team/app:stable"\n"ubi8/ubi" = "registry.example/ubi8"\n', 't.conf');
    assert.deepEqual(expandShortName('ns/tool:2', conf).map((r) => r.canonical), ['quay.io/ns/tool:2', 'docker.io/ns/tool:2']);
    assert.deepEqual(expandShortName('app', conf).map((r) => r.canonical), ['alias.example/team/app:stable']);
    assert.deepEqual(expandShortName('app:1', conf).map((r) => r.canonical), ['alias.example/team/app:1']);
    assert.deepEqual(expandShortName('ubi8/ubi', conf).map((r) => r.canonical), ['registry.example/ubi8:latest']);
    const digest = `sha256:${'2'.repeat(64)}`;
    assert.deepEqual(expandShortName(`app@${digest}`, conf).map((r) => r.canonical), [`alias.example/team/app@${digest}`]);
    assert.deepEqual(expandShortName('registry.k8s.io/pause:3.9', conf).map((r) => r.canonical), ['registry.k8s.io/pause:3.9']);
  });
});
