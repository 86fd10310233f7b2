import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Faults } from './faults.ts';
import type { StandIn } from './server.ts';

/** The stand-in running in a child process (main.ts), steered through its admin routes. */
export interface StandInProcess {
  url: string;
  serviceKey: string;
  requests(): Promise<{ requests: StandIn['requests']; injected: Record<string, number> }>;
  clearRequests(): Promise<void>;
  faults(f: { clear?: boolean; failShare?: Parameters<Faults['failShare']>; delayNext?: [number, number] }): Promise<void>;
  close(): Promise<void>;
}

export async function spawnStandIn(opts: { jwtSecret: string; latencyMs?: number; bytesPerSecond?: number; fileSizeLimit?: number }): Promise<StandInProcess> {
  const args = ['--import', 'tsx', fileURLToPath(new URL('./main.ts', import.meta.url)), '--jwt-secret', opts.jwtSecret, '--latency-ms', String(opts.latencyMs ?? 0)];
  if (opts.bytesPerSecond) args.push('--bytes-per-second', String(opts.bytesPerSecond));
  if (opts.fileSizeLimit) args.push('--file-size-limit', String(opts.fileSizeLimit));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`storage stand-in exited (${code}) before listening`)));
  });
  const { url, serviceKey } = JSON.parse(first) as { url: string; serviceKey: string };
  const adminCall = async (path: string, init?: RequestInit) => {
    const res = await fetch(`${url}/__standin/${path}`, init);
    if (!res.ok) throw new Error(`stand-in admin ${path}: ${res.status}`);
    return res.json();
  };
  return {
    url,
    serviceKey,
    requests: () => adminCall('requests'),
    clearRequests: async () => void (await adminCall('requests', { method: 'DELETE' })),
    faults: async (f) => void (await adminCall('faults', { method: 'POST', body: JSON.stringify(f) })),
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
