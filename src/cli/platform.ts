/** `--platform os/arch[/variant]` parsing. */
import { GantryError } from '../errors.js';
import { hostPlatform, type Platform } from '../image/model.js';

export function parsePlatform(value: string | undefined): Platform {
  if (value === undefined) return hostPlatform();
  const parts = value.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_]+$/.test(p))) {
    throw new GantryError('USAGE', `--platform "${value}" is not OS/ARCH[/VARIANT]`, { hint: 'e.g. --platform linux/arm64/v8' });
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}
