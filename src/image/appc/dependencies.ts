/**
 * The layer stack of an appc image: its dependencies' layers below its own
 * (appc "dependencies"), and, when the manifest has a `pathWhitelist`, one
 * more layer on top that hides every non-directory the whitelist leaves out.
 *
 * Lifecycle, inside one fetch (fetch.ts calls these within the store's use
 * lock):
 *   1. `fetchAppcDependencies` runs before any of the dependent's layers is
 *      downloaded: each dependency is taken from the store (by appc image ID,
 *      or by name and labels) or fetched by appc discovery with its labels.
 *      A fetched dependency goes through the whole pipeline, signature check
 *      included, and is stored as an image of its own, whose layer list
 *      already holds its own dependencies. Nesting is bounded (10) and a name
 *      that reappears in the chain is a cycle: both are MANIFEST_INVALID.
 *   2. `completeAppcLayers` stacks deps (in the listed order, the first
 *      lowest; a layer shared by two deps stays at its highest place) and the
 *      image's own layer, then adds the whitelist layer: an ordinary OCI tar
 *      of `.wh.` whiteouts (deterministic bytes, so it is stored and
 *      collected like any blob), unpacked into a snapshot by the usual code.
 *
 * Whitelist semantics (appc leaves details open): a path is kept when it is
 * listed or lies under a listed directory; directories are always kept so
 * mount points and parents stay; symlinks are files here (a whitelisted
 * symlink to an unlisted target dangles).
 */
import fs from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import type { Context } from '../../context.js';
import { GantryError, isGantryError } from '../../errors.js';
import type { ImageRecord, LayerRecord } from '../../store/metadata.js';
import type { Store } from '../../store/store.js';
import { lgetxattr } from '../../sys/libc.js';
import { type FetchOptions } from '../fetch.js';
import { MEDIA_TYPES, type Platform } from '../model.js';
import { appcRunConfig, type AppcDependency } from './run-config.js';
import { digestOf } from '../digest.js';

/** rkt does not bound it; 10 is far beyond any real image and stops runaway chains. */
export const MAX_DEPENDENCY_DEPTH = 10;
const IMAGE_ID_ANNOTATION = 'dev.gantry.appc.image-id';

function describe(dep: AppcDependency): string {
  const labels = Object.entries(dep.labels).map(([k, v]) => `,${k}=${v}`).join('');
  return `${dep.imageName}${labels}${dep.imageID ? ` (${dep.imageID.slice(0, 19)})` : ''}`;
}

async function appcIdOf(store: Store, image: ImageRecord): Promise<string | undefined> {
  try {
    const doc = JSON.parse((await store.content.readBytes(image.manifestDigest)).toString('utf8')) as { annotations?: Record<string, string> };
    return doc.annotations?.[IMAGE_ID_ANNOTATION];
  } catch {
    return undefined;
  }
}

function nameOf(image: ImageRecord): string[] {
  return image.names.map((n) => (n.lastIndexOf(':') > 0 ? n.slice(0, n.lastIndexOf(':')) : n));
}

/** A stored appc image satisfying `dep`, newest first; undefined when none does. */
async function findStored(store: Store, dep: AppcDependency): Promise<ImageRecord | undefined> {
  for (const image of store.meta.listImages()) {
    if (image.format !== 'appc') continue;
    if (dep.imageID !== undefined) {
      if (dep.imageID.startsWith('sha256:') ? image.id.startsWith(dep.imageID) : (await appcIdOf(store, image))?.startsWith(dep.imageID)) {
        if (await store.isComplete(image)) return image;
      }
      continue;
    }
    if (!nameOf(image).includes(dep.imageName)) continue;
    const labelsMatch = Object.entries(dep.labels).every(([k, v]) => {
      if (k === 'version' && image.names.includes(`${dep.imageName}:${v}`)) return true;
      // appc: an image that does not declare os/arch runs anywhere.
      if ((k === 'os' || k === 'arch') && image.labels[k] === undefined) return true;
      return image.labels[k] === v;
    });
    if (labelsMatch && (await store.isComplete(image))) return image;
  }
  return undefined;
}

