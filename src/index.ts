/** gantry as a library: the same operations the CLI runs. */
export * from './errors.js';
export * from './context.js';
