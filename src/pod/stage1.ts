/**
 * Picks the stage1 implementation a pod was prepared for. Implementations
 * are imported lazily so that a command pays only for the stage1 it uses,
 * and an unknown name is a USAGE error before anything starts.
 */
import type { Context } from '../context.js';
import { GantryError } from '../errors.js';
import type { Stage1 } from '../stage1/abi.js';
import type { PodManifest } from './manifest.js';

export type Stage1Name = 'ns' | 'fly';

export function parseStage1Name(text: string | undefined): Stage1Name {
  const name = text ?? 'ns';
  if (name !== 'ns' && name !== 'fly') {
    throw new GantryError('USAGE', `unknown stage1 "${name}"`, { hint: 'use --stage1-name=ns (namespaces through an OCI runtime) or --stage1-name=fly (chroot, host network)' });
  }
  return name;
}

const cache = new Map<string, Stage1>();

export async function loadStage1(ctx: Context, name: Stage1Name): Promise<Stage1> {
  const hit = cache.get(name);
  if (hit) return hit;
  // Imported lazily: a command pays only for the stage1 its pod uses.
  const factory = name === 'ns' ? (await import('../stage1/ns/index.js')).nsStage1 : (await import('../stage1/fly/index.js')).flyStage1;
  const stage1 = factory(ctx);
  cache.set(name, stage1);
  return stage1;
}

/** A Stage1 for an existing pod, loaded on first use of any verb. */
export function stage1For(ctx: Context, manifest: Pick<PodManifest, 'stage1'>): Stage1 {
  const name = manifest.stage1 ?? 'ns';
  const lazy = <K extends keyof Stage1>(verb: K) =>
    (async (...args: unknown[]) => {
      const s = await loadStage1(ctx, name);
      return (s[verb] as (...a: unknown[]) => unknown).apply(s, args);
    }) as Stage1[K];
  return {
    name,
    run: lazy('run'),
    status: lazy('status'),
    enter: lazy('enter'),
    stop: lazy('stop'),
    gc: lazy('gc'),
    appAdd: lazy('appAdd'),
    appStart: lazy('appStart'),
    appStop: lazy('appStop'),
    appRm: lazy('appRm'),
  };
}
