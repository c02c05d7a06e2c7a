/** `gantry app add|start|stop|rm`: change the apps of a running pod without restarting the others. */
import type { CommandGroup } from './command.js';

export const appGroup: CommandGroup = {
  name: 'app',
  summary: 'Add, start, stop or remove apps of a running pod.',
  subcommands: {
    add: async () => (await import('./app/add.js')).appAddCommand,
    start: async () => (await import('./app/start-stop.js')).appStartCommand,
    stop: async () => (await import('./app/start-stop.js')).appStopCommand,
    rm: async () => (await import('./app/start-stop.js')).appRmCommand,
  },
};
