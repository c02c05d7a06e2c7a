/**
 * The fetch pipeline against a registry of the test's own that lies: a layer
 * whose bytes do not match its digest, a layer whose diff ID does not match
 * the config, and a connection that always drops mid-blob. Each fails with
 * its documented exit code and leaves no blob, snapshot or image behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gantry, tempDir } from './lib/cli.js';
import { gzip, sha256, tarBuffer } from './lib/fixtures.js';

interface Lie { layerBytes?: Buffer; diffId?: string; dropAfter?: number }

async function image(lie: Lie): Promise<{ manifest: Buffer; blobs: Map<string, Buffer>; served: Map<string, Buffer> }> {
  const tar = await tarBuffer([{ name: 'hello.txt', content: 'hello\n' }]);
  const layer = gzip(tar);
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/true'] },
    rootfs: { type: 'layers', diff_ids: [lie.diffId ?? sha256(tar)] },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
  }));
  const blobs = new Map([[sha256(config), config], [sha256(layer), layer]]);
  const served = new Map(blobs);
  if (lie.layerBytes) served.set(sha256(layer), lie.layerBytes);
  return { manifest, blobs, served };
}

function lyingRegistry(lies: Record<string, Lie>): Promise<{ host: string; close: () => Promise<void> }> {
  return new Promise((resolve) => {
    const server = http.createServer(async (req, res) => {
      const m = /^\/v2\/([^/]+)\/(manifests|blobs)\/(.+)$/.exec(req.url ?? '');
      if (req.url === '/v2/') return res.writeHead(200).end('{}');
      if (!m || !lies[m[1]!]) return res.writeHead(404).end();
      const lie = lies[m[1]!]!;
      const img = await image(lie);
      if (m[2] === 'manifests') {
        return res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': img.manifest.length }).end(req.method === 'HEAD' ? undefined : img.manifest);
      }
      const body = img.served.get(decodeURIComponent(m[3]!));
      if (!body) return res.writeHead(404).end();
      const isLayer = body.length > 0 && m[3] !== [...img.blobs.keys()][0];
      if (lie.dropAfter !== undefined && isLayer) {
        res.writeHead(200, { 'Content-Length': body.length });
        res.write(body.subarray(0, lie.dropAfter));
        return setTimeout(() => res.socket?.destroy(), 20);
      }
      res.writeHead(200, { 'Content-Length': body.length }).end(body);
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ host: `127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

function leftovers(dir: string): string[] {
  const found: string[] = [];
  const snaps = path.join(dir, 'store', 'snapshots');
  if (fs.existsSync(snaps)) found.push(...fs.readdirSync(snaps).map((n) => `snapshot ${n}`));
  const tmp = path.join(dir, 'store', 'tmp');
  if (fs.existsSync(tmp)) found.push(...fs.readdirSync(tmp).map((n) => `tmp ${n}`));
  const ingest = path.join(dir, 'store', 'ingest');
  if (fs.existsSync(ingest)) found.push(...fs.readdirSync(ingest).filter((n) => !n.endsWith('.lock')).map((n) => `ingest ${n}`));
  return found;
}

describe('a registry that lies', () => {
  let registry: { host: string; close: () => Promise<void> };
  before(async () => {
    const other = gzip(await tarBuffer([{ name: 'evil.txt', content: 'evil!\n' }]));
    const good = gzip(await tarBuffer([{ name: 'hello.txt', content: 'hello\n' }]));
    // Same length as the real layer, other bytes: only the digest can tell.
    const sameSize = Buffer.concat([other, Buffer.alloc(Math.max(0, good.length - other.length))]).subarray(0, good.length);
    registry = await lyingRegistry({
      swapped: { layerBytes: sameSize },
      wrongdiff: { diffId: `sha256:${'0'.repeat(64)}` },
      dropping: { dropAfter: 10 },
    });
  });
  after(async () => {
    await registry?.close();
  });

  const cases: [string, number, RegExp][] = [
    ['swapped', 6, /digest/],
    ['wrongdiff', 6, /diff|digest/i],
    ['dropping', 4, /interrupted|dropped|closed|ended/i],
  ];
  for (const [repo, code, message] of cases) {
    test(`${repo}: exit ${code}, nothing kept`, async () => {
      const { dir, cleanup } = tempDir();
      try {
        const r = await gantry(['--dir', dir, '--insecure-options=http', 'fetch', `docker://${registry.host}/${repo}:latest`]);
        assert.equal(r.code, code, r.stderr);
        assert.match(r.stderr, message);
        assert.match(r.stderr, new RegExp(`${repo}|sha256:`));
        assert.deepEqual(leftovers(dir), []);
        const list = await gantry(['--dir', dir, '--format', 'json', 'image', 'list']);
        assert.deepEqual(JSON.parse(list.stdout), []);
      } finally {
        cleanup();
      }
    });
  }
});
