/**
 * Image references: turns every REF form `gantry fetch` accepts into one
 * discriminated union, without touching the network or the disk.
 *
 * Forms, checked in this order:
 *   docker://[host[:port]/]repo[:tag][@digest]   registry image
 *   oci:DIR[:tag]                                OCI image layout directory
 *   oci-archive:FILE[:tag]                       tarred OCI layout
 *   docker-archive:FILE[:name:tag]               `docker save` tarball
 *   https://.../x.aci, http://...                ACI by URL (http is refused later unless allowed)
 *   file:///x.aci, ./x.aci, /abs/x.aci, x.aci    local ACI
 *   example.com/app[:version],label=value,...    appc name, found by appc meta discovery
 *   anything else                                a store reference (image ID, ID prefix or name);
 *                                                if it is a syntactically valid docker name the
 *                                                parsed form is attached so pull logic can resolve
 *                                                it against registries.
 *
 * Docker names follow the distribution reference grammar (github.com/distribution/reference).
 *
 * appc names vs docker names: rkt treats every bare name as an appc name, but
 * gantry's users type `busybox` meaning Docker Hub. gantry's rule: a name is
 * an appc name exactly when it carries at least one `,label=value` (a comma
 * can never appear in a docker reference), e.g.
 * `example.com/app:1.0,os=linux,arch=amd64`. To discover an image without
 * saying its platform, name any label, e.g. `example.com/app,version=1.0`;
 * os and arch default to the host's.
 */
import { GantryError } from '../errors.js';
import { digestProblem } from './digest.js';

export interface DockerReference {
  kind: 'docker';
  /** Registry host[:port]; Docker Hub is "docker.io". */
  registry: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  repository: string;
  tag?: string;
  digest?: string;
  /** "registry/repo:tag", "registry/repo@digest" or, with both, "registry/repo:tag@digest". */
  canonical: string;
  /** Whether the text named the registry (false: it came from the default). */
  explicitRegistry: boolean;
}

export type ImageReference =
  | DockerReference
  | { kind: 'oci-layout'; path: string; tag?: string }
  | { kind: 'oci-archive'; path: string; tag?: string }
  | { kind: 'docker-archive'; path: string; name?: string }
  | { kind: 'aci-url'; url: string }
  | { kind: 'aci-file'; path: string }
  | { kind: 'appc'; name: string; labels: Record<string, string> }
  | { kind: 'name'; text: string; docker?: DockerReference };

export const DOCKER_HUB = 'docker.io';
const DEFAULT_TAG = 'latest';
const MAX_NAME_LENGTH = 255;

// Grammar pieces from the distribution reference package.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const PORT = /^[0-9]{1,5}$/;

function invalid(text: string, problem: string, hint?: string): GantryError {
  return new GantryError('INVALID_REFERENCE', `invalid image reference "${text}": ${problem}`, {
    hint: hint ?? 'use docker://[host[:port]/]repo[:tag|@sha256:...], oci:DIR[:tag], oci-archive:FILE[:tag], docker-archive:FILE[:name:tag], an https:// URL or a path to an .aci file',
  });
}

function isDomain(host: string): boolean {
  let name = host;
  let port: string | undefined;
  if (name.startsWith('[')) {
    // IPv6 literal: [addr] or [addr]:port
    const close = name.indexOf(']');
    if (close < 0) return false;
    const addr = name.slice(1, close);
    if (!/^[0-9a-fA-F:.]+$/.test(addr)) return false;
    const rest = name.slice(close + 1);
    if (rest === '') return true;
    if (!rest.startsWith(':')) return false;
    return PORT.test(rest.slice(1));
  }
  const colon = name.lastIndexOf(':');
  if (colon >= 0) {
    port = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!PORT.test(port)) return false;
  }
  return name.length > 0 && name.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

/** Docker's rule: the first component is a host if it looks like one. */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component !== component.toLowerCase();
}

/** Normalises the Hub's historical aliases to "docker.io". */
function normalizeRegistry(host: string): string {
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
}

