/**
 * The tamper-evident audit log: one JSON record per line in
 * `<dir>/audit/log.jsonl`, each chained to the one before like a TPM PCR
 * extend:
 *
 *   hash_n = sha256(hash_{n-1} || canonical JSON of record n without "hash")
 *
 * with hash_0 = "sha256:" + 64 zeros. `<dir>/audit/head.json` keeps the last
 * seq and hash, so cutting records off the end is detected too (a log
 * rewritten from scratch together with its head is not: anchoring the head
 * elsewhere, e.g. in a TPM, is what would catch that).
 *
 * Lifecycle of an append: take the exclusive flock on `<dir>/audit/lock`,
 * read the head (or the log's last line when there is no head yet), write
 * the line with O_APPEND and fsync it, then replace the head (temp file,
 * fsync, rename). Appending builds on the head, not on whatever the log's
 * tail is now: after a truncation the next record still points at the
 * missing one, so the damage stays visible.
 *
 * `recordAudit` never throws: an action that already happened must not be
 * reported as failed because its audit record could not be written. It
 * warns through ctx.warn instead, so the failure is never silent.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { errnoCode, GantryError } from '../errors.js';
import { FileLock } from '../store/lock.js';
import { writeFileAtomic } from '../util/fs.js';

export type AuditEvent = 'fetch' | 'trust-add' | 'trust-rm' | 'run' | 'stop' | 'rm' | 'gc' | 'image-rm' | 'image-gc';

export interface AuditRecord {
  seq: number;
  time: string;
  event: AuditEvent;
  subject: string;
  details: Record<string, unknown>;
  prev: string;
  hash: string;
}

export const GENESIS_HASH = `sha256:${'0'.repeat(64)}`;
const LOCK_TIMEOUT_MS = 30_000;
const TAIL_BYTES = 1 << 20;

export function auditDir(ctx: Context): string {
  return path.join(ctx.dir, 'audit');
}
export function auditLogPath(ctx: Context): string {
  return path.join(auditDir(ctx), 'log.jsonl');
}
function headPath(ctx: Context): string {
  return path.join(auditDir(ctx), 'head.json');
}

/** JSON with object keys sorted at every level: the bytes that are hashed. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function recordHash(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _hash, ...rest } = record;
  return `sha256:${createHash('sha256').update(record.prev).update(canonicalJson(rest)).digest('hex')}`;
}

interface Head {
  seq: number;
  hash: string;
}

async function readHead(ctx: Context): Promise<Head | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(headPath(ctx), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<Head>;
  if (typeof parsed.seq !== 'number' || typeof parsed.hash !== 'string') throw new Error(`${headPath(ctx)} is damaged`);
  return { seq: parsed.seq, hash: parsed.hash };
}

/** The last complete record of the log, read from its tail. */
async function readLastRecord(file: string): Promise<Head | undefined> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return undefined;
    const length = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    const lines = buf.toString('utf8').split('\n').filter((l) => l.trim() !== '');
    const last = lines[lines.length - 1];
    if (last === undefined) return undefined;
    const rec = JSON.parse(last) as AuditRecord;
    return { seq: rec.seq, hash: rec.hash };
  } finally {
    await handle.close();
  }
}

async function writeHead(ctx: Context, head: Head): Promise<void> {
  await writeFileAtomic(headPath(ctx), JSON.stringify(head) + '\n');
}

/** Appends one record; throws on failure (recordAudit is the forgiving wrapper). */
export async function appendAudit(ctx: Context, event: AuditEvent, subject: string, details: Record<string, unknown> = {}): Promise<AuditRecord> {
  const dir = auditDir(ctx);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = await FileLock.acquire(path.join(dir, 'lock'), 'exclusive', { timeoutMs: LOCK_TIMEOUT_MS, what: 'the audit log' });
  try {
    const file = auditLogPath(ctx);
    const head = (await readHead(ctx)) ?? (await readLastRecord(file)) ?? { seq: 0, hash: GENESIS_HASH };
    const base = { seq: head.seq + 1, time: new Date().toISOString(), event, subject, details: JSON.parse(JSON.stringify(details)) as Record<string, unknown>, prev: head.hash };
    const record: AuditRecord = { ...base, hash: recordHash(base) };
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(record) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    await writeHead(ctx, { seq: record.seq, hash: record.hash });
    return record;
  } finally {
    lock?.release();
  }
}

/**
 * Records an event. Never throws: a failure to write the record is reported
 * with ctx.warn (the action it describes has already happened).
 */
export async function recordAudit(ctx: Context, event: AuditEvent, subject: string, details?: Record<string, unknown>): Promise<void> {
  try {
    await appendAudit(ctx, event, subject, details ?? {});
  } catch (err) {
    ctx.warn(`audit log: could not record "${event}" of ${subject} in ${auditLogPath(ctx)}: ${(err as Error).message}`);
  }
}

/** Reads every record (no checks; `verifyAudit` checks). Unparseable lines are skipped. */
export async function readAudit(ctx: Context): Promise<AuditRecord[]> {
  let text: string;
  try {
    text = await fsp.readFile(auditLogPath(ctx), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const out: AuditRecord[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as AuditRecord);
    } catch {
      // verifyAudit reports it with its position.
    }
  }
  return out;
}

export type AuditProblemKind = 'unparseable' | 'edited' | 'deleted' | 'reordered' | 'chain-broken' | 'truncated' | 'head-mismatch';

export interface AuditProblem {
  /** 1-based line number in log.jsonl (0 for the log as a whole, e.g. a missing end). */
  line: number;
  /** The seq the record claims, or the seq expected at that position. */
  seq: number;
  kind: AuditProblemKind;
  message: string;
}

