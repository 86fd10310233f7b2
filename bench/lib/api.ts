import { Agent, request } from 'node:http';
import { sleep } from './stats.ts';

// The few calls of the generations API the benchmarks make, over real HTTP.

const keepAlive = new Agent({ keepAlive: true });

/**
 * A GET with node:http on kept-alive connections, body read to the end: a lighter client than fetch, so that
 * timings are more the server's than the client's (fetch adds ~3 ms to a 400 KB body here).
 */
export function httpGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: keepAlive }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface Saved {
  generation_id: string;
  project_id: string;
  version: number;
  sha256: string;
  archive_size_bytes: number;
  download_url: string;
  storage: { status: string };
}

/** Saves a generation; throws unless the answer is 201. */
export async function save(base: string, auth: Record<string, string>, projectId: string, files: Record<string, string>): Promise<Saved> {
  const res = await fetch(base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: projectId, files }) });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`save answered ${res.status}: ${text}`);
  return JSON.parse(text) as Saved;
}

/** One generation as GET /{id} answers it (with a freshly signed download_url). */
export async function get(base: string, auth: Record<string, string>, id: string): Promise<Saved> {
  const res = await fetch(`${base}/${id}`, { headers: auth });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /${id} answered ${res.status}: ${text}`);
  return JSON.parse(text) as Saved;
}

/** Waits until the server has uploaded and verified every one of `ids` (cloud on). */
export async function waitUploaded(base: string, auth: Record<string, string>, ids: readonly string[], timeoutMs = 120_000): Promise<void> {
  const started = performance.now();
  for (const id of ids) {
    while ((await get(base, auth, id)).storage.status !== 'uploaded') {
      if (performance.now() - started > timeoutMs) throw new Error(`generation ${id} still not uploaded after ${timeoutMs / 1000} s`);
      await sleep(25);
    }
  }
}
