import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isGantryError } from '../src/errors.js';
import { formatReference, parseDockerName, parseReference, type ImageReference } from '../src/image/reference.js';

const D = `sha256:${'a'.repeat(64)}`;

function rejects(text: string, pattern: RegExp): void {
  assert.throws(() => parseReference(text), (err: unknown) => {
    assert.ok(isGantryError(err, 'INVALID_REFERENCE'), `expected INVALID_REFERENCE for ${text}, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('parseDockerName', () => {
  it('applies Docker Hub defaults', () => {
    const r = parseDockerName('busybox');
    assert.equal(r.registry, 'docker.io');
    assert.equal(r.repository, 'library/busybox');
    assert.equal(r.tag, 'latest');
    assert.equal(r.canonical, 'docker.io/library/busybox:latest');
    assert.equal(r.explicitRegistry, false);
    assert.equal(parseDockerName('user/app:1').canonical, 'docker.io/user/app:1');
    assert.equal(parseDockerName('index.docker.io/busybox').canonical, 'docker.io/library/busybox:latest');
  });

  it('recognises hosts by dot, colon, localhost or upper case', () => {
    assert.equal(parseDockerName('registry.k8s.io/pause:3.9').canonical, 'registry.k8s.io/pause:3.9');
    const local = parseDockerName('127.0.0.1:5000/a/b/c@' + D);
    assert.deepEqual([local.registry, local.repository, local.tag, local.digest], ['127.0.0.1:5000', 'a/b/c', undefined, D]);
    assert.equal(local.canonical, `127.0.0.1:5000/a/b/c@${D}`);
    assert.equal(parseDockerName('localhost/app').registry, 'localhost');
    assert.equal(parseDockerName('Myhost/app').registry, 'Myhost');
    assert.equal(parseDockerName('ns/app').registry, 'docker.io');
    assert.equal(parseDockerName('[::1]:5000/app').registry, '[::1]:5000');
  });

  it('keeps tag and digest together', () => {
    const r = parseDockerName(`quay.io/x/y:v1@${D}`);
    assert.equal(r.tag, 'v1');
    assert.equal(r.digest, D);
    assert.equal(r.canonical, `quay.io/x/y:v1@${D}`);
  });

  it('honours defaultRegistry', () => {
    const r = parseDockerName('app', { defaultRegistry: 'quay.io' });
    assert.equal(r.canonical, 'quay.io/app:latest');
  });

  it('rejects bad grammar naming the part', () => {
    const bad: [string, RegExp][] = [
      ['Busybox', /must be lowercase/],
      ['a//b', /empty path component/],
      ['a/-b', /"-b" is not valid/],
      ['app:-bad', /tag "-bad"/],
      [`app:${'x'.repeat(129)}`, /tag/],
      ['app@sha256:abc', /64 lowercase hex/],
      [`app@md5:${'a'.repeat(32)}`, /algorithm "md5"/],
      [`app@sha256:${'A'.repeat(64)}`, /lowercase hex/],
      ['bad_host.com:port/app', /registry host/],
      ['a b', /whitespace/],
      ['', /empty/],
      [`x.io/${'a'.repeat(260)}`, /longer than 255/],
    ];
    for (const [text, pattern] of bad) {
      assert.throws(() => parseDockerName(text), (err: unknown) => isGantryError(err, 'INVALID_REFERENCE') && pattern.test(err.message), text);
    }
  });
});

describe('parseReference', () => {
  it('parses every transport', () => {
    const cases: [string, ImageReference][] = [
      ['oci:/tmp/layout', { kind: 'oci-layout', path: '/tmp/layout' }],
      ['oci:/tmp/layout:v1', { kind: 'oci-layout', path: '/tmp/layout', tag: 'v1' }],
      ['oci-archive:img.tar', { kind: 'oci-archive', path: 'img.tar' }],
      ['oci-archive:img.tar:latest', { kind: 'oci-archive', path: 'img.tar', tag: 'latest' }],
      ['docker-archive:save.tar', { kind: 'docker-archive', path: 'save.tar' }],
      ['docker-archive:save.tar:busybox:1.36', { kind: 'docker-archive', path: 'save.tar', name: 'busybox:1.36' }],
      ['docker-archive:save.tar:@1', { kind: 'docker-archive', path: 'save.tar', name: '@1' }],
      ['https://example.com/x.aci', { kind: 'aci-url', url: 'https://example.com/x.aci' }],
      ['http://127.0.0.1:8080/a/x.aci', { kind: 'aci-url', url: 'http://127.0.0.1:8080/a/x.aci' }],
      ['./x.aci', { kind: 'aci-file', path: './x.aci' }],
      ['/abs/x.aci', { kind: 'aci-file', path: '/abs/x.aci' }],
      ['file:///abs/my%20x.aci', { kind: 'aci-file', path: '/abs/my x.aci' }],
    ];
    for (const [text, expected] of cases) assert.deepEqual(parseReference(text), expected, text);
  });

  it('parses docker:// fully', () => {
    const r = parseReference('docker://127.0.0.1:5000/test/image:v2');
    assert.equal(r.kind, 'docker');
    assert.ok(r.kind === 'docker' && r.canonical === '127.0.0.1:5000/test/image:v2' && r.explicitRegistry);
    assert.equal(formatReference(r), 'docker://127.0.0.1:5000/test/image:v2');
  });

  it('classifies everything else as a store name with optional docker parts', () => {
    const busybox = parseReference('busybox');
    assert.ok(busybox.kind === 'name' && busybox.docker?.canonical === 'docker.io/library/busybox:latest' && !busybox.docker.explicitRegistry);
    const pause = parseReference('registry.k8s.io/pause:3.9');
    assert.ok(pause.kind === 'name' && pause.docker?.explicitRegistry === true);
    const id = parseReference('sha256:0123abcd');
    assert.equal(id.kind, 'name');
    // A comma label makes it an appc name (commas cannot appear in docker names).
    const appc = parseReference('example.com/app:1.0,os=linux,arch=amd64');
    assert.deepEqual(appc, { kind: 'appc', name: 'example.com/app', labels: { version: '1.0', os: 'linux', arch: 'amd64' } });
  });

  it('rejects hostile and malformed references', () => {
    rejects('', /empty/);
    rejects(' busybox', /whitespace/);
    rejects('docker://', /needs an image name/);
    rejects('docker://UPPER/Case', /lowercase/);
    rejects('oci:', /needs a path/);
    rejects('oci:/x:', /tag after the path is empty/);
    rejects('docker-archive:x.tar:Not Valid', /not a valid image name/);
    rejects('https://', /not a valid URL/);
    rejects('/some/dir', /\.aci file/);
    rejects('containers-storage:busybox', /transport is not supported/);
    rejects('docker://a@sha256:zz', /digest/);
  });
});
