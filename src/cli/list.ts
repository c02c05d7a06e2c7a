/** `gantry list`: the pods on disk, with their state derived from the disk and the pods' locks. */
import { listPods, podStatus, retireExitedPods, type PodInfo, type PodStatusView } from '../pod/pods.js';
import { boolFlag } from './args.js';
import { shortId, writeJson, writeTable, type Command } from './command.js';

function netSummary(s: PodStatusView | undefined): string[] {
  return (s?.network ?? []).map((n) => `${n.name}:${n.ips.map((ip) => ip.split('/')[0]).join('|')}`);
}

export const listCommand: Command = {
  name: 'list',
  usage: 'gantry list [--full] [--format json]',
  summary: 'List pods: UUID, apps, images, state, networks, creation time.',
  flags: {
    full: { type: 'boolean', description: 'full UUIDs and image IDs' },
  },
  async run(args, env) {
    const pods = listPods(env.ctx);
    await retireExitedPods(env.ctx, pods);
    const full = boolFlag(args, 'full');
    const statuses = new Map<string, PodStatusView>();
    for (const pod of pods) {
      if (pod.manifest && (pod.state === 'running' || pod.state === 'exited')) {
        statuses.set(pod.uuid, await podStatus(env.ctx, pod).catch(() => undefined as unknown as PodStatusView));
      }
    }
    if (env.format === 'json') {
      writeJson(env, pods.map((p: PodInfo) => {
        const s = statuses.get(p.uuid);
        return {
          uuid: p.uuid,
          state: p.state,
          dirState: p.dirState,
          createdAt: p.createdAt,
          ...(p.exitedAt ? { exitedAt: p.exitedAt } : {}),
          stage1: p.manifest?.stage1,
          apps: (p.manifest?.apps ?? []).map((a) => {
            const st = s?.apps.find((x) => x.name === a.name);
            return { name: a.name, image: a.image.name, imageId: a.image.id, ...(st ? { state: st.state, ...(st.exitCode !== undefined ? { exitCode: st.exitCode } : {}) } : {}) };
          }),
          networks: s?.network ?? [],
        };
      }));
      return 0;
    }
    const rows: string[][] = [];
    for (const p of pods) {
      const apps = p.manifest?.apps ?? [];
      const nets = netSummary(statuses.get(p.uuid));
      const n = Math.max(1, apps.length, nets.length);
      for (let i = 0; i < n; i++) {
        const a = apps[i];
        rows.push(i === 0
          ? [full ? p.uuid : p.uuid.slice(0, 8), a?.name ?? '-', a ? (full ? a.image.id : a.image.name ?? shortId(a.image.id)) : '-', p.state, nets[0] ?? '', p.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z')]
          : ['', a?.name ?? '', a ? (full ? a.image.id : a.image.name ?? shortId(a.image.id)) : '', '', nets[i] ?? '', '']);
      }
    }
    writeTable(env, ['UUID', 'APP', 'IMAGE', 'STATE', 'NETWORKS', 'CREATED'], rows);
    return 0;
  },
};
