/**
 * The image store as commands use it: content (blobs), snapshots (unpacked
 * layers) and metadata (SQLite), opened together under one state dir.
 *
 * Lifecycle: `Store.open(ctx)` creates the layout if needed; work that creates
 * or uses blobs and snapshots runs inside `withUseLock` (a shared flock), and
 * garbage collection inside the exclusive counterpart, so gc never deletes a
 * blob an in-flight fetch in another process is about to record; `close()`
 * closes the database.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { GantryError } from '../errors.js';
import { ContentStore } from './content.js';
import { FileLock } from './lock.js';
import { MetadataStore, type ImageRecord } from './metadata.js';
import { SnapshotStore } from './snapshots.js';

export interface GcOptions {
  /** Remove images not used (fetched or run) for this long; undefined keeps every image. */
  gracePeriodMs?: number;
  now?: Date;
  /**
   * Image IDs kept whatever their age, with their blobs and snapshots (the
   * images pods on disk use). Read once gc holds the exclusive lock, so a pod
   * being prepared (under the shared lock) is either already recorded or
   * waits for gc to finish.
   */
  extraRoots?: () => Iterable<string>;
}

export interface GcReport {
  removedImages: ImageRecord[];
  removedBlobs: string[];
  removedSnapshots: string[];
}

export class Store {
  private constructor(
    readonly root: string,
    private readonly locksDir: string,
    readonly content: ContentStore,
    readonly snapshots: SnapshotStore,
    readonly meta: MetadataStore,
  ) {}

  static async open(ctx: Context): Promise<Store> {
    const root = path.join(ctx.dir, 'store');
    const locksDir = path.join(ctx.dir, 'locks');
    try {
      await fs.mkdir(root, { recursive: true, mode: 0o700 });
      await fs.mkdir(locksDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new GantryError('CONFIG_INVALID', `cannot create the state directory ${ctx.dir}: ${(err as Error).message}`, {
        hint: 'run gantry as root, or point --dir at a writable directory',
        cause: err,
      });
    }
    const meta = MetadataStore.open(path.join(root, 'meta.db'));
    return new Store(root, locksDir, new ContentStore(root), new SnapshotStore(root), meta);
  }

  close(): void {
    this.meta.close();
  }

  /** Runs `fn` while holding the store's shared use lock (fetch, render, run). */
  async withUseLock<T>(fn: () => Promise<T>): Promise<T> {
    const lock = await FileLock.acquire(path.join(this.locksDir, 'store.lock'), 'shared', { wait: true });
    try {
      return await fn();
    } finally {
      lock?.release();
    }
  }

  /** The snapshot directories of an image, bottom layer first: what an overlay mount stacks. */
  layerPaths(image: ImageRecord): string[] {
    return image.layers.map((l) => this.snapshots.fsPath(l.chainId));
  }

  /** True when every blob and snapshot the image record names is present. */
  async isComplete(image: ImageRecord): Promise<boolean> {
    const blobs = [image.manifestDigest, image.configDigest, ...image.layers.map((l) => l.digest)];
    for (const d of blobs) if (!(await this.content.has(d))) return false;
    for (const l of image.layers) if (!(await this.snapshots.has(l.chainId))) return false;
    return true;
  }

  /**
   * Removes images unused for the grace period, then every blob and snapshot
   * no remaining image references. Holds the exclusive lock, so it waits for
   * fetches in progress and they wait for it.
   */
  async gc(options: GcOptions = {}): Promise<GcReport> {
    return (await this.changeAndCollect(() => undefined, options)).report;
  }

  /**
   * Runs `change` (metadata edits such as removing images, decided from what
   * it reads then) and a collection, both under the exclusive lock: nothing a
   * fetch or a pod being prepared records can slip in between.
   */
  async changeAndCollect<T>(change: () => T, options: GcOptions = {}): Promise<{ result: T; report: GcReport }> {
    const lock = await FileLock.acquire(path.join(this.locksDir, 'store.lock'), 'exclusive', { wait: true });
    try {
      const result = change();
      const removedImages: ImageRecord[] = [];
      if (options.gracePeriodMs !== undefined) {
        const cutoff = (options.now ?? new Date()).getTime() - options.gracePeriodMs;
        const roots = new Set(options.extraRoots?.() ?? []);
        for (const image of this.meta.listImages()) {
          if (Date.parse(image.lastUsedAt) < cutoff && !roots.has(image.id)) {
            this.meta.removeImage(image.id);
            removedImages.push(image);
          }
        }
      }
      const blobsInUse = this.meta.referencedBlobs();
      const removedBlobs: string[] = [];
      for (const digest of await this.content.list()) {
        if (!blobsInUse.has(digest)) {
          await this.content.remove(digest);
          removedBlobs.push(digest);
        }
      }
      const snapshotsInUse = this.meta.referencedSnapshots();
      const removedSnapshots: string[] = [];
      for (const chainId of await this.snapshots.list()) {
        if (!snapshotsInUse.has(chainId)) {
          await this.snapshots.remove(chainId);
          removedSnapshots.push(chainId);
        }
      }
      // Leftovers of fetches that crashed: nobody holds the use lock now, so
      // nothing in these directories is being written.
      for (const scratch of ['ingest', 'tmp']) {
        const dir = path.join(this.root, scratch);
        for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
          await fs.rm(path.join(dir, name), { recursive: true, force: true });
        }
      }
      return { result, report: { removedImages, removedBlobs, removedSnapshots } };
    } finally {
      lock?.release();
    }
  }
}
