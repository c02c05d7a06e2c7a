// Bundles the CLI into a few ES modules under dist/bin: one file to parse
// instead of a hundred to resolve, which is most of `gantry run`'s start-up.
// Subcommands stay in their own chunks (dynamic imports), native modules and
// openpgp stay external.
import { build } from 'esbuild';

await build({
  entryPoints: { gantry: 'src/cli/main.ts', 'unpack-thread-worker': 'src/store/unpack-thread-worker.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: 'dist/bin',
  entryNames: '[name]',
  chunkNames: '[name]-[hash]',
  external: ['better-sqlite3', 'koffi', 'openpgp'],
  // CommonJS dependencies bundled into ES modules still call require().
  banner: { js: "import { createRequire as __gantryCreateRequire } from 'node:module'; const require = __gantryCreateRequire(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
