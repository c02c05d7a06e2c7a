/**
 * Host-port bookkeeping. The portmap plugin installs DNAT rules without
 * checking that anybody else uses the port, so gantry refuses a mapping
 * itself when the host port is already taken: by another gantry pod (its
 * cached pod.json in the same --dir) or by a socket listening in the host's
 * network namespace (/proc/net/{tcp,tcp6,udp,udp6}).
 */
import fs from 'node:fs/promises';
import { GantryError } from '../errors.js';
import type { PortMapping } from './flags.js';

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** Whether two host bindings of one protocol and port would clash. */
function addressesClash(a: string | undefined, b: string | undefined): boolean {
  const x = a ?? '';
  const y = b ?? '';
  return WILDCARDS.has(x) || WILDCARDS.has(y) || x === y;
}

function mappingText(m: PortMapping): string {
  return `${m.hostIP ? (m.hostIP.includes(':') ? `[${m.hostIP}]:` : `${m.hostIP}:`) : ''}${m.hostPort}:${m.podPort}/${m.protocol}`;
}

/** Rejects a request that maps one host port twice. */
export function checkOwnPorts(ports: readonly PortMapping[]): void {
  for (let i = 0; i < ports.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = ports[i]!;
      const b = ports[j]!;
      if (a.protocol === b.protocol && a.hostPort === b.hostPort && addressesClash(a.hostIP, b.hostIP)) {
        throw new GantryError('USAGE', `port mappings ${mappingText(b)} and ${mappingText(a)} use the same host port`, {
          hint: 'give each mapping its own host port',
        });
      }
    }
  }
}

/** Decodes /proc/net's hex address (IPv4: one little-endian word; IPv6: four). */
export function decodeProcAddress(hex: string): string {
  if (hex.length === 8) {
    const n = parseInt(hex, 16);
    return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
  }
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  // IPv4-mapped (::ffff:a.b.c.d) is the IPv4 address for our purposes.
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.slice(12).join('.');
  if (bytes.every((b) => b === 0)) return '::';
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

export interface HostSocket { protocol: 'tcp' | 'udp'; address: string; port: number }

/** Listening TCP and bound UDP sockets of the host's network namespace. */
export async function hostSockets(): Promise<HostSocket[]> {
  const out: HostSocket[] = [];
  for (const [file, protocol, state] of [['tcp', 'tcp', '0A'], ['tcp6', 'tcp', '0A'], ['udp', 'udp', '07'], ['udp6', 'udp', '07']] as const) {
    let text: string;
    try {
      text = await fs.readFile(`/proc/net/${file}`, 'utf8');
    } catch {
      continue; // no IPv6 on this host, say
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4 || fields[3] !== state) continue;
      const [addr, port] = fields[1]!.split(':');
      if (!addr || !port) continue;
      out.push({ protocol, address: decodeProcAddress(addr), port: parseInt(port, 16) });
    }
  }
  return out;
}

/**
 * Refuses mappings whose host port another gantry pod reserved or a host
 * socket holds. `others` are the other pods' cached reservations.
 */
export async function checkHostPorts(network: string, ports: readonly PortMapping[], others: readonly { podId: string; ports: readonly PortMapping[] }[]): Promise<void> {
  if (ports.length === 0) return;
  for (const want of ports) {
    for (const pod of others) {
      for (const held of pod.ports ?? []) {
        if (held.protocol === want.protocol && held.hostPort === want.hostPort && addressesClash(held.hostIP, want.hostIP)) {
          throw new GantryError('NETWORK_ERROR', `network "${network}": host port ${want.hostPort}/${want.protocol} (-p ${mappingText(want)}) is already mapped to pod ${pod.podId}`, {
            hint: 'choose another host port, or stop that pod (gantry stop, then gantry gc)',
          });
        }
      }
    }
  }
  const sockets = await hostSockets();
  for (const want of ports) {
    const busy = sockets.find((s) => s.protocol === want.protocol && s.port === want.hostPort && addressesClash(s.address, want.hostIP));
    if (busy) {
      throw new GantryError('NETWORK_ERROR', `network "${network}": host port ${want.hostPort}/${want.protocol} (-p ${mappingText(want)}) is in use by a process on the host (bound to ${busy.address})`, {
        hint: 'choose another host port, or stop the process using it (ss -lnp shows which)',
      });
    }
  }
}
