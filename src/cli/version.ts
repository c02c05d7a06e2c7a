/** `gantry version`. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from './command.js';
import { writeJson } from './command.js';

export const versionCommand: Command = {
  name: 'version',
  usage: 'gantry version',
  summary: 'Print gantry\'s version and the versions of the specs it implements.',
  flags: {},
  async run(_args, env) {
    const pkg = JSON.parse(readFileSync(findPackageJson(), 'utf8')) as { version: string };
    const info = { gantry: pkg.version, node: process.versions.node, ociImageSpec: '1.1.0', ociRuntimeSpec: '1.1.0', appcSpec: '0.8.11', cniSpec: '1.0.0' };
    if (env.format === 'json') writeJson(env, info);
    else env.stdout.write(Object.entries(info).map(([k, v]) => `${k}: ${v}`).join('\n') + '\n');
    return 0;
  },
};

/** gantry's package.json, found upwards from this module (compiled or bundled, the depth differs). */
function findPackageJson(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return path.join(dir, 'package.json');
}