/** Builds the canonical string of a docker reference's parts. */
function dockerCanonical(registry: string, repository: string, tag?: string, digest?: string): string {
  return `${registry}/${repository}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
}

/** Builds a DockerReference from validated parts, filling `canonical`. */
function makeDockerReference(registry: string, repository: string, tag: string | undefined, digest: string | undefined, explicitRegistry = true): DockerReference {
  const ref: DockerReference = { kind: 'docker', registry, repository, canonical: dockerCanonical(registry, repository, tag, digest), explicitRegistry };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * Parses a docker name "[host[:port]/]repo[:tag][@digest]". Without a
 * registry the default (docker.io) is used, with "library/" for
 * single-component Hub names; without tag and digest the tag is "latest".
 */
export function parseDockerName(text: string, opts: { defaultRegistry?: string } = {}): DockerReference {
  if (text === '') throw invalid(text, 'the name is empty');
  if (/\s/.test(text)) throw invalid(text, 'it contains whitespace');

  let remainder = text;
  let digest: string | undefined;
  const at = remainder.indexOf('@');
  if (at >= 0) {
    digest = remainder.slice(at + 1);
    remainder = remainder.slice(0, at);
    const problem = digestProblem(digest);
    if (problem) throw invalid(text, problem);
  }

  let tag: string | undefined;
  const lastSlash = remainder.lastIndexOf('/');
  const colon = remainder.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = remainder.slice(colon + 1);
    remainder = remainder.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(text, `tag "${tag}" is not valid (up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-')`);
    }
  }

  const components = remainder.split('/');
  let registry: string;
  let explicitRegistry: boolean;
  if (components.length > 1 && looksLikeHost(components[0]!)) {
    registry = components.shift()!;
    if (!isDomain(registry)) throw invalid(text, `registry host "${registry}" is not a valid host[:port]`);
    registry = normalizeRegistry(registry);
    explicitRegistry = true;
  } else {
    registry = opts.defaultRegistry ?? DOCKER_HUB;
    explicitRegistry = false;
  }
  for (const component of components) {
    if (component === '') throw invalid(text, 'the repository has an empty path component');
    if (!PATH_COMPONENT.test(component)) {
      const lower = component.toLowerCase();
      const problem = lower !== component && PATH_COMPONENT.test(lower)
        ? `repository component "${component}" must be lowercase`
        : `repository component "${component}" is not valid (lowercase letters, digits and single '.', '_', '__' or '-' separators)`;
      throw invalid(text, problem);
    }
  }
  if (registry === DOCKER_HUB && components.length === 1) components.unshift('library');
  const repository = components.join('/');
  if (repository.length + registry.length + 1 > MAX_NAME_LENGTH) {
    throw invalid(text, `the name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return makeDockerReference(registry, repository, tag, digest, explicitRegistry);
}

/** Transports other tools know that gantry does not read, to give a clear error. */
const UNSUPPORTED_TRANSPORTS = ['dir', 'docker-daemon', 'containers-storage', 'ostree', 'sif', 'tarball'];

function splitPathAndSuffix(text: string, rest: string, transport: string): { path: string; suffix?: string } {
  // containers/image splits at the first ':' too, so a path cannot contain one.
  const colon = rest.indexOf(':');
  const path = colon >= 0 ? rest.slice(0, colon) : rest;
  const suffix = colon >= 0 ? rest.slice(colon + 1) : undefined;
  if (path === '') throw invalid(text, `${transport}: needs a path`);
  return suffix === undefined ? { path } : { path, suffix };
}

/** Parses any REF the CLI accepts; throws INVALID_REFERENCE naming the bad part. */
export function parseReference(text: string): ImageReference {
  if (text === '') throw invalid(text, 'the reference is empty');
  if (text !== text.trim()) throw invalid(text, 'it has leading or trailing whitespace');

  if (text.startsWith('docker://')) {
    const rest = text.slice('docker://'.length);
    if (rest === '') throw invalid(text, 'docker:// needs an image name');
    return parseDockerName(rest);
  }
  if (text.startsWith('oci:')) {
    const { path, suffix } = splitPathAndSuffix(text, text.slice(4), 'oci');
    if (suffix === undefined) return { kind: 'oci-layout', path };
    if (suffix === '') throw invalid(text, 'the tag after the path is empty');
    return { kind: 'oci-layout', path, tag: suffix };
  }
  if (text.startsWith('oci-archive:')) {
    const { path, suffix } = splitPathAndSuffix(text, text.slice('oci-archive:'.length), 'oci-archive');
    if (suffix === undefined) return { kind: 'oci-archive', path };
    if (suffix === '') throw invalid(text, 'the tag after the path is empty');
    return { kind: 'oci-archive', path, tag: suffix };
  }
  if (text.startsWith('docker-archive:')) {
    const { path, suffix } = splitPathAndSuffix(text, text.slice('docker-archive:'.length), 'docker-archive');
    if (suffix === undefined) return { kind: 'docker-archive', path };
    if (suffix === '') throw invalid(text, 'the name after the path is empty');
    // "@N" selects the N-th image of a multi-image archive (containers/image syntax).
    if (!/^@[0-9]+$/.test(suffix)) {
      try {
        parseDockerName(suffix);
      } catch {
        throw invalid(text, `"${suffix}" is not a valid image name (expected name:tag or @index)`);
      }
    }
    return { kind: 'docker-archive', path, name: suffix };
  }
  if (/^https?:\/\//i.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw invalid(text, 'it is not a valid URL');
    }
    if (url.hostname === '') throw invalid(text, 'the URL has no host');
    return { kind: 'aci-url', url: url.toString() };
  }
  if (text.startsWith('file://')) {
    let path: string;
    try {
      path = decodeURIComponent(new URL(text).pathname);
    } catch {
      throw invalid(text, 'it is not a valid file:// URL');
    }
    return { kind: 'aci-file', path };
  }
  if (text.includes(',') && !/^\.{0,2}\//.test(text)) return parseAppcName(text);
  if (text.endsWith('.aci')) return { kind: 'aci-file', path: text };
  if (text.startsWith('/') || text.startsWith('./') || text.startsWith('../')) {
    throw invalid(text, 'a local path must name an .aci file',
      'for an OCI layout or archive use oci:DIR, oci-archive:FILE or docker-archive:FILE');
  }
  const transport = /^([a-z-]+):/.exec(text);
  if (transport && UNSUPPORTED_TRANSPORTS.includes(transport[1]!)) {
    throw invalid(text, `the ${transport[1]}: transport is not supported`);
  }
  let docker: DockerReference | undefined;
  try {
    docker = parseDockerName(text);
  } catch {
    docker = undefined;
  }
  return docker ? { kind: 'name', text, docker } : { kind: 'name', text };
}

const AC_IDENTIFIER = /^[a-z0-9]+(?:[-._~/][a-z0-9]+)*$/;
const AC_NAME = /^[a-z0-9]+(?:[-._~][a-z0-9]+)*$/;

/** Parses `name[:version][,label=value]...`; see the module comment for when a text is one. */
export function parseAppcName(text: string): Extract<ImageReference, { kind: 'appc' }> {
  const [head, ...pairs] = text.split(',');
  let name = head ?? '';
  const labels: Record<string, string> = {};
  const lastSlash = name.lastIndexOf('/');
  const colon = name.indexOf(':', lastSlash + 1);
  if (colon >= 0) {
    labels.version = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (labels.version === '') throw invalid(text, 'the version after ":" is empty', 'write example.com/app:1.0,os=linux');
  }
  if (name.length > MAX_NAME_LENGTH) throw invalid(text, `the name is longer than ${MAX_NAME_LENGTH} characters`);
  if (!AC_IDENTIFIER.test(name)) {
    throw invalid(text, `"${name}" is not an appc image name (lowercase letters and digits separated by - . _ ~ /)`, 'write example.com/app[:version][,label=value...]');
  }
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalid(text, `"${pair}" is not a label=value pair`, 'write example.com/app:1.0,os=linux,arch=amd64');
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!AC_NAME.test(key)) throw invalid(text, `label name "${key}" is not valid (lowercase letters, digits, - . _ ~)`);
    if (value === '' || /[\s{}]/.test(value)) throw invalid(text, `label ${key} has an empty or invalid value`);
    if (key in labels) throw invalid(text, `label ${key} is given twice`);
    labels[key] = value;
  }
  return { kind: 'appc', name, labels };
}

/** The reference as the user would write it with its transport, for messages. */
export function formatReference(ref: ImageReference): string {
  switch (ref.kind) {
    case 'docker': return `docker://${ref.canonical}`;
    case 'oci-layout': return `oci:${ref.path}${ref.tag !== undefined ? `:${ref.tag}` : ''}`;
    case 'oci-archive': return `oci-archive:${ref.path}${ref.tag !== undefined ? `:${ref.tag}` : ''}`;
    case 'docker-archive': return `docker-archive:${ref.path}${ref.name !== undefined ? `:${ref.name}` : ''}`;
    case 'aci-url': return ref.url;
    case 'aci-file': return ref.path;
    case 'appc': return [ref.name + (ref.labels.version !== undefined ? `:${ref.labels.version}` : ''),
      ...Object.entries(ref.labels).filter(([k]) => k !== 'version').map(([k, v]) => `${k}=${v}`)].join(',');
    case 'name': return ref.text;
  }
}

