/**
 * The metadata index: which images exist, their names (tags) and layers, in
 * SQLite (`<dir>/store/meta.db`, better-sqlite3).
 *
 * Lifecycle: `MetadataStore.open` opens (creating) the database, switches it
 * to WAL with a busy timeout so several gantry processes can use it at once,
 * and migrates the schema (versioned by PRAGMA user_version; migrations are
 * the numbered list below, applied in one IMMEDIATE transaction so two
 * processes opening a fresh store do not both migrate). Every write is one
 * transaction. `close()` when done.
 *
 * The index only names content; blobs and snapshots live in the content and
 * snapshot stores. An image's id is its manifest digest.
 */
import Database from 'better-sqlite3';
import { GantryError } from '../errors.js';
import type { Digest } from '../image/model.js';

export interface LayerRecord {
  digest: Digest;
  mediaType: string;
  size: number;
  diffId: Digest;
  chainId: Digest;
}

export interface ImageRecord {
  /** The manifest digest. */
  id: Digest;
  names: string[];
  manifestDigest: Digest;
  manifestMediaType: string;
  configDigest: Digest;
  indexDigest?: Digest;
  format: 'oci' | 'appc';
  platform: { os: string; architecture: string; variant?: string };
  layers: LayerRecord[];
  /** Sum of the blob sizes. */
  size: number;
  unpackedSize: number;
  /** ISO 8601. */
  fetchedAt: string;
  lastUsedAt: string;
  labels: Record<string, string>;
  /** Where it came from ("docker://...", a file path). */
  source: string;
}

