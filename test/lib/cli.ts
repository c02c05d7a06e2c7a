/** Runs the compiled gantry CLI as a child process, as a user would. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './fixtures.js';

export const GANTRY_MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface CliResult { code: number; stdout: string; stderr: string }

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  input?: string;
}

export function gantry(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GANTRY_MAIN, ...args], { env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A fresh state dir for one test; remove it with the returned function. */
export function tempDir(prefix = 'gantry-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