export interface AuditVerification {
  ok: boolean;
  records: number;
  head?: { seq: number; hash: string };
  problems: AuditProblem[];
}

const MAX_PROBLEMS = 100;

/** Walks the chain and reports every break with its position. */
export async function verifyAudit(ctx: Context): Promise<AuditVerification> {
  let text = '';
  try {
    text = await fsp.readFile(auditLogPath(ctx), 'utf8');
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  let head: Head | undefined;
  try {
    head = await readHead(ctx);
  } catch (err) {
    return { ok: false, records: 0, problems: [{ line: 0, seq: 0, kind: 'head-mismatch', message: `the head file is unreadable: ${(err as Error).message}` }] };
  }
  const problems: AuditProblem[] = [];
  const add = (p: AuditProblem): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  const lines = text.split('\n');
  const endsClean = text === '' || text.endsWith('\n');
  if (endsClean) lines.pop();
  // First pass: where each seq is and what hash it claims, so a record moved
  // elsewhere is told apart from one removed, and each record's "prev" is
  // compared with the record that claims the seq before it.
  const parsed: (AuditRecord | undefined)[] = lines.map((l) => {
    try {
      const rec = JSON.parse(l) as AuditRecord;
      return typeof rec === 'object' && rec !== null && typeof rec.seq === 'number' && typeof rec.hash === 'string' && typeof rec.prev === 'string' ? rec : undefined;
    } catch {
      return undefined;
    }
  });
  const lineOfSeq = new Map<number, number>();
  const hashOfSeq = new Map<number, string>();
  parsed.forEach((rec, i) => {
    if (rec && !lineOfSeq.has(rec.seq)) {
      lineOfSeq.set(rec.seq, i + 1);
      hashOfSeq.set(rec.seq, rec.hash);
    }
  });
  let expectedSeq = 1;
  let lastHash = GENESIS_HASH;
  let count = 0;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const rec = parsed[i];
    if (rec === undefined) {
      const partial = i === lines.length - 1 && !endsClean;
      add({ line: lineNo, seq: expectedSeq, kind: partial ? 'truncated' : 'unparseable', message: partial
        ? `line ${lineNo}: the last record is cut off (expected seq ${expectedSeq})`
        : `line ${lineNo}: not a valid audit record (expected seq ${expectedSeq})` });
      expectedSeq++;
      continue;
    }
    count++;
    const computed = recordHash(rec);
    const prevExpected = rec.seq === 1 ? GENESIS_HASH : hashOfSeq.get(rec.seq - 1);
    if (rec.seq !== expectedSeq) {
      const later = lineOfSeq.get(expectedSeq);
      if (rec.seq < expectedSeq || (later !== undefined && later > lineNo)) {
        add({ line: lineNo, seq: rec.seq, kind: 'reordered', message: `line ${lineNo}: seq ${rec.seq} appears where seq ${expectedSeq} was expected${later !== undefined && later > lineNo ? ` (seq ${expectedSeq} is at line ${later})` : ''}: records reordered or duplicated` });
      } else {
        add({ line: lineNo, seq: rec.seq, kind: 'deleted', message: `line ${lineNo}: record(s) ${expectedSeq}${rec.seq - 1 > expectedSeq ? `-${rec.seq - 1}` : ''} missing before seq ${rec.seq}` });
      }
    } else if (computed !== rec.hash) {
      add({ line: lineNo, seq: rec.seq, kind: 'edited', message: `line ${lineNo}: record seq ${rec.seq} was edited (its hash does not match its contents)` });
    } else if (prevExpected !== undefined && rec.prev !== prevExpected) {
      add({ line: lineNo, seq: rec.seq, kind: 'chain-broken', message: `line ${lineNo}: record seq ${rec.seq} does not follow record seq ${rec.seq - 1} (that one was edited, replaced or removed)` });
    }
    expectedSeq = Math.max(expectedSeq, rec.seq + 1);
    if (rec.seq === expectedSeq - 1) lastHash = rec.hash;
  }
  if (head !== undefined) {
    const lastSeq = expectedSeq - 1;
    if (head.seq > lastSeq) {
      add({ line: lines.length + 1, seq: lastSeq + 1, kind: 'truncated', message: `line ${lines.length + 1}: missing; the log ends at seq ${lastSeq} (line ${lines.length}) but ${head.seq} record(s) were written: record(s) ${lastSeq + 1}-${head.seq} were cut off the end` });
    } else if (head.seq === lastSeq && head.hash !== lastHash) {
      add({ line: lines.length, seq: lastSeq, kind: 'head-mismatch', message: `line ${lines.length}: the last record (seq ${lastSeq}) is not the one that was written last` });
    } else if (head.seq < lastSeq) {
      add({ line: lines.length, seq: lastSeq, kind: 'head-mismatch', message: `the head says ${head.seq} record(s) were written, the log has records up to seq ${lastSeq}` });
    }
  } else if (count > 0) {
    add({ line: 0, seq: 0, kind: 'head-mismatch', message: `the head file ${headPath(ctx)} is missing` });
  }
  const result: AuditVerification = { ok: problems.length === 0, records: count, problems };
  if (head !== undefined) result.head = head;
  return result;
}

/** Throws STORE_CORRUPT naming the first problems when the log does not verify. */
export function assertAuditOk(ctx: Context, result: AuditVerification): void {
  if (result.ok) return;
  const first = result.problems.slice(0, 5).map((p) => p.message).join('; ');
  throw new GantryError('STORE_CORRUPT', `audit log ${auditLogPath(ctx)} has been tampered with: ${first}${result.problems.length > 5 ? ` (and ${result.problems.length - 5} more)` : ''}`, {
    hint: 'keep a copy of the log for investigation; gantry audit show --format json prints the records as they are',
  });
}
