/**
 * The docker:// transport: an ImageSource that reads an image from an OCI
 * distribution registry (or its mirrors from registries.conf).
 *
 * Lifecycle (see model.ts):
 *   open    resolves registries.conf into an ordered endpoint list (mirrors
 *           first, then the location); nothing touches the network yet;
 *   resolve tries each endpoint for the manifest (moving on after 404, 5xx,
 *           auth or connection failures, reporting the most meaningful
 *           error if all fail), verifies its digest, selects the platform
 *           from an index, and pins the endpoint that answered;
 *   openBlob streams blobs from that endpoint, resuming with Range;
 *   close   drops the keep-alive connections.
 */
import { Transform, type Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import type { Context } from '../../context.js';
import { GantryError, isGantryError } from '../../errors.js';
import { MAX_MANIFEST_SIZE, MANIFEST_ACCEPT, formatPlatform, normalizePlatform, parseManifest, selectPlatform, verifyDigest } from '../manifest.js';
import type { Descriptor, ImageSource, Platform, ResolvedManifest } from '../model.js';
import { digestOf, digestProblem } from '../digest.js';
import type { DockerReference } from '../reference.js';
import { HttpPool, RegistryClient, discard, readBody, registryErrorText } from './client.js';
import { findCredentials, type Credentials } from './credentials.js';
import { loadRegistriesConf, resolvePullSources, type PullEndpoint, type RegistriesConf } from './registries-conf.js';

export interface RegistrySourceOptions {
  /** Explicit credentials (--creds); otherwise the auth files are read. */
  credentials?: Credentials;
  /** Auth files to read instead of the default list. */
  authFiles?: string[];
  /** Parsed registries.conf; loaded from ctx.containersConfig when omitted. */
  registriesConf?: RegistriesConf;
  /** Extra CA bundle (PEM) to trust; default $GANTRY_CA_FILE. */
  caFile?: string;
  /** Socket idle timeout in ms (default 30 s). */
  timeoutMs?: number;
}

/** Nested indexes are followed at most this deep (an index of indexes is legal but rare). */
const MAX_INDEX_DEPTH = 3;

/** Errors that say something about the endpoint, not the image: try the next endpoint. */
const ENDPOINT_ERRORS = new Set(['IMAGE_NOT_FOUND', 'REGISTRY_ERROR', 'REGISTRY_UNREACHABLE', 'INSECURE_TRANSPORT', 'UNAUTHORIZED', 'DIGEST_MISMATCH', 'DOWNLOAD_INTERRUPTED']);

function interrupted(what: string, received: number, expected: number | undefined, cause?: unknown): GantryError {
  return new GantryError('DOWNLOAD_INTERRUPTED',
    `${what}: the connection closed after ${received}${expected !== undefined ? ` of ${expected}` : ''} bytes`, {
      hint: 'run the command again; the download resumes where it stopped',
      ...(cause !== undefined ? { cause } : {}),
    });
}

/**
 * Passes a response body through, dropping the first `skip` bytes (a
 * server that ignored Range) and turning a premature close into
 * DOWNLOAD_INTERRUPTED.
 */
function guardBody(res: IncomingMessage, skip: number, what: string, limit: number): Readable {
  const lengthHeader = res.headers['content-length'];
  const expected = lengthHeader !== undefined && /^[0-9]+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  let received = 0;
  let delivered = 0;
  let toSkip = skip;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      if (toSkip > 0) {
        if (chunk.length <= toSkip) {
          toSkip -= chunk.length;
          cb();
          return;
        }
        chunk = chunk.subarray(toSkip);
        toSkip = 0;
      }
      delivered += chunk.length;
      // A hostile server must not be able to fill the disk past the descriptor's size.
      if (delivered > limit) {
        cb(new GantryError('SIZE_MISMATCH', `${what}: the registry sent more than the ${limit} bytes the manifest declares`, {
          hint: 'the registry serves inconsistent content; report it to its operator',
        }));
        return;
      }
      cb(null, chunk);
    },
    flush(cb) {
      if ((expected !== undefined && received !== expected) || toSkip > 0) cb(interrupted(what, received, expected));
      else cb();
    },
  });
  res.on('error', (err) => out.destroy(interrupted(what, received, expected, err)));
  res.on('close', () => {
    if (!res.complete) out.destroy(interrupted(what, received, expected));
  });
  out.on('close', () => {
    if (!res.complete) res.destroy();
  });
  res.pipe(out);
  return out;
}

class RegistryImageSource implements ImageSource {
  readonly description: string;
  private readonly pool: HttpPool;
  private readonly clients: RegistryClient[];
  private pinned: RegistryClient | undefined;

