/**
 * CNI results: what a network's last plugin returned on ADD, read in any of
 * the versions gantry accepts and boiled down to what a pod shows (its
 * interface, CIDR addresses, gateway, MAC, DNS).
 *
 * 0.3.x/0.4.0 results differ from 1.0.0 only by the `version` field of each
 * IP; the pre-0.3 `ip4`/`ip6` shape is read too, for single-plugin configs of
 * old plugins. The raw result is what gets cached and passed on as
 * `prevResult`, in the list's own version, so no conversion is written back.
 */

export interface NetworkSummary {
  name: string;
  interface: string;
  /** CIDR addresses, e.g. 10.209.0.2/16. */
  ips: string[];
  gateway?: string;
  mac?: string;
  dns?: { nameservers?: string[]; search?: string[]; options?: string[] };
}

interface ResultInterface { name?: unknown; mac?: unknown; sandbox?: unknown }
interface ResultIP { address?: unknown; gateway?: unknown; interface?: unknown }

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((s) => typeof s === 'string') && v.length > 0 ? (v as string[]) : undefined;
}

function readDns(v: unknown): NetworkSummary['dns'] {
  const dns = asRecord(v);
  if (!dns) return undefined;
  const out: NonNullable<NetworkSummary['dns']> = {};
  const ns = strings(dns.nameservers);
  const search = strings(dns.search);
  const options = strings(dns.options);
  if (ns) out.nameservers = ns;
  if (search) out.search = search;
  if (options) out.options = options;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Summarizes a raw result for the interface `ifname`; unknown shapes give an empty summary. */
export function summarizeResult(name: string, ifname: string, raw: unknown): NetworkSummary {
  const summary: NetworkSummary = { name, interface: ifname, ips: [] };
  const result = asRecord(raw);
  if (!result) return summary;
  const dns = readDns(result.dns);
  if (dns) summary.dns = dns;

  if (Array.isArray(result.ips)) {
    const interfaces = Array.isArray(result.interfaces) ? (result.interfaces as ResultInterface[]) : [];
    // The pod's side: the interface with our name inside a sandbox.
    const podIndex = interfaces.findIndex((i) => i?.name === ifname && typeof i.sandbox === 'string' && i.sandbox !== '');
    if (podIndex >= 0 && typeof interfaces[podIndex]!.mac === 'string') summary.mac = interfaces[podIndex]!.mac as string;
    for (const ip of result.ips as ResultIP[]) {
      if (typeof ip?.address !== 'string') continue;
      // IPs bound to another interface (e.g. the host's) are not the pod's.
      if (typeof ip.interface === 'number' && podIndex >= 0 && ip.interface !== podIndex) continue;
      summary.ips.push(ip.address);
      if (summary.gateway === undefined && typeof ip.gateway === 'string') summary.gateway = ip.gateway;
    }
    return summary;
  }

  // Pre-0.3.0: {ip4: {ip, gateway}, ip6: {...}}
  for (const key of ['ip4', 'ip6']) {
    const block = asRecord(result[key]);
    if (!block || typeof block.ip !== 'string') continue;
    summary.ips.push(block.ip);
    if (summary.gateway === undefined && typeof block.gateway === 'string') summary.gateway = block.gateway;
  }
  return summary;
}

/** Compares CNI versions; true when `version` is at least `min`. */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}
