import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackTree } from '../functions/_shared/archive/tar-gz.ts';
import { freePort, sampleFiles, tempDir } from './helpers/context.ts';
import { ServerProcess } from './helpers/server-process.ts';

// The real start command on loopback: `scripts/serve.ts` in its own process, on the embedded default
// (PGlite on disk, local secret file), with tokens minted by the real `scripts/token.ts`.

const dir = tempDir();
let server: ServerProcess;

beforeAll(async () => {
  server = await new ServerProcess({
    PATH: process.env.PATH,
    PORT: String(await freePort()),
    STORAGE_PATH: join(dir.path, 'projects'),
    PGLITE_DATA_DIR: join(dir.path, 'db'),
    CACHE_PATH: join(dir.path, 'cache'),
    LOG_LEVEL: 'info',
  }).start();
}, 90_000);

afterAll(async () => {
  await server.kill();
  dir.remove();
});

describe('the Node server over real HTTP', () => {
  const alice = randomUUID();
  const bob = randomUUID();
  const project = randomUUID();
  const files = sampleFiles(8);
  let saved: { generation_id: string; sha256: string; download_url: string };

  it('mints tokens with the token command, and refuses bad arguments', async () => {
    expect(await server.token('--user', alice)).toMatch(/^eyJ/);
    await expect(server.token('--user', 'not-a-uuid')).rejects.toMatchObject({ code: 2 });
    await expect(server.token()).rejects.toMatchObject({ code: 2 });
  });

  it('saves, lists, gets, downloads identical bytes and keeps users apart', async () => {
    const base = server.base;
    const A = { authorization: `Bearer ${await server.token('--user', alice)}` };
    const B = { authorization: `Bearer ${await server.token('--user', bob)}` };
    const res = await fetch(base, { method: 'POST', headers: { ...A, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files }) });
    expect(res.status).toBe(201);
    saved = (await res.json()) as typeof saved;
    expect(saved.download_url.startsWith(`http://localhost:${server.env.PORT}/functions/v1/generations/${saved.generation_id}/download?token=`)).toBe(true);

    const list = (await (await fetch(`${base}?project_id=${project}`, { headers: A })).json()) as { items: unknown[] };
    expect(list.items).toHaveLength(1);
    // with a trailing slash too (openapi-fetch, and so the TypeScript client, sends one for "/")
    expect((await fetch(`${base}/?project_id=${project}`, { headers: A })).status).toBe(200);
    expect((await fetch(`${base}/${saved.generation_id}`, { headers: A })).status).toBe(200);
    expect((await fetch(`${base}/${saved.generation_id}`, { headers: B })).status).toBe(404);
    expect((await fetch(`${base}?project_id=${project}`, { headers: B })).status).toBe(404);

    const dl = await fetch(saved.download_url.replace('localhost', '127.0.0.1'));
    expect(dl.status).toBe(200);
    const tree = await unpackTree(new Uint8Array(await dl.arrayBuffer()), { maxEntries: 100, maxFileBytes: 1e6, maxTotalBytes: 1e7 });
    const root = `v1__${saved.generation_id}`;
    const got = Object.fromEntries(tree.files.filter((f) => f.path.startsWith(`${root}/source/`)).map((f) => [f.path.slice(root.length + 8), new TextDecoder().decode(f.data)]));
    expect(got).toEqual(files);
    expect(server.output).toContain('"msg":"generation saved"');
  });

  it('finishes an in-flight request on SIGTERM, exits 0, and keeps everything for the next start', async () => {
    const A = { authorization: `Bearer ${await server.token('--user', alice)}`, 'content-type': 'application/json' };
    const json = JSON.stringify({ project_id: project, files: sampleFiles(4, 'during shutdown') });
    const half = Math.floor(json.length / 2);
    let push!: (s: string | null) => void;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (s) => (s === null ? controller.close() : controller.enqueue(new TextEncoder().encode(s)));
      },
    });
    const pending = fetch(server.base, { method: 'POST', headers: A, body, duplex: 'half' } as RequestInit);
    push(json.slice(0, half));
    await new Promise((r) => setTimeout(r, 300));
    server.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    push(json.slice(half));
    push(null);
    const res = await pending;
    expect(res.status).toBe(201);
    expect(await server.exited()).toBe(0);
    expect(server.output).toContain('"msg":"server stopped"');

    await server.start();
    const list = (await (await fetch(`${server.base}?project_id=${project}`, { headers: A })).json()) as { items: { version: number }[] };
    expect(list.items.map((i) => i.version)).toEqual([2, 1]);
    // the download URL issued before the restart still works: same secret file, same data
    expect((await fetch(saved.download_url.replace('localhost', '127.0.0.1'))).status).toBe(200);
  }, 60_000);
});

describe('requests the HTTP parser refuses', () => {
  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(server.base).port), '127.0.0.1', () => socket.end(request));
      let answer = '';
      socket.on('data', (d) => (answer += d)).on('end', () => resolve(answer)).on('error', reject);
    });

  it('answer with our JSON error body: 431 for headers over 16 KB, 400 for a broken request line; the server keeps serving', async () => {
    const res = await fetch(server.base, { headers: { 'x-padding': 'a'.repeat(20_000) } });
    expect(res.status).toBe(431);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ error: { code: 'headers_too_large', message: 'request headers are over 16 KB' } });
    const broken = await raw('NOT A REQUEST\r\n\r\n');
    expect(broken).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(JSON.parse(broken.split('\r\n\r\n')[1]!)).toEqual({ error: { code: 'invalid_request', message: 'malformed HTTP request' } });
    expect((await fetch(`${server.base}/health`)).status).toBe(200);
  });
});
