/**
 * The image store's public surface: content (blobs by digest), snapshots
 * (unpacked layers in overlay form), metadata (SQLite index), rendering, and
 * the file locks that make concurrent gantry processes safe.
 */
export { ContentStore, type IngestOptions } from './content.js';
export { parseDigest, isValidDigest, digestOf, type DigestAlgorithm } from '../image/digest.js';
export { SnapshotStore, type UnpackResult, type UnpackLayer, type SnapshotMeta } from './snapshots.js';
export { MetadataStore, SCHEMA_VERSION, type ImageRecord, type LayerRecord } from './metadata.js';
export { renderSnapshots } from './render.js';
export { extractTar, decompressor, OPAQUE_XATTR, type ExtractOptions, type ExtractStats } from './extract.js';
export { FileLock, type LockMode, type AcquireOptions } from './lock.js';