const MIGRATIONS: string[] = [
  // 1: initial schema
  `CREATE TABLE images (
     id TEXT PRIMARY KEY,
     manifest_digest TEXT NOT NULL,
     manifest_media_type TEXT NOT NULL,
     config_digest TEXT NOT NULL,
     index_digest TEXT,
     format TEXT NOT NULL,
     os TEXT NOT NULL,
     architecture TEXT NOT NULL,
     variant TEXT,
     size INTEGER NOT NULL,
     unpacked_size INTEGER NOT NULL,
     fetched_at TEXT NOT NULL,
     last_used_at TEXT NOT NULL,
     labels TEXT NOT NULL,
     source TEXT NOT NULL
   );
   CREATE TABLE names (
     name TEXT PRIMARY KEY,
     image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
   );
   CREATE INDEX names_image ON names(image_id);
   CREATE TABLE layers (
     image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
     position INTEGER NOT NULL,
     digest TEXT NOT NULL,
     media_type TEXT NOT NULL,
     size INTEGER NOT NULL,
     diff_id TEXT NOT NULL,
     chain_id TEXT NOT NULL,
     PRIMARY KEY (image_id, position)
   );
   CREATE INDEX layers_digest ON layers(digest);
   CREATE INDEX layers_chain ON layers(chain_id);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

interface ImageRow {
  id: string;
  manifest_digest: string;
  manifest_media_type: string;
  config_digest: string;
  index_digest: string | null;
  format: string;
  os: string;
  architecture: string;
  variant: string | null;
  size: number;
  unpacked_size: number;
  fetched_at: string;
  last_used_at: string;
  labels: string;
  source: string;
}

interface LayerRow {
  image_id: string;
  position: number;
  digest: string;
  media_type: string;
  size: number;
  diff_id: string;
  chain_id: string;
}

const BUSY_TIMEOUT_MS = 30_000;

export class MetadataStore {
  private constructor(private readonly db: Database.Database, readonly path: string) {}

  static open(dbPath: string): MetadataStore {
    let db: Database.Database;
    try {
      db = new Database(dbPath, { timeout: BUSY_TIMEOUT_MS });
    } catch (err) {
      throw new GantryError('STORE_CORRUPT', `cannot open the metadata database ${dbPath}: ${(err as Error).message}`, {
        hint: 'check that the state directory is writable and not damaged',
        cause: err,
      });
    }
    try {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      migrate(db, dbPath);
    } catch (err) {
      db.close();
      if (err instanceof GantryError) throw err;
      throw new GantryError('STORE_CORRUPT', `cannot use the metadata database ${dbPath}: ${(err as Error).message}`, {
        hint: 'another gantry process may hold it for too long, or the file is damaged',
        cause: err,
      });
    }
    return new MetadataStore(db, dbPath);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /**
   * Inserts or updates an image. Names are added, not replaced: each of
   * `rec.names` now points at this image (moving it from any other image,
   * like a tag), and names the image already had stay (use removeName).
   */
  putImage(rec: ImageRecord): void {
    const tx = this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO images (id, manifest_digest, manifest_media_type, config_digest, index_digest, format, os, architecture, variant,
                               size, unpacked_size, fetched_at, last_used_at, labels, source)
           VALUES (@id, @manifest_digest, @manifest_media_type, @config_digest, @index_digest, @format, @os, @architecture, @variant,
                   @size, @unpacked_size, @fetched_at, @last_used_at, @labels, @source)
           ON CONFLICT(id) DO UPDATE SET
             manifest_digest = excluded.manifest_digest, manifest_media_type = excluded.manifest_media_type,
             config_digest = excluded.config_digest, index_digest = excluded.index_digest, format = excluded.format,
             os = excluded.os, architecture = excluded.architecture, variant = excluded.variant, size = excluded.size,
             unpacked_size = excluded.unpacked_size, fetched_at = excluded.fetched_at, last_used_at = excluded.last_used_at,
             labels = excluded.labels, source = excluded.source`,
        )
        .run(toRow(rec));
      this.db.prepare('DELETE FROM layers WHERE image_id = ?').run(rec.id);
      const insertLayer = this.db.prepare(
        'INSERT INTO layers (image_id, position, digest, media_type, size, diff_id, chain_id) VALUES (?, ?, ?, ?, ?, ?, ?)',
      );
      rec.layers.forEach((l, i) => insertLayer.run(rec.id, i, l.digest, l.mediaType, l.size, l.diffId, l.chainId));
      const insertName = this.db.prepare(
        'INSERT INTO names (name, image_id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id',
      );
      for (const name of new Set(rec.names)) insertName.run(name, rec.id);
    });
    tx.immediate();
  }

  getImage(id: Digest): ImageRecord | undefined {
    const row = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
    return row ? this.assemble([row])[0] : undefined;
  }

  findImage(idPrefixOrName: string): ImageRecord | undefined {
    const query = idPrefixOrName.trim();
    if (query === '') return undefined;
    const exact = this.getImage(query);
    if (exact) return exact;
    const named = this.db.prepare('SELECT image_id FROM names WHERE name = ?').get(query) as { image_id: string } | undefined;
    if (named) return this.getImage(named.image_id);

    const m = /^(?:(sha256|sha512):)?([0-9a-f]{6,128})$/.exec(query.toLowerCase());
    if (!m) return undefined;
    const rows = (
      m[1]
        ? this.db.prepare("SELECT id FROM images WHERE substr(id, 1, length(?)) = ?").all(`${m[1]}:${m[2]}`, `${m[1]}:${m[2]}`)
        : this.db.prepare("SELECT id FROM images WHERE substr(id, instr(id, ':') + 1, length(?)) = ?").all(m[2], m[2])
    ) as { id: string }[];
    if (rows.length === 0) return undefined;
    if (rows.length > 1) {
      const candidates = rows.map((r) => {
        const names = (this.db.prepare('SELECT name FROM names WHERE image_id = ? ORDER BY name').all(r.id) as { name: string }[]).map((n) => n.name);
        return `${r.id.slice(0, 19)}${names.length ? ` (${names.join(', ')})` : ''}`;
      });
      throw new GantryError('AMBIGUOUS_IMAGE', `image ID prefix "${query}" matches ${rows.length} images: ${candidates.join('; ')}`, {
        hint: 'give more digits of the image ID, or use a name',
      });
    }
    return this.getImage(rows[0].id);
  }

  listImages(): ImageRecord[] {
    const rows = this.db.prepare('SELECT * FROM images ORDER BY fetched_at DESC, id').all() as ImageRow[];
    return this.assemble(rows);
  }

  removeImage(id: Digest): void {
    // names and layers go with it (ON DELETE CASCADE).
    this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
  }

  removeName(name: string): void {
    this.db.prepare('DELETE FROM names WHERE name = ?').run(name);
  }

  touch(id: Digest, when: Date = new Date()): void {
    this.db.prepare('UPDATE images SET last_used_at = ? WHERE id = ?').run(when.toISOString(), id);
  }

  referencedBlobs(): Set<Digest> {
    const out = new Set<Digest>();
    const rows = this.db
      .prepare(
        `SELECT manifest_digest AS d FROM images UNION SELECT config_digest FROM images
         UNION SELECT index_digest FROM images WHERE index_digest IS NOT NULL UNION SELECT digest FROM layers`,
      )
      .all() as { d: string }[];
    for (const r of rows) out.add(r.d);
    return out;
  }

  referencedSnapshots(): Set<Digest> {
    const rows = this.db.prepare('SELECT DISTINCT chain_id AS c FROM layers').all() as { c: string }[];
    return new Set(rows.map((r) => r.c));
  }

  /** Builds records for rows with two extra queries in total, not two per image. */
  private assemble(rows: ImageRow[]): ImageRecord[] {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    const placeholders = ids.map(() => '?').join(',');
    const names = new Map<string, string[]>();
    const layers = new Map<string, LayerRecord[]>();
    // Bounded by SQLite's variable limit (32766) in practice; a store with more images than that is not a use case.
    for (const n of this.db.prepare(`SELECT name, image_id FROM names WHERE image_id IN (${placeholders}) ORDER BY name`).all(...ids) as { name: string; image_id: string }[]) {
      const list = names.get(n.image_id) ?? [];
      list.push(n.name);
      names.set(n.image_id, list);
    }
    for (const l of this.db.prepare(`SELECT * FROM layers WHERE image_id IN (${placeholders}) ORDER BY image_id, position`).all(...ids) as LayerRow[]) {
      const list = layers.get(l.image_id) ?? [];
      list.push({ digest: l.digest, mediaType: l.media_type, size: l.size, diffId: l.diff_id, chainId: l.chain_id });
      layers.set(l.image_id, list);
    }
    return rows.map((r) => fromRow(r, names.get(r.id) ?? [], layers.get(r.id) ?? []));
  }
}

