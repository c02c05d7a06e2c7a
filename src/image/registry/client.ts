/**
 * HTTP for the registry client, on node:http/node:https (they let us skip
 * TLS verification per endpoint and stream bodies with Range resumes).
 *
 * Lifecycle: an HttpPool owns keep-alive agents for one image source and is
 * closed with it. A RegistryClient talks to one endpoint (a registry or a
 * mirror): the first request pings /v2/ to learn the scheme (https, or http
 * when allowed) and the auth challenge; every later request carries the
 * Authorization header up front, follows redirects (dropping credentials
 * when the host changes), and answers a 401 by refreshing auth once.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { GantryError, errnoCode } from '../../errors.js';
import { Authenticator, challengeFromResponse, type Challenge } from './auth.js';
import { credentialsHint, type Credentials } from './credentials.js';

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 5;
const USER_AGENT = 'gantry/0.1';

export interface HttpPoolOptions {
  /** Extra PEM CA certificates trusted besides the system roots (default: $GANTRY_CA_FILE). */
  caFile?: string;
  /** Socket idle timeout; a stalled connection fails after this long. */
  timeoutMs?: number;
  debug?: (message: string) => void;
}

/** Keep-alive agents shared by every request of one image source. */
export class HttpPool {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  private readonly httpsAgents = new Map<boolean, https.Agent>();
  private readonly ca: string[] | undefined;
  readonly timeoutMs: number;
  readonly debug: (message: string) => void;

  constructor(opts: HttpPoolOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.debug = opts.debug ?? (() => {});
    const caFile = opts.caFile ?? process.env.GANTRY_CA_FILE;
    if (caFile) {
      let pem: string;
      try {
        pem = readFileSync(caFile, 'utf8');
      } catch (err) {
        throw new GantryError('CONFIG_INVALID', `cannot read CA file ${caFile}: ${(err as Error).message}`, { cause: err });
      }
      this.ca = [...rootCertificates, pem];
    }
  }