/**
 * Resolves the dependencies of the appc image named `name` (manifest bytes
 * `configBytes`), fetching what the store lacks. Returns their layers,
 * bottom first, deduplicated.
 */
export async function fetchAppcDependencies(
  ctx: Context, store: Store, configBytes: Buffer, name: string, platform: Platform, options: FetchOptions,
): Promise<LayerRecord[]> {
  const { dependencies } = appcRunConfig(configBytes, `image ${name}`);
  if (dependencies.length === 0) return [];
  const bare = name.replace(/:[^:/]*$/, '');
  const chain = [...(options.appcChain ?? []), bare];
  if (chain.length > MAX_DEPENDENCY_DEPTH) {
    throw new GantryError('MANIFEST_INVALID', `image ${name}: dependencies nest deeper than ${MAX_DEPENDENCY_DEPTH} levels (${chain.join(' -> ')})`, {
      hint: 'flatten the image (fewer levels of dependencies)',
    });
  }
  const below: LayerRecord[] = [];
  for (const dep of dependencies) {
    if (chain.includes(dep.imageName)) {
      throw new GantryError('MANIFEST_INVALID', `image ${name}: dependency cycle ${[...chain, dep.imageName].join(' -> ')}`, {
        hint: 'an image cannot depend on itself, directly or through its dependencies; fix the manifests',
      });
    }
    let image = await findStored(store, dep);
    if (image) {
      ctx.debug(`${name}: dependency ${describe(dep)} is ${image.id} from the store`);
    } else {
      image = await fetchDependency(ctx, store, dep, name, platform, { ...options, appcChain: chain });
    }
    below.push(...image.layers);
  }
  // A layer two dependencies share stays where the later one put it.
  const seen = new Set<string>();
  const out: LayerRecord[] = [];
  for (let i = below.length - 1; i >= 0; i--) {
    if (seen.has(below[i]!.chainId)) continue;
    seen.add(below[i]!.chainId);
    out.unshift(below[i]!);
  }
  return out;
}

async function fetchDependency(
  ctx: Context, store: Store, dep: AppcDependency, dependent: string, platform: Platform, options: FetchOptions,
): Promise<ImageRecord> {
  const { openAci } = await import('../transports/aci.js');
  const { pullFromSource } = await import('../fetch.js');
  let image: ImageRecord;
  try {
    const source = await openAci({ kind: 'appc', name: dep.imageName, labels: { ...dep.labels } }, ctx);
    ({ image } = await pullFromSource(ctx, store, source, platform, options));
  } catch (err) {
    if (isGantryError(err)) {
      // Signature and policy refusals keep their code: they are the reason, not a missing image.
      const code = err.code === 'SIGNATURE_INVALID' || err.code === 'POLICY_REJECTED' || err.code === 'MANIFEST_INVALID' ? err.code : 'IMAGE_NOT_FOUND';
      throw new GantryError(code, `image ${dependent} depends on ${describe(dep)}, which is not in the store and could not be fetched: ${err.message}`, {
        hint: err.hint ?? `fetch the dependency first (gantry fetch FILE.aci or gantry fetch ${dep.imageName}), then fetch ${dependent} again`,
        cause: err,
      });
    }
    throw err;
  }
  if (dep.imageID !== undefined) {
    const got = await appcIdOf(store, image);
    if (!(dep.imageID.startsWith('sha256:') ? image.id.startsWith(dep.imageID) : got?.startsWith(dep.imageID))) {
      throw new GantryError('DIGEST_MISMATCH', `image ${dependent} pins dependency ${dep.imageName} to ${dep.imageID}, discovery returned ${got ?? image.id}`, {
        hint: 'the dependency was rebuilt since the dependent image was made; rebuild the dependent image or fetch the pinned one',
      });
    }
  }
  return image;
}

/**
 * The full layer list of an appc image: `below` (dependencies), then its
 * own, then a whitelist layer when the manifest asks for one.
 */
