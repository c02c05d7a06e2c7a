/**
 * Registry authentication (distribution spec "token authentication" and
 * HTTP Basic): parses WWW-Authenticate challenges and produces the
 * Authorization header for a request.
 *
 * Lifecycle: one Authenticator per image source. Bearer tokens are cached
 * per (registry, scope) for the life of the source and reused for every
 * manifest and blob request; a token is fetched again only when it expired
 * or the registry rejected it.
 */
import type { IncomingMessage } from 'node:http';
import { GantryError } from '../../errors.js';
import type { Credentials } from './credentials.js';

export interface Challenge {
  /** Lower-case scheme: "basic" or "bearer" (others are kept so errors can name them). */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header value (RFC 7235): one or more challenges,
 * each a scheme followed by comma-separated auth-params whose values may be
 * quoted strings containing commas, '=' and backslash escapes.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = (): void => { while (i < n && (header[i] === ' ' || header[i] === '\t')) i++; };
  const readToken = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipSpace();
    if (header[i] === ',') { i++; continue; }
    const token = readToken();
    if (token === '') { i++; continue; } // stray character: skip rather than loop forever
    skipSpace();
    if (header[i] === '=' && current !== undefined && !/^=+\s*(,|$)/.test(header.slice(i))) {
      // auth-param of the current challenge
      i++;
      skipSpace();
      let value: string;
      if (header[i] === '"') {
        i++;
        let v = '';
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          v += header[i];
          i++;
        }
        i++; // closing quote
        value = v;
      } else {
        const vstart = i;
        while (i < n && header[i] !== ',' && header[i] !== ' ' && header[i] !== '\t') i++;
        value = header.slice(vstart, i);
      }
      current.params[token.toLowerCase()] = value;
      continue;
    }
    if (header[i] === '=') {
      // token68 credentials ("Negotiate abc==") belong to the current challenge; ignore them
      while (i < n && header[i] !== ',') i++;
      continue;
    }
    current = { scheme: token.toLowerCase(), params: {} };
    challenges.push(current);
  }
  return challenges;
}

/** The challenge gantry will answer: Bearer preferred over Basic. */
function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic') ?? challenges[0];
}

export function challengeFromResponse(res: IncomingMessage): Challenge | undefined {
  const header = res.headers['www-authenticate'];
  if (header === undefined) return undefined;
  return pickChallenge(parseWwwAuthenticate(Array.isArray(header) ? header.join(', ') : header));
}

/** GETs a token endpoint; supplied by the client so TLS and agent settings stay in one place. */
export type TokenFetcher = (url: URL, headers: Record<string, string>) => Promise<{ status: number; body: Buffer }>;

interface CachedToken {
  token: string;
  /** ms since epoch after which the token is not reused. */
  expiresAt: number;
}

export function basicAuthorization(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64')}`;
}

export class Authenticator {
  private readonly tokens = new Map<string, CachedToken>();
  /** How many tokens were fetched (tests and --debug use it). */
  tokenRequests = 0;

  constructor(
    private readonly registry: string,
    private readonly credentials: Credentials | undefined,
    private readonly fetchToken: TokenFetcher,
    private readonly debug: (message: string) => void,
    private readonly hint: string,
  ) {}

  get hasCredentials(): boolean {
    return this.credentials !== undefined;
  }

  /**
   * The Authorization header value for a request under `challenge`, or
   * undefined to go anonymous. `refresh` drops a cached token first (the
   * registry rejected it).
   */
  async authorization(challenge: Challenge | undefined, defaultScope: string, refresh = false): Promise<string | undefined> {
    if (challenge === undefined) return undefined;
    if (challenge.scheme === 'basic') return this.credentials ? basicAuthorization(this.credentials) : undefined;
    if (challenge.scheme !== 'bearer') {
      throw new GantryError('UNAUTHORIZED', `${this.registry} asks for "${challenge.scheme}" authentication, which gantry does not support`, {
        hint: 'gantry supports Basic and Bearer token authentication',
      });
    }
    const realm = challenge.params.realm;
    if (!realm) throw new GantryError('REGISTRY_ERROR', `${this.registry} sent a Bearer challenge without a realm`);
    const scope = challenge.params.scope ?? defaultScope;
    const service = challenge.params.service ?? '';
    const key = `${this.registry}\n${realm}\n${service}\n${scope}`;
    const cached = this.tokens.get(key);
    if (cached && !refresh && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    const token = await this.requestToken(realm, service, scope);
    this.tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  private async requestToken(realm: string, service: string, scope: string): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new GantryError('REGISTRY_ERROR', `${this.registry} sent an invalid token realm "${realm}"`);
    }
    if (service !== '') url.searchParams.set('service', service);
    if (scope !== '') url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    if (this.credentials) {
      url.searchParams.set('account', this.credentials.username);
      headers.authorization = basicAuthorization(this.credentials);
    }
    this.tokenRequests++;
    const { status, body } = await this.fetchToken(url, headers);
    this.debug(`token for ${scope || '(no scope)'} from ${url.origin}${url.pathname} -> ${status}`);
    if (status === 401 || status === 403) {
      throw new GantryError('UNAUTHORIZED', this.credentials
        ? `the token server for ${this.registry} rejected the credentials of "${this.credentials.username}"`
        : `the token server for ${this.registry} refused anonymous access`, { hint: this.hint });
    }
    if (status !== 200) {
      throw new GantryError('REGISTRY_ERROR', `the token server for ${this.registry} (${url.origin}) answered HTTP ${status}`, {
        hint: 'try again later; if it persists, the registry is misconfigured',
      });
    }
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw new GantryError('REGISTRY_ERROR', `the token server for ${this.registry} answered with something that is not JSON`);
    }
    const d = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
    const token = typeof d.token === 'string' && d.token !== '' ? d.token : typeof d.access_token === 'string' ? d.access_token : '';
    if (token === '') throw new GantryError('REGISTRY_ERROR', `the token server for ${this.registry} answered without a token`);
    // The spec's default lifetime is 60 s; keep a margin so a token never expires mid-request.
    const expiresIn = typeof d.expires_in === 'number' && d.expires_in > 0 ? d.expires_in : 60;
    const issuedAt = typeof d.issued_at === 'string' ? Date.parse(d.issued_at) : NaN;
    const start = Number.isFinite(issuedAt) && issuedAt <= Date.now() ? issuedAt : Date.now();
    return { token, expiresAt: start + Math.max(expiresIn - 10, 5) * 1000 };
  }
}
