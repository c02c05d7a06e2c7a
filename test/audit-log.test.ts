/**
 * The audit log: records chain and verify; every kind of tampering (edit,
 * edit with a recomputed hash, deletion, reordering, truncation at the end,
 * a cut-off last line, garbage) is reported with its position, and
 * `gantry audit verify` exits non-zero (STORE_CORRUPT = 11). Concurrent
 * appenders from several processes keep one unbroken chain.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { appendAudit, auditLogPath, recordAudit, recordHash, verifyAudit, type AuditRecord } from '../src/audit/log.js';
import { createContext } from '../src/context.js';
import { gantry, GANTRY_MAIN, tempDir } from './lib/cli.js';
import { spawn } from 'node:child_process';

async function logWith(n: number): Promise<{ dir: string; cleanup: () => void; file: string; lines: () => string[]; write: (lines: string[]) => void }> {
  const { dir, cleanup } = tempDir('gantry-audit-');
  const ctx = createContext({ dir });
  for (let i = 1; i <= n; i++) await appendAudit(ctx, i % 2 ? 'run' : 'stop', `pod-${i}`, { i });
  const file = auditLogPath(ctx);
  return {
    dir, cleanup, file,
    lines: () => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== ''),
    write: (lines) => fs.writeFileSync(file, lines.map((l) => `${l}\n`).join('')),
  };
}

describe('audit log chain', () => {
  test('a fresh log verifies; records chain from the genesis hash', async () => {
    const log = await logWith(4);
    try {
      const ctx = createContext({ dir: log.dir });
      const result = await verifyAudit(ctx);
      assert.equal(result.ok, true, JSON.stringify(result.problems));
      assert.equal(result.records, 4);
      const recs = log.lines().map((l) => JSON.parse(l) as AuditRecord);
      assert.deepEqual(recs.map((r) => r.seq), [1, 2, 3, 4]);
      assert.equal(recs[0]!.prev, `sha256:${'0'.repeat(64)}`);
      for (let i = 1; i < recs.length; i++) assert.equal(recs[i]!.prev, recs[i - 1]!.hash);
      for (const r of recs) assert.equal(recordHash(r), r.hash);
      const cli = await gantry(['--dir', log.dir, 'audit', 'verify']);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /audit log OK: 4 record/);
      const show = JSON.parse((await gantry(['--dir', log.dir, 'audit', 'show', '--format', 'json'])).stdout) as AuditRecord[];
      assert.equal(show.length, 4);
      assert.equal(show[2]!.subject, 'pod-3');
    } finally {
      log.cleanup();
    }
  });

  const cases: { name: string; tamper: (lines: string[]) => string[]; kind: RegExp; line: number }[] = [
    { name: 'edited record', kind: /edited/, line: 2, tamper: (l) => { const r = JSON.parse(l[1]!) as AuditRecord; r.subject = 'someone-else'; l[1] = JSON.stringify(r); return l; } },
    { name: 'edited record with a recomputed hash', kind: /chain-broken/, line: 3, tamper: (l) => {
      const r = JSON.parse(l[1]!) as AuditRecord; r.details = { i: 99 }; r.hash = recordHash(r); l[1] = JSON.stringify(r); return l;
    } },
    { name: 'deleted record', kind: /deleted/, line: 2, tamper: (l) => { l.splice(1, 1); return l; } },
    { name: 'reordered records', kind: /reordered/, line: 2, tamper: (l) => { [l[1], l[2]] = [l[2]!, l[1]!]; return l; } },
    { name: 'records cut off the end', kind: /truncated/, line: 4, tamper: (l) => l.slice(0, 3) },
    { name: 'garbage line', kind: /unparseable/, line: 3, tamper: (l) => { l[2] = '{not json'; return l; } },
  ];
  for (const c of cases) {
    test(`detects: ${c.name}, with its position`, async () => {
      const log = await logWith(5);
      try {
        log.write(c.tamper(log.lines()));
        const result = await verifyAudit(createContext({ dir: log.dir }));
        assert.equal(result.ok, false);
        const first = result.problems[0]!;
        assert.match(first.kind, c.kind, JSON.stringify(result.problems));
        assert.equal(first.line, c.line, JSON.stringify(result.problems));
        const cli = await gantry(['--dir', log.dir, 'audit', 'verify']);
        assert.equal(cli.code, 11, cli.stdout + cli.stderr);
        assert.match(cli.stderr, /tampered/);
        assert.match(cli.stderr + cli.stdout, new RegExp(`line ${c.line}`));
      } finally {
        log.cleanup();
      }
    });
  }

  test('a record cut off mid-line is reported as truncated', async () => {
    const log = await logWith(3);
    try {
      const text = fs.readFileSync(log.file, 'utf8');
      fs.writeFileSync(log.file, text.slice(0, text.length - 20));
      const result = await verifyAudit(createContext({ dir: log.dir }));
      assert.equal(result.ok, false);
      assert.ok(result.problems.some((p) => p.kind === 'truncated' && p.line === 3), JSON.stringify(result.problems));
    } finally {
      log.cleanup();
    }
  });

  test('appending after a truncation keeps the damage visible', async () => {
    const log = await logWith(4);
    try {
      log.write(log.lines().slice(0, 2));
      await appendAudit(createContext({ dir: log.dir }), 'gc', 'all');
      const result = await verifyAudit(createContext({ dir: log.dir }));
      assert.equal(result.ok, false);
      assert.ok(result.problems.some((p) => p.kind === 'deleted' && p.line === 3), JSON.stringify(result.problems));
    } finally {
      log.cleanup();
    }
  });

  test('recordAudit on an unwritable state dir warns instead of throwing', async () => {
    const { dir, cleanup } = tempDir('gantry-audit-');
    try {
      fs.writeFileSync(path.join(dir, 'audit'), 'a file where the directory should be');
      const warnings: string[] = [];
      await recordAudit(createContext({ dir, warn: (m) => warnings.push(m) }), 'run', 'pod');
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /audit log: could not record "run" of pod/);
    } finally {
      cleanup();
    }
  });

  test('four processes appending at once keep one chain', async () => {
    const { dir, cleanup } = tempDir('gantry-audit-');
    try {
      const script = `import('${path.join(path.dirname(GANTRY_MAIN), '..', 'audit', 'log.js')}').then(async (m) => {
        const ctx = { dir: ${JSON.stringify(dir)}, warn: (x) => { console.error(x); process.exitCode = 1; } };
        for (let i = 0; i < 10; i++) await m.recordAudit(ctx, 'run', 'p' + process.pid + '-' + i);
      });`;
      const runs = Array.from({ length: 4 }, () => new Promise<number>((resolve) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.on('close', (code) => { clearTimeout(timer); resolve(code ?? 1); });
      }));
      assert.deepEqual(await Promise.all(runs), [0, 0, 0, 0]);
      const result = await verifyAudit(createContext({ dir }));
      assert.equal(result.ok, true, JSON.stringify(result.problems));
      assert.equal(result.records, 40);
    } finally {
      cleanup();
    }
  });
});
