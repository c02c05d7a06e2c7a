/**
 * Small HTTPS GETs for trust and discovery: discovery pages, public keys,
 * ACI signatures and lookaside signatures. Bodies are read whole and capped.
 *
 * Rules: https only (http:// needs --insecure-options=http); a redirect from
 * https to http is never followed, whatever the options; at most 5
 * redirects; TLS verified against the system roots plus $GANTRY_CA_FILE
 * (--insecure-options=tls skips it); a stalled server fails after 30 s.
 */
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { Context } from '../../context.js';
import { errnoCode, GantryError } from '../../errors.js';

const MAX_REDIRECTS = 5;
const TIMEOUT_MS = 30_000;

export interface GetResult {
  status: number;
  body: Buffer;
  /** The URL that answered, after redirects. */
  url: string;
}

export interface GetOptions {
  /** Largest body accepted. */
  limit: number;
  /** Names the thing in errors ("discovery page", "signature"). */
  what: string;
}

let caCache: Promise<string[] | undefined> | undefined;
function extraCa(): Promise<string[] | undefined> {
  caCache ??= (async () => {
    const file = process.env.GANTRY_CA_FILE;
    if (!file) return undefined;
    try {
      return [...tls.rootCertificates, await fsp.readFile(file, 'utf8')];
    } catch (err) {
      throw new GantryError('CONFIG_INVALID', `cannot read GANTRY_CA_FILE ${file}: ${(err as Error).message}`, { hint: 'point GANTRY_CA_FILE at a PEM file or unset it' });
    }
  })();
  return caCache;
}

function once(ctx: Context, url: URL, what: string): Promise<http.IncomingMessage> {
  return extraCa().then((ca) => new Promise<http.IncomingMessage>((resolve, reject) => {
    const options: https.RequestOptions = { method: 'GET', headers: { 'user-agent': 'gantry', accept: '*/*' }, timeout: TIMEOUT_MS };
    if (url.protocol === 'https:') {
      options.rejectUnauthorized = !ctx.insecure.has('tls');
      if (ca) options.ca = ca;
    }
    const req = (url.protocol === 'https:' ? https : http).request(url, options, resolve);
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer for ${TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => {
      const tlsProblem = /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO/.test(errnoCode(err) ?? '');
      reject(new GantryError('REGISTRY_UNREACHABLE', `${what} ${url.href}: ${tlsProblem ? 'TLS verification failed: ' : 'cannot connect: '}${err.message}`, {
        hint: tlsProblem ? 'add the CA with GANTRY_CA_FILE=ca.pem, or skip verification with --insecure-options=tls' : 'check the name and the network',
        cause: err,
      }));
    });
    req.end();
  }));
}

function checkScheme(ctx: Context, url: URL, from: URL | undefined, what: string): void {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new GantryError('INSECURE_TRANSPORT', `${what} ${url.href}: only https URLs are fetched`);
  }
  if (url.protocol === 'http:' && from?.protocol === 'https:') {
    throw new GantryError('INSECURE_TRANSPORT', `${what} ${from.href} redirects to plain http (${url.href}); gantry never follows https to http`, {
      hint: 'ask the server operator to keep the redirect on https',
    });
  }
  if (url.protocol === 'http:' && !ctx.insecure.has('http')) {
    throw new GantryError('INSECURE_TRANSPORT', `${what} ${url.href}: refusing plain http`, { hint: 'use https, or allow it with --insecure-options=http' });
  }
}

/** GETs a URL and returns status and body (any status; the caller decides). */
export async function httpGet(ctx: Context, href: string, opts: GetOptions): Promise<GetResult> {
  let url = new URL(href);
  let from: URL | undefined;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    checkScheme(ctx, url, from, opts.what);
    const res = await once(ctx, url, opts.what);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      from = url;
      url = new URL(res.headers.location, url);
      ctx.debug(`${opts.what} ${from.href}: redirected to ${url.href}`);
      continue;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res) {
        size += (chunk as Buffer).length;
        if (size > opts.limit) {
          res.destroy();
          throw new GantryError('REGISTRY_ERROR', `${opts.what} ${url.href} is larger than ${opts.limit} bytes`, { hint: 'the server does not serve what gantry expects here' });
        }
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      if (err instanceof GantryError) throw err;
      throw new GantryError('DOWNLOAD_INTERRUPTED', `${opts.what} ${url.href}: ${(err as Error).message}`, { hint: 'try again', cause: err });
    }
    ctx.debug(`GET ${url.href} -> ${status} (${size} bytes)`);
    return { status, body: Buffer.concat(chunks), url: url.href };
  }
  throw new GantryError('REGISTRY_ERROR', `${opts.what} ${href}: more than ${MAX_REDIRECTS} redirects`, { hint: 'the server loops; check the URL' });
}