  constructor(private readonly ref: DockerReference, private readonly ctx: Context, endpoints: PullEndpoint[], opts: RegistrySourceOptions) {
    this.description = `docker://${ref.canonical}`;
    this.pool = new HttpPool({ debug: ctx.debug, ...(opts.caFile !== undefined ? { caFile: opts.caFile } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
    this.clients = endpoints.map((ep) => new RegistryClient(this.pool, {
      registry: ep.registry,
      repository: ep.repository,
      allowHttp: ep.insecure || ctx.insecure.has('http'),
      skipTlsVerify: ep.insecure || ctx.insecure.has('tls'),
      credentials: opts.credentials ?? findCredentials(ep.registry, ep.repository, { ...(opts.authFiles ? { files: opts.authFiles } : {}), debug: ctx.debug }),
    }));
  }

  /** Token requests made so far over all endpoints (tests assert reuse). */
  get tokenRequests(): number {
    return this.clients.reduce((n, c) => n + c.authenticator.tokenRequests, 0);
  }

  private where(client: RegistryClient, reference: string): string {
    return `${client.registry}/${client.repository}${reference.includes(':') ? '@' : ':'}${reference}`;
  }

  /** GETs and verifies one manifest (by tag or digest) from one endpoint. */
  private async fetchManifest(client: RegistryClient, reference: string): Promise<{ raw: Buffer; contentType: string | undefined; digest: string }> {
    const where = this.where(client, reference);
    const res = await client.get(`/v2/${client.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT.join(', ') }, `manifest ${where}`);
    if (res.status === 404) {
      const text = registryErrorText(await readBody(res.body, 64 * 1024, `error from ${client.registry}`).catch(() => Buffer.alloc(0)));
      throw new GantryError('IMAGE_NOT_FOUND', `image ${this.description} not found${client.registry !== this.ref.registry || client.repository !== this.ref.repository ? ` (looked at ${where})` : ''}${text ? `: ${text}` : ''}`, {
        hint: 'check the name and tag (gantry image list shows local images)',
      });
    }
    if (res.status !== 200) {
      const text = registryErrorText(await readBody(res.body, 64 * 1024, `error from ${client.registry}`).catch(() => Buffer.alloc(0)));
      throw new GantryError('REGISTRY_ERROR', `registry ${client.registry} answered HTTP ${res.status} for manifest ${where}${text ? `: ${text}` : ''}`, {
        hint: res.status >= 500 ? 'the registry has a problem; try again later' : 'the registry refused the request',
      });
    }
    const raw = await readBody(res.body, MAX_MANIFEST_SIZE, `manifest ${where}`);
    const contentTypeHeader = res.headers['content-type'];
    const headerDigest = res.headers['docker-content-digest'];
    const byDigest = digestProblem(reference) === undefined;
    if (byDigest) verifyDigest(raw, reference, `manifest ${where}`);
    if (typeof headerDigest === 'string' && headerDigest !== '' && digestProblem(headerDigest) === undefined) {
      verifyDigest(raw, headerDigest, `manifest ${where} (Docker-Content-Digest header)`);
    }
    const digest = byDigest ? reference : digestOf(raw);
    return { raw, contentType: contentTypeHeader, digest };
  }

  private async resolveAt(client: RegistryClient, platform: Platform): Promise<ResolvedManifest> {
    const first = this.ref.digest ?? this.ref.tag ?? 'latest';
    let fetched = await this.fetchManifest(client, first);
    let where = this.where(client, first);
    let parsed = parseManifest(fetched.raw, fetched.contentType, `manifest ${where}`);
    let indexDigest: string | undefined;
    let selected: Platform | undefined;
    for (let depth = 0; parsed.kind === 'index'; depth++) {
      if (depth >= MAX_INDEX_DEPTH) {
        throw new GantryError('MANIFEST_INVALID', `manifest ${where}: indexes nested more than ${MAX_INDEX_DEPTH} deep`);
      }
      indexDigest ??= fetched.digest;
      const choice: Descriptor = selectPlatform(parsed, platform, `image ${this.description}`);
      if (choice.platform) selected = normalizePlatform(choice.platform);
      this.ctx.debug(`${this.description}: selected ${choice.digest} for ${selected ? formatPlatform(selected) : 'the only entry'}`);
      fetched = await this.fetchManifest(client, choice.digest);
      if (fetched.raw.length !== choice.size) {
        throw new GantryError('SIZE_MISMATCH', `manifest ${this.where(client, choice.digest)} is ${fetched.raw.length} bytes, the index says ${choice.size}`, {
          hint: 'the registry serves inconsistent content; report it to its operator',
        });
      }
      where = this.where(client, choice.digest);
      parsed = parseManifest(fetched.raw, choice.mediaType, `manifest ${where}`);
    }
    if (parsed.kind !== 'manifest') throw new GantryError('MANIFEST_INVALID', `manifest ${where}: not an image manifest`);
    const resolved: ResolvedManifest = {
      name: this.ref.canonical,
      digest: fetched.digest,
      mediaType: parsed.mediaType,
      raw: fetched.raw,
      config: parsed.config,
      layers: parsed.layers,
      platform: selected ?? normalizePlatform(platform),
      format: 'oci',
    };
    if (indexDigest !== undefined) resolved.indexDigest = indexDigest;
    return resolved;
  }

  async resolve(platform: Platform): Promise<ResolvedManifest> {
    const errors: GantryError[] = [];
    for (const client of this.clients) {
      try {
        const resolved = await this.resolveAt(client, platform);
        this.pinned = client;
        if (client !== this.clients[this.clients.length - 1]) this.ctx.debug(`${this.description}: using mirror ${client.registry}/${client.repository}`);
        return resolved;
      } catch (err) {
        if (!isGantryError(err) || !ENDPOINT_ERRORS.has(err.code) || this.clients.length === 1) throw err;
        this.ctx.debug(`${this.description}: ${client.registry}: ${err.message}`);
        errors.push(err);
      }
    }
    // The last error that is not "unreachable" says most (a 404 from the real registry beats a dead mirror).
    const meaningful = [...errors].reverse().find((e) => e.code !== 'REGISTRY_UNREACHABLE') ?? errors[errors.length - 1]!;
    throw meaningful;
  }

  async openBlob(descriptor: Descriptor, offset = 0): Promise<Readable> {
    const client = this.pinned ?? this.clients[this.clients.length - 1]!;
    const problem = digestProblem(descriptor.digest);
    if (problem) throw new GantryError('MANIFEST_INVALID', `${this.description}: ${problem}`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > descriptor.size) {
      throw new RangeError(`offset must be an integer between 0 and ${descriptor.size}, got ${offset}`);
    }
    const what = `blob ${descriptor.digest} of ${this.description}`;
    const headers: Record<string, string> = { accept: '*/*' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await client.get(`/v2/${client.repository}/blobs/${descriptor.digest}`, headers, what);
    if (res.status === 206 && offset > 0) {
      const range = res.headers['content-range'];
      const m = typeof range === 'string' ? /^bytes ([0-9]+)-/.exec(range) : null;
      if (m && Number(m[1]) !== offset) {
        discard(res.body);
        throw new GantryError('REGISTRY_ERROR', `${what}: asked for bytes from ${offset}, the registry sent from ${m[1]}`);
      }
      return guardBody(res.body, 0, what, descriptor.size - offset);
    }
    if (res.status === 200) return guardBody(res.body, offset, what, descriptor.size - offset);
    if (res.status === 416 && offset > 0) {
      discard(res.body);
      throw new GantryError('DOWNLOAD_INTERRUPTED', `${what}: the registry cannot resume at byte ${offset} (HTTP 416)`, {
        hint: 'the partial download is unusable; start it again from the beginning',
      });
    }
    const text = registryErrorText(await readBody(res.body, 64 * 1024, `error from ${client.registry}`).catch(() => Buffer.alloc(0)));
    throw new GantryError('REGISTRY_ERROR', `registry ${client.registry} answered HTTP ${res.status} for ${what}${text ? `: ${text}` : ''}`, {
      hint: res.status === 404 ? 'the registry lost a blob of this image; re-push the image' : 'try again later',
    });
  }

  /** The reference this source was opened for (signature policy scopes and identities). */
  get reference(): DockerReference {
    return this.ref;
  }

  /**
   * Reads another manifest of the same repository from the endpoint that
   * served the image (e.g. the cosign signature tag `sha256-<hex>.sig`);
   * undefined when the registry has no such manifest.
   */
  async fetchSiblingManifest(reference: string): Promise<{ raw: Buffer; contentType: string | undefined; digest: string } | undefined> {
    const client = this.pinned ?? this.clients[this.clients.length - 1]!;
    try {
      return await this.fetchManifest(client, reference);
    } catch (err) {
      if (isGantryError(err, 'IMAGE_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /** Reads a small blob of the same repository whole, checking its size and digest. */
  async readSiblingBlob(descriptor: Descriptor, limit: number): Promise<Buffer> {
    if (descriptor.size > limit) {
      throw new GantryError('MANIFEST_INVALID', `${this.description}: blob ${descriptor.digest} claims ${descriptor.size} bytes, more than the ${limit} accepted here`);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of await this.openBlob(descriptor)) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    verifyDigest(body, descriptor.digest, `blob ${descriptor.digest} of ${this.description}`);
    return body;
  }

  async close(): Promise<void> {
    this.pool.close();
  }
}

/**
 * Opens a docker:// source. Reads registries.conf (unless given) and may
 * throw REGISTRY_BLOCKED or CONFIG_INVALID; does no network I/O.
 */
export async function openRegistrySource(ref: DockerReference, ctx: Context, opts: RegistrySourceOptions = {}): Promise<ImageSource & { readonly tokenRequests: number }> {
  const conf = opts.registriesConf ?? loadRegistriesConf(ctx);
  const endpoints = resolvePullSources(ref, conf);
  ctx.debug(`${ref.canonical}: endpoints ${endpoints.map((e) => `${e.registry}/${e.repository}${e.isMirror ? ' (mirror)' : ''}${e.insecure ? ' (insecure)' : ''}`).join(', ')}`);
  return new RegistryImageSource(ref, ctx, endpoints, opts);
}
