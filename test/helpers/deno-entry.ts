import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { freePort } from './context.ts';

export const DENO = 'node_modules/.bin/deno';
export const denoAvailable = () => existsSync(DENO);
/**
 * The environment every Deno child gets: its npm cache in the project's .deno, and the system's certificate store
 * beside Deno's own (mozilla), so a machine whose registry traffic passes a local CA (in /etc/ssl/certs) can fetch.
 */
export const DENO_ENV = { PATH: process.env.PATH ?? '', DENO_DIR: '.deno', NO_COLOR: '1', DENO_TLS_CA_STORE: 'system,mozilla' };

/** A Supabase Edge entry (`functions/<name>/index.ts`) under Deno, imports from deno.json only, on a free port. */
export async function startEntry(entry: string, env: Record<string, string>): Promise<{ child: ChildProcess; base: string; output: () => string }> {
  const port = await freePort();
  let output = '';
  const child = spawn(DENO, ['run', '-A', '--node-modules-dir=none', '--config', 'deno.json', entry], {
    env: { ...DENO_ENV, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) break;
    try {
      await fetch(base);
      return { child, base, output: () => output };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  child.kill('SIGKILL');
  throw new Error(`${entry} did not start under Deno:\n${output}`);
}