  private agentFor(url: URL, skipTlsVerify: boolean): http.Agent {
    if (url.protocol === 'http:') return this.httpAgent;
    let agent = this.httpsAgents.get(skipTlsVerify);
    if (!agent) {
      agent = new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: !skipTlsVerify, ...(this.ca ? { ca: this.ca } : {}) });
      this.httpsAgents.set(skipTlsVerify, agent);
    }
    return agent;
  }

  /** One request, no redirects; resolves when the response headers arrive. */
  request(url: URL, opts: { method?: string; headers?: Record<string, string>; skipTlsVerify?: boolean }): Promise<IncomingMessage> {
    const method = opts.method ?? 'GET';
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, {
        method,
        headers: { 'user-agent': USER_AGENT, ...opts.headers },
        agent: this.agentFor(url, opts.skipTlsVerify ?? false),
        timeout: this.timeoutMs,
      }, (res) => {
        this.debug(`${method} ${url.href} -> ${res.statusCode ?? '?'}${opts.headers?.range ? ` (${opts.headers.range})` : ''}`);
        resolve(res);
      });
      req.on('timeout', () => {
        req.destroy(Object.assign(new Error(`no data for ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      });
      req.on('error', (err) => {
        this.debug(`${method} ${url.href} -> ${(err as Error).message}`);
        reject(err);
      });
      req.end();
    });
  }

  close(): void {
    this.httpAgent.destroy();
    for (const agent of this.httpsAgents.values()) agent.destroy();
  }
}

/** Reads a whole (small) body, failing once it exceeds `limit` bytes. */
export async function readBody(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        res.destroy();
        throw new GantryError('MANIFEST_INVALID', `${what} is larger than ${limit} bytes`, { hint: 'the source is not a conforming registry' });
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof GantryError) throw err;
    throw new GantryError('DOWNLOAD_INTERRUPTED', `${what}: the connection broke while reading the response (${(err as Error).message})`, {
      hint: 'check the network and try again',
      cause: err,
    });
  }
  if (!res.complete) {
    throw new GantryError('DOWNLOAD_INTERRUPTED', `${what}: the connection closed before the response was complete`, { hint: 'try again' });
  }
  return Buffer.concat(chunks);
}

/** Throws the body away so the connection can be reused. */
export function discard(res: IncomingMessage): void {
  res.resume();
  res.on('error', () => {});
}

const TLS_PROTOCOL_CODES = new Set(['EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST']);

export function isTlsError(err: unknown): boolean {
  const code = errnoCode(err) ?? '';
  return TLS_PROTOCOL_CODES.has(code) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.includes('CERT') || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE';
}

function isCertError(err: unknown): boolean {
  const code = errnoCode(err) ?? '';
  return code.includes('CERT') || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'ERR_TLS_CERT_ALTNAME_INVALID';
}

/** Maps a Node network error to REGISTRY_UNREACHABLE or INSECURE_TRANSPORT. */
export function networkError(err: unknown, host: string, url: URL): GantryError {
  if (err instanceof GantryError) return err;
  // OpenSSL messages carry a multi-line trace; the first line, trimmed, is enough.
  const message = ((err as Error).message ?? String(err)).split('\n')[0]!.replace(/^(\w+ EPROTO) [0-9A-F]+:error:[0-9A-F]+:SSL routines:[^:]*:([^:]+):.*$/, '$1 $2').slice(0, 200);
  if (isCertError(err)) {
    return new GantryError('INSECURE_TRANSPORT', `${host}: TLS certificate verification failed for ${url.origin} (${message})`, {
      hint: 'install the registry\'s CA (or set GANTRY_CA_FILE), or accept it explicitly with --insecure-options=tls or "insecure = true" in registries.conf',
      cause: err,
    });
  }
  if (isTlsError(err)) {
    return new GantryError('INSECURE_TRANSPORT', `${host}: TLS handshake with ${url.origin} failed (${message}); the registry probably serves plain http`, {
      hint: 'if you trust this registry over plain http, allow it with --insecure-options=http or "insecure = true" for it in registries.conf',
      cause: err,
    });
  }
  return new GantryError('REGISTRY_UNREACHABLE', `cannot reach registry ${host} at ${url.origin}: ${message}`, {
    hint: 'check the registry name, the network and any proxy, then try again',
    cause: err,
  });
}

/** "MANIFEST_UNKNOWN: manifest unknown" from a registry's JSON error body, if it has one. */
export function registryErrorText(body: Buffer): string {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(doc.errors) && doc.errors.length > 0) {
      return doc.errors.map((e) => [e.code, e.message].filter((x) => typeof x === 'string' && x !== '').join(': ')).join('; ');
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return body.toString('utf8').replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** The host serving the Hub's v2 API; "docker.io" itself does not. */
export function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

export interface EndpointOptions {
  /** Registry host[:port] as named in references ("docker.io" for the Hub). */
  registry: string;
  repository: string;
  allowHttp: boolean;
  skipTlsVerify: boolean;
  credentials: Credentials | undefined;
}

/** A response whose headers arrived; the caller owns the body. */
export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  url: URL;
}

/** Talks to one registry endpoint for one repository. */
export class RegistryClient {
  readonly registry: string;
  readonly repository: string;
  readonly authenticator: Authenticator;
  private base: URL | undefined;
  private challenge: Challenge | undefined;
  private pinged: Promise<void> | undefined;

  constructor(private readonly pool: HttpPool, private readonly opts: EndpointOptions) {
    this.registry = opts.registry;
    this.repository = opts.repository;
    this.authenticator = new Authenticator(opts.registry, opts.credentials, (url, headers) => this.fetchToken(url, headers), pool.debug, credentialsHint());
  }

  get scope(): string {
    return `repository:${this.repository}:pull`;
  }

  /** "https://host" once known (after the first request). */
  get origin(): string {
    return this.base?.origin ?? `https://${apiHost(this.registry)}`;
  }

  private async fetchToken(url: URL, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> {
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new GantryError('REGISTRY_ERROR', `${this.registry}: token realm ${url.href} is not an http(s) URL`);
    }
    if (url.protocol === 'http:' && !this.opts.allowHttp) {
      throw new GantryError('INSECURE_TRANSPORT', `${this.registry}: the token server ${url.origin} uses plain http`, {
        hint: 'allow plain http for this registry with --insecure-options=http or "insecure = true" in registries.conf',
      });
    }
    let res: IncomingMessage;
    try {
      res = await this.pool.request(url, { headers: { accept: 'application/json', ...headers }, skipTlsVerify: this.opts.skipTlsVerify });
    } catch (err) {
      throw networkError(err, `token server of ${this.registry}`, url);
    }
    const body = await readBody(res, 1024 * 1024, `token from ${url.origin}`);
    return { status: res.statusCode ?? 0, body };
  }

  /** Learns scheme and challenge from GET /v2/ (once per client). */
  private ensurePinged(): Promise<void> {
    this.pinged ??= this.ping().catch((err) => {
      this.pinged = undefined;
      throw err;
    });
    return this.pinged;
  }

  private async pingOnce(base: URL): Promise<IncomingMessage> {
    const url = new URL('/v2/', base);
    return this.pool.request(url, { skipTlsVerify: this.opts.skipTlsVerify });
  }

  private async ping(): Promise<void> {
    const host = apiHost(this.registry);
    const httpsBase = new URL(`https://${host}`);
    let res: IncomingMessage;
    try {
      res = await this.pingOnce(httpsBase);
      this.base = httpsBase;
    } catch (httpsErr) {
      if (!(this.opts.allowHttp && isTlsError(httpsErr))) throw networkError(httpsErr, this.registry, httpsBase);
      const httpBase = new URL(`http://${host}`);
      let plain: IncomingMessage;
      try {
        plain = await this.pingOnce(httpBase);
      } catch {
        throw networkError(httpsErr, this.registry, httpsBase);
      }
      // An https server answers plain http with 400: then the https error is the real story.
      if (plain.statusCode !== 200 && plain.statusCode !== 401) {
        discard(plain);
        throw networkError(httpsErr, this.registry, httpsBase);
      }
      this.pool.debug(`${this.registry}: https failed (${(httpsErr as Error).message}); using plain http as allowed`);
      res = plain;
      this.base = httpBase;
    }
    const status = res.statusCode ?? 0;
    if (status === 401) this.challenge = challengeFromResponse(res);
    discard(res);
    if (status >= 500) {
      throw new GantryError('REGISTRY_ERROR', `registry ${this.registry} answered HTTP ${status} to ${this.base.origin}/v2/`, {
        hint: 'the registry has a problem; try again later',
      });
    }
  }

  private unauthorized(what: string): GantryError {
    const who = this.opts.credentials
      ? `the credentials of "${this.opts.credentials.username}" were rejected`
      : 'no credentials were found for it; the repository may be private or may not exist';
    return new GantryError('UNAUTHORIZED', `${this.registry}: not authorized to pull ${what} (${who})`, { hint: credentialsHint() });
  }

  /**
   * GET `path` (below the registry root) with auth and redirects. Returns
   * any status except 401, which becomes UNAUTHORIZED after one retry with
   * fresh auth. Network failures become REGISTRY_UNREACHABLE.
   */
  async get(path: string, headers: Record<string, string>, what: string): Promise<RegistryResponse> {
    await this.ensurePinged();
    const base = this.base!;
    for (let attempt = 0; attempt < 2; attempt++) {
      const authorization = await this.authenticator.authorization(this.challenge, this.scope, attempt > 0);
      let url = new URL(path, base);
      let sendAuth = true;
      let res: IncomingMessage | undefined;
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const h: Record<string, string> = { ...headers };
        if (sendAuth && authorization !== undefined) h.authorization = authorization;
        try {
          res = await this.pool.request(url, { headers: h, skipTlsVerify: this.opts.skipTlsVerify });
        } catch (err) {
          throw networkError(err, this.registry, url);
        }
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (![301, 302, 303, 307, 308].includes(status) || location === undefined) break;
        discard(res);
        res = undefined;
        if (hop === MAX_REDIRECTS) {
          throw new GantryError('REGISTRY_ERROR', `${this.registry}: too many redirects for ${what}`);
        }
        const next = new URL(location, url);
        if (next.protocol === 'http:' && url.protocol === 'https:' && !this.opts.allowHttp) {
          throw new GantryError('INSECURE_TRANSPORT', `${this.registry}: ${what} redirects to plain http (${next.origin})`, {
            hint: 'allow plain http with --insecure-options=http if you trust this registry',
          });
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new GantryError('REGISTRY_ERROR', `${this.registry}: ${what} redirects to an unsupported URL ${next.href}`);
        }
        // Storage backends get presigned URLs; the registry's credentials are not theirs.
        if (next.host !== url.host) sendAuth = false;
        url = next;
      }
      if (res === undefined) throw new GantryError('REGISTRY_ERROR', `${this.registry}: no response for ${what}`);
      if (res.statusCode === 401) {
        const fresh = challengeFromResponse(res);
        discard(res);
        if (fresh !== undefined) this.challenge = fresh;
        if (attempt === 0 && this.challenge !== undefined && (authorization === undefined || this.challenge.scheme === 'bearer')) {
          if (authorization === undefined && this.challenge.scheme === 'basic' && !this.authenticator.hasCredentials) break;
          continue;
        }
        break;
      }
      return { status: res.statusCode ?? 0, headers: res.headers, body: res, url };
    }
    throw this.unauthorized(what);
  }
}
