/**
 * The pod network flags as users write them: `--net` (rkt's syntax: `default`,
 * `host`, `none`, `name[:K=V;K2=V2]`, several joined by commas) and `-p/--port`
 * (`[hostIP:]hostPort:podPort[/tcp|udp]`). Parsing only: nothing here looks
 * at the host; network names are resolved to configs when the pod starts.
 */
import net from 'node:net';
import { GantryError } from '../errors.js';

export interface PortMapping {
  /** Host address to listen on; absent means every address. */
  hostIP?: string;
  hostPort: number;
  podPort: number;
  protocol: 'tcp' | 'udp';
}

export type NetSpec =
  | 'none'
  | 'host'
  | { networks: { name: string; args?: Record<string, string> }[]; ports: PortMapping[] };

/** libcni's rule for network names; also keeps them safe as file name parts. */
export const NETWORK_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ARG_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const NET_HINT = 'use --net=default, --net=host, --net=none or --net=NAME[:KEY=VALUE;KEY2=VALUE2][,NAME2...]';

function netUsage(message: string): GantryError {
  return new GantryError('USAGE', message, { hint: NET_HINT });
}

/** Parses a `--net` value. Ports are not part of it; they come from `--port`. */
export function parseNetFlag(text: string): NetSpec {
  const value = text.trim();
  if (value === '') throw netUsage('--net needs a value');
  if (value === 'none' || value === 'host') return value;
  const networks: { name: string; args?: Record<string, string> }[] = [];
  const seen = new Set<string>();
  for (const part of value.split(',')) {
    const item = part.trim();
    if (item === '') throw netUsage(`--net="${text}" has an empty network name`);
    const colon = item.indexOf(':');
    const name = colon < 0 ? item : item.slice(0, colon);
    if (name === 'none' || name === 'host') {
      throw netUsage(`--net="${text}": "${name}" cannot be combined with other networks`);
    }
    if (!NETWORK_NAME_RE.test(name) || name.length > 128) {
      throw netUsage(`--net="${text}": "${name}" is not a valid network name (letters, digits, "_", ".", "-"; starting with a letter or digit)`);
    }
    if (seen.has(name)) throw netUsage(`--net="${text}" names network "${name}" twice`);
    seen.add(name);
    if (colon < 0) {
      networks.push({ name });
      continue;
    }
    const args: Record<string, string> = {};
    const argText = item.slice(colon + 1);
    if (argText.trim() === '') throw netUsage(`--net="${text}": network "${name}" has ":" but no KEY=VALUE arguments`);
    for (const pair of argText.split(';')) {
      if (pair === '') continue; // a trailing ";" is harmless
      const eq = pair.indexOf('=');
      if (eq <= 0) throw netUsage(`--net="${text}": argument "${pair}" of network "${name}" is not KEY=VALUE`);
      const key = pair.slice(0, eq);
      const val = pair.slice(eq + 1);
      if (!ARG_KEY_RE.test(key)) throw netUsage(`--net="${text}": argument name "${key}" of network "${name}" is not valid (letters, digits, "_")`);
      // CNI_ARGS is "K=V;K=V": a value with "=" would be read differently by plugins.
      if (val.includes('=') || /[\0\n]/.test(val)) throw netUsage(`--net="${text}": value of argument "${key}" of network "${name}" must not contain "=" or control characters`);
      if (key in args) throw netUsage(`--net="${text}": argument "${key}" of network "${name}" is given twice`);
      args[key] = val;
    }
    networks.push({ name, args });
  }
  return { networks, ports: [] };
}

const PORT_HINT = 'use -p [HOSTIP:]HOSTPORT:PODPORT[/tcp|udp], e.g. -p 8080:80 or -p 127.0.0.1:8080:80/tcp';

function portUsage(message: string): GantryError {
  return new GantryError('USAGE', message, { hint: PORT_HINT });
}

function parsePortNumber(text: string, what: string, flag: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw portUsage(`--port=${flag}: ${what} "${text}" is not a port number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw portUsage(`--port=${flag}: ${what} ${port} is out of range (1-65535)`);
  return port;
}

/** Parses one `-p/--port` value. IPv6 host addresses go in brackets: `[::1]:8080:80`. */
export function parsePortFlag(text: string): PortMapping {
  const flag = text;
  let rest = text.trim();
  if (rest === '') throw portUsage('--port needs a value');
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const proto = rest.slice(slash + 1).toLowerCase();
    if (proto !== 'tcp' && proto !== 'udp') throw portUsage(`--port=${flag}: protocol "${rest.slice(slash + 1)}" is not tcp or udp`);
    protocol = proto;
    rest = rest.slice(0, slash);
  }
  let hostIP: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') throw portUsage(`--port=${flag}: a bracketed host address must look like [::1]:HOSTPORT:PODPORT`);
    hostIP = rest.slice(1, close);
    if (net.isIPv6(hostIP) === false) throw portUsage(`--port=${flag}: "${hostIP}" is not an IPv6 address`);
    rest = rest.slice(close + 2);
  }
  const parts = rest.split(':');
  if (hostIP === undefined && parts.length === 3) {
    hostIP = parts.shift()!;
    if (!net.isIPv4(hostIP)) throw portUsage(`--port=${flag}: host address "${hostIP}" is not an IPv4 address (put IPv6 ones in brackets)`);
  }
  if (parts.length !== 2) throw portUsage(`--port=${flag} is not HOSTPORT:PODPORT`);
  const hostPort = parsePortNumber(parts[0]!, 'host port', flag);
  const podPort = parsePortNumber(parts[1]!, 'pod port', flag);
  const mapping: PortMapping = { hostPort, podPort, protocol };
  if (hostIP !== undefined && hostIP !== '0.0.0.0' && hostIP !== '::') mapping.hostIP = hostIP;
  return mapping;
}
