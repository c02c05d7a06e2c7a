/** Finds an image already in the store by ID, ID prefix or name (as typed, or normalised like docker://). */
import { GantryError } from '../errors.js';
import type { ImageRecord } from '../store/metadata.js';
import type { Store } from '../store/store.js';
import { parseDockerName } from './reference.js';

export function findStoredImage(store: Store, text: string): ImageRecord | undefined {
  const direct = store.meta.findImage(text);
  if (direct) return direct;
  const canonical = canonicalName(text);
  return canonical === undefined ? undefined : store.meta.findImage(canonical);
}

/** The name `text` stands for in the store ("busybox" -> "docker.io/library/busybox:latest"), or undefined if it is no docker name. */
export function canonicalName(text: string): string | undefined {
  const name = text.startsWith('docker://') ? text.slice('docker://'.length) : text;
  try {
    return parseDockerName(name).canonical;
  } catch {
    return undefined;
  }
}

export function requireStoredImage(store: Store, text: string): ImageRecord {
  const image = findStoredImage(store, text);
  if (!image) {
    throw new GantryError('IMAGE_NOT_FOUND', `no image "${text}" in the store`, { hint: 'gantry image list shows what the store holds; gantry fetch adds an image' });
  }
  return image;
}
