/**
 * The one internal image model every transport produces, and the interface a
 * transport implements.
 *
 * Lifecycle of an ImageSource (one per fetch):
 *   1. `resolve(platform)` reads the manifest (selecting from an index when
 *      needed) and returns it with its raw bytes; nothing is written anywhere.
 *   2. the caller verifies signatures against the resolved manifest digest;
 *   3. `openBlob(descriptor, offset)` streams the config and each layer the
 *      store does not have yet; the caller checks digest and size while
 *      writing; `offset` > 0 asks for a resume (Range request) after a
 *      dropped connection;
 *   4. `close()` releases connections and temp files, whatever happened.
 */
import type { Readable } from 'node:stream';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerForeign: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  /** gantry's own name for an ACI's single tarball (rootfs/ + manifest). */
  aci: 'application/vnd.appc.image.aci.v0+tar',
  appcManifest: 'application/vnd.appc.image.manifest.v0+json',
} as const;

/** "sha256:<hex>" or "sha512:<hex>". */
export type Digest = string;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

/** A layer as the store needs it: where to get it and how to read it. */
export interface LayerDescriptor extends Descriptor {
  compression: LayerCompression;
  /**
   * For ACIs: the prefix inside the tarball that holds the filesystem
   * ("rootfs/"); entries outside it (the manifest) are not part of the tree.
   */
  rootPrefix?: string;
}

/** A manifest resolved by a transport, before anything is fetched. */
export interface ResolvedManifest {
  /** Canonical name the user's reference resolved to, e.g. docker.io/library/busybox:latest. */
  name: string;
  /** Digest of the exact manifest bytes (the image ID is the manifest digest). */
  digest: Digest;
  mediaType: string;
  /** The raw manifest bytes, kept verbatim so the digest stays checkable. */
  raw: Buffer;
  /** Digest of the index/manifest list the manifest was selected from, if any. */
  indexDigest?: Digest;
  config: Descriptor;
  layers: LayerDescriptor[];
  platform: Platform;
  /** 'oci' covers OCI and Docker schema 2; 'appc' is an ACI. */
  format: 'oci' | 'appc';
}

export interface ImageSource {
  /** Human-readable origin, used in errors and progress ("docker://127.0.0.1:5000/busybox:latest"). */
  readonly description: string;
  resolve(platform: Platform): Promise<ResolvedManifest>;
  /** Streams a blob from `offset` (for resumes); the caller verifies it. */
  openBlob(descriptor: Descriptor, offset?: number): Promise<Readable>;
  close(): Promise<void>;
}

/** The image config fields gantry uses (OCI image-spec config "config" object). */
export interface ImageRunConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
}

/** An OCI image config blob. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: ImageRunConfig;
  rootfs?: { type: string; diff_ids: Digest[] };
  history?: unknown[];
}

/** The host's platform in OCI terms (`--platform` default). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}