export async function completeAppcLayers(
  store: Store, configBytes: Buffer, name: string, below: LayerRecord[], own: LayerRecord[],
): Promise<LayerRecord[]> {
  const layers = [...below.filter((l) => !own.some((o) => o.chainId === l.chainId)), ...own];
  const { pathWhitelist } = appcRunConfig(configBytes, `image ${name}`);
  if (pathWhitelist === undefined) return layers;
  const top = await whitelistLayer(store, layers.map((l) => store.snapshots.fsPath(l.chainId)), pathWhitelist, name);
  return top ? [...layers, top] : layers;
}

type Entry = Partial<tar.Header> & { name: string };

interface Node {
  dir: boolean;
  children: Map<string, Node>;
  /** For directories: the metadata of the topmost layer that has it. */
  st?: fs.Stats;
}

/** The merged tree an overlay of `layerFsPaths` (bottom first) shows. */
function mergedTree(layerFsPaths: string[]): Node {
  const root: Node = { dir: true, children: new Map() };
  const walk = (srcDir: string, node: Node): void => {
    for (const name of fs.readdirSync(srcDir)) {
      const abs = path.join(srcDir, name);
      const st = fs.lstatSync(abs);
      if (st.isCharacterDevice() && st.rdev === 0) {
        node.children.delete(name);
        continue;
      }
      if (st.isDirectory()) {
        let child = node.children.get(name);
        const opaque = lgetxattr(abs, 'trusted.overlay.opaque')?.toString() === 'y';
        if (!child || !child.dir || opaque) {
          child = { dir: true, children: new Map() };
          node.children.set(name, child);
        }
        child.st = st;
        walk(abs, child);
      } else {
        node.children.set(name, { dir: false, children: new Map() });
      }
    }
  };
  for (const layer of layerFsPaths) walk(layer, root);
  return root;
}

async function whitelistLayer(store: Store, layerFsPaths: string[], whitelist: string[], name: string): Promise<LayerRecord | undefined> {
  const keep = new Set(whitelist.map((p) => path.posix.normalize(p).replace(/\/+$/, '') || '/'));
  const kept = (abs: string): boolean => {
    for (let p = abs; p !== '/' && p !== '.'; p = path.posix.dirname(p)) if (keep.has(p)) return true;
    return false;
  };
  const tree = mergedTree(layerFsPaths);
  const entries: Entry[] = [];
  // Returns whether anything below `node` is hidden (so its directory entry is needed).
  const visit = (node: Node, rel: string): Entry[] => {
    const out: Entry[] = [];
    for (const childName of [...node.children.keys()].sort()) {
      const child = node.children.get(childName)!;
      const childRel = rel ? `${rel}/${childName}` : childName;
      if (child.dir) {
        const inner = visit(child, childRel);
        if (inner.length === 0) continue;
        const st = child.st!;
        // The upper directory's metadata wins in an overlay: copy the one below.
        out.push({ name: `${childRel}/`, type: 'directory', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: new Date(Math.floor(st.mtimeMs / 1000) * 1000) }, ...inner);
      } else if (!kept(`/${childRel}`)) {
        out.push({ name: rel ? `${rel}/.wh.${childName}` : `.wh.${childName}`, type: 'file', size: 0, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) });
      }
    }
    return out;
  };
  entries.push(...visit(tree, ''));
  if (entries.length === 0) return undefined;

  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const done = new Promise<void>((resolve, reject) => { pack.on('end', resolve); pack.on('error', reject); });
  // tar-stream fills the header fields left out (linkname, uname...) with defaults.
  for (const header of entries) pack.entry(header as tar.Header, Buffer.alloc(0));
  pack.finalize();
  await done;
  const bytes = Buffer.concat(chunks);
  const digest = digestOf(bytes);
  await store.content.putBytes({ digest, size: bytes.length }, bytes);
  try {
    const unpacked = await store.snapshots.unpack({ digest, mediaType: MEDIA_TYPES.ociLayer, compression: 'none' }, store.content.blobPath(digest), undefined, digest);
    return { digest, mediaType: MEDIA_TYPES.ociLayer, size: bytes.length, diffId: unpacked.diffId, chainId: unpacked.chainId };
  } catch (err) {
    throw new GantryError('INTERNAL', `image ${name}: cannot build its pathWhitelist layer: ${(err as Error).message}`, { cause: err });
  }
}
