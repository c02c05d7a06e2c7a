/**
 * appc meta discovery (appc spec, discovery.md): from an image name and its
 * labels to the URLs of the ACI, its signature and the publisher's keys.
 *
 *   GET https://<name>?ac-discovery=1
 *   <meta name="ac-discovery" content="<prefix> <url template>">
 *   <meta name="ac-discovery-pubkeys" content="<prefix> <url>">
 *
 * A tag applies when its prefix is a prefix of the name. Templates may use
 * {name}, {ext} ("aci" or "aci.asc") and any label ({version}, {os},
 * {arch}, ...); a template naming a label the request does not have is
 * skipped. When a page has no template that applies, the parent path is
 * tried (example.com/a/b, then example.com/a, then example.com). Only https
 * is used (http with --insecure-options=http), and a redirect from https to
 * http is never followed (see http.ts).
 */
import type { Context } from '../../context.js';
import { GantryError } from '../../errors.js';
import { httpGet } from './http.js';

const MAX_PAGE_BYTES = 1 << 20;
const MAX_LEVELS = 16;

export interface AppcName {
  name: string;
  labels: Record<string, string>;
}

export interface DiscoveryResult {
  aciUrl: string;
  signatureUrl: string;
  /** The ac-discovery prefix the template came from. */
  prefix: string;
  /** ac-discovery-pubkeys that apply to the name, with their prefixes. */
  pubkeys: { prefix: string; url: string }[];
  /** The page that answered. */
  page: string;
}

interface MetaTag {
  name: string;
  prefix: string;
  value: string;
}

function attr(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
}

function decodeEntities(text: string): string {
  return text.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'");
}

/** The ac-discovery meta tags of an HTML page. */
export function parseMetaTags(html: string): MetaTag[] {
  const out: MetaTag[] = [];
  const re = /<meta\b[^>]*>/gi;
  for (let m = re.exec(html); m !== null && out.length < 1000; m = re.exec(html)) {
    const name = attr(m[0], 'name');
    const content = attr(m[0], 'content');
    if (name === undefined || content === undefined) continue;
    if (name !== 'ac-discovery' && name !== 'ac-discovery-pubkeys') continue;
    const parts = decodeEntities(content).trim().split(/\s+/);
    if (parts.length !== 2) continue;
    out.push({ name, prefix: parts[0]!, value: parts[1]! });
  }
  return out;
}

/** Fills a template; undefined when it names a label the request lacks. */
export function renderTemplate(template: string, values: Record<string, string>): string | undefined {
  let missing = false;
  const out = template.replace(/\{([^{}]*)\}/g, (_all, key: string) => {
    const v = values[key];
    if (v === undefined) {
      missing = true;
      return '';
    }
    return encodeURIComponent(v).replace(/%2F/g, '/');
  });
  return missing ? undefined : out;
}

function pageUrls(name: string, ctx: Context): string[] {
  // Pages are always asked for over https; --insecure-options=http only lets templates point at http.
  void ctx;
  const scheme = 'https';
  const parts = name.split('/');
  const out: string[] = [];
  for (let i = parts.length; i > 0 && out.length < MAX_LEVELS; i--) out.push(`${scheme}://${parts.slice(0, i).join('/')}?ac-discovery=1`);
  return out;
}