function migrate(db: Database.Database, dbPath: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new GantryError('STORE_CORRUPT', `the metadata database ${dbPath} has schema version ${current}; this gantry knows up to ${SCHEMA_VERSION}`, {
      hint: 'a newer gantry wrote this store; use that version, or a different --dir',
    });
  }
  if (current === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Re-read inside the write lock: another process may have migrated meanwhile.
    const version = db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function toRow(rec: ImageRecord): ImageRow {
  return {
    id: rec.id,
    manifest_digest: rec.manifestDigest,
    manifest_media_type: rec.manifestMediaType,
    config_digest: rec.configDigest,
    index_digest: rec.indexDigest ?? null,
    format: rec.format,
    os: rec.platform.os,
    architecture: rec.platform.architecture,
    variant: rec.platform.variant ?? null,
    size: rec.size,
    unpacked_size: rec.unpackedSize,
    fetched_at: rec.fetchedAt,
    last_used_at: rec.lastUsedAt,
    labels: JSON.stringify(rec.labels ?? {}),
    source: rec.source,
  };
}

function fromRow(r: ImageRow, names: string[], layers: LayerRecord[]): ImageRecord {
  let labels: Record<string, string> = {};
  try {
    labels = JSON.parse(r.labels) as Record<string, string>;
  } catch {
    // A damaged labels column should not make the image unusable.
  }
  return {
    id: r.id,
    names,
    manifestDigest: r.manifest_digest,
    manifestMediaType: r.manifest_media_type,
    configDigest: r.config_digest,
    ...(r.index_digest !== null ? { indexDigest: r.index_digest } : {}),
    format: r.format === 'appc' ? 'appc' : 'oci',
    platform: { os: r.os, architecture: r.architecture, ...(r.variant !== null ? { variant: r.variant } : {}) },
    layers,
    size: r.size,
    unpackedSize: r.unpacked_size,
    fetchedAt: r.fetched_at,
    lastUsedAt: r.last_used_at,
    labels,
    source: r.source,
  };
}
