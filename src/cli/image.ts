/** `gantry image SUBCOMMAND`: the image store's commands (rkt's `rkt image ...`). */
import type { CommandGroup } from './command.js';

export const imageGroup: CommandGroup = {
  name: 'image',
  summary: 'Manage the images in the store.',
  subcommands: {
    list: async () => (await import('./image/list.js')).listCommand,
    ls: async () => (await import('./image/list.js')).listCommand,
    rm: async () => (await import('./image/rm.js')).rmCommand,
    gc: async () => (await import('./image/gc.js')).gcCommand,
    'cat-manifest': async () => (await import('./image/cat-manifest.js')).catManifestCommand,
    inspect: async () => (await import('./image/inspect.js')).inspectCommand,
    render: async () => (await import('./image/render.js')).renderCommand,
    export: async () => (await import('./image/export.js')).exportCommand,
    verify: async () => (await import('./image/verify.js')).verifyCommand,
  },
};