/** Runs meta discovery for an image; throws IMAGE_NOT_FOUND naming what was tried. */
export async function discoverAci(ctx: Context, request: AppcName): Promise<DiscoveryResult> {
  const tried: string[] = [];
  const progressId = `discover:${request.name}`;
  ctx.progress({ kind: 'message', text: `discovering ${request.name}` });
  for (const page of pageUrls(request.name, ctx)) {
    let html: string;
    try {
      const res = await httpGet(ctx, page, { limit: MAX_PAGE_BYTES, what: `discovery page for ${request.name}` });
      if (res.status !== 200) {
        tried.push(`${page} (HTTP ${res.status})`);
        continue;
      }
      html = res.body.toString('utf8');
    } catch (err) {
      // A redirect to http or a TLS failure is a verdict on the server, not a miss: stop.
      if (err instanceof GantryError && (err.code === 'INSECURE_TRANSPORT' || /TLS/.test(err.message))) throw err;
      tried.push(`${page} (${(err as Error).message})`);
      continue;
    }
    const tags = parseMetaTags(html).filter((t) => request.name.startsWith(t.prefix));
    const values = { ...request.labels, name: request.name };
    const pubkeys = tags.filter((t) => t.name === 'ac-discovery-pubkeys').map((t) => ({ prefix: t.prefix, url: t.value }));
    const templates = tags.filter((t) => t.name === 'ac-discovery');
    const skipped: string[] = [];
    for (const t of templates) {
      const aci = renderTemplate(t.value, { ...values, ext: 'aci' });
      const asc = renderTemplate(t.value, { ...values, ext: 'aci.asc' });
      if (aci === undefined || asc === undefined) {
        skipped.push(`${t.value} (names a label the request does not have)`);
        continue;
      }
      let aciUrl: URL;
      let ascUrl: URL;
      try {
        aciUrl = new URL(aci);
        ascUrl = new URL(asc);
      } catch {
        skipped.push(`${t.value} (not a URL once filled in)`);
        continue;
      }
      if (aciUrl.protocol !== 'https:' && !(aciUrl.protocol === 'http:' && ctx.insecure.has('http'))) {
        skipped.push(`${t.value} (not https)`);
        continue;
      }
      ctx.debug(`discovery: ${page}: ${request.name} -> ${aciUrl.href}`);
      ctx.progress({ kind: 'phase', id: progressId, phase: 'done' });
      return { aciUrl: aciUrl.href, signatureUrl: ascUrl.href, prefix: t.prefix, pubkeys, page };
    }
    tried.push(`${page} (${templates.length === 0 ? 'no ac-discovery meta tag for this name' : `no usable template: ${skipped.join(', ')}`})`);
  }
  throw new GantryError('IMAGE_NOT_FOUND', `appc discovery found no image for ${request.name}: tried ${tried.join('; ')}`, {
    hint: 'check the name and labels (e.g. example.com/app:1.0,os=linux,arch=amd64); the server must serve <meta name="ac-discovery"> tags over https',
  });
}

/** Meta discovery of public keys only (gantry trust --prefix P without a key). */
export async function discoverPubkeys(ctx: Context, prefix: string): Promise<{ prefix: string; url: string }[]> {
  const tried: string[] = [];
  for (const page of pageUrls(prefix, ctx)) {
    try {
      const res = await httpGet(ctx, page, { limit: MAX_PAGE_BYTES, what: `discovery page for ${prefix}` });
      if (res.status !== 200) {
        tried.push(`${page} (HTTP ${res.status})`);
        continue;
      }
      const keys = parseMetaTags(res.body.toString('utf8')).filter((t) => t.name === 'ac-discovery-pubkeys' && prefix.startsWith(t.prefix));
      if (keys.length > 0) return keys.map((t) => ({ prefix: t.prefix, url: t.value }));
      tried.push(`${page} (no ac-discovery-pubkeys meta tag for this prefix)`);
    } catch (err) {
      if (err instanceof GantryError && err.code === 'INSECURE_TRANSPORT') throw err;
      tried.push(`${page} (${(err as Error).message})`);
    }
  }
  throw new GantryError('IMAGE_NOT_FOUND', `no public keys discovered for ${prefix}: tried ${tried.join('; ')}`, {
    hint: 'give the key file or URL: gantry trust --prefix PREFIX KEYFILE',
  });
}

/** appc's name for this host's architecture (appc spec "Arch Values"). */
export function appcArch(architecture: string, variant?: string): string {
  const map: Record<string, string> = { amd64: 'amd64', '386': 'i386', arm64: 'aarch64', arm64be: 'aarch64_be', ppc64: 'ppc64', ppc64le: 'ppc64le', s390x: 's390x' };
  if (architecture === 'arm') return variant === 'v6' ? 'armv6l' : 'armv7l';
  return map[architecture] ?? architecture;
}
