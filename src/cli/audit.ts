/**
 * `gantry audit show` and `gantry audit verify`: read and check the
 * hash-chained audit log (src/audit/log.ts). verify exits with the
 * STORE_CORRUPT code and names the position of every break it finds.
 */
import type { Command, CommandGroup } from './command.js';
import { writeJson, writeTable } from './command.js';

const showCommand: Command = {
  name: 'show',
  usage: 'gantry audit show [--format json]',
  summary: 'Print the audit log records in order (seq, time, event, subject, details).',
  flags: {},
  async run(_args, env) {
    const { readAudit } = await import('../audit/log.js');
    const records = await readAudit(env.ctx);
    if (env.format === 'json') {
      writeJson(env, records);
      return 0;
    }
    writeTable(env, ['SEQ', 'TIME', 'EVENT', 'SUBJECT', 'DETAILS'], records.map((r) => [
      String(r.seq), r.time, r.event, r.subject, JSON.stringify(r.details),
    ]));
    return 0;
  },
};

const verifyCommand: Command = {
  name: 'verify',
  usage: 'gantry audit verify [--format json]',
  summary: 'Check the hash chain of the audit log; report edited, deleted, reordered or truncated records with their position.',
  flags: {},
  async run(_args, env) {
    const { verifyAudit, assertAuditOk } = await import('../audit/log.js');
    const result = await verifyAudit(env.ctx);
    if (env.format === 'json') writeJson(env, result);
    else if (result.ok) env.stdout.write(`audit log OK: ${result.records} record(s)${result.head ? `, head ${result.head.hash}` : ''}\n`);
    else for (const p of result.problems) env.stdout.write(`${p.kind}: ${p.message}\n`);
    assertAuditOk(env.ctx, result);
    return 0;
  },
};

export const auditGroup: CommandGroup = {
  name: 'audit',
  summary: 'show and verify the tamper-evident audit log',
  subcommands: {
    show: async () => showCommand,
    verify: async () => verifyCommand,
  },
};
