import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cloudAppContext } from './helpers/cloud-context.ts';
import { appContext, userToken, type AppContext } from './helpers/context.ts';
import { dropCopies, errorOf, generationsClient, sha256, type Saved } from './helpers/generations-client.ts';
import type { StandIn } from './storage-standin/server.ts';

// GET /generations/{id}/files and /files/{path}: listings from the manifest, single files from every tier of
// storage (local folder, cache, outbox, bucket), byte for byte, owner-only.

const enc = new TextEncoder();
const FILES: Record<string, string> = {
  'app/main.py': 'from fastapi import FastAPI\n\napp = FastAPI()\n',
  'app/api/v1/routes/items.py': 'from fastapi import APIRouter\nrouter = APIRouter()\n',
  'README.md': '# A generated API\n\nwith ünïcödé ✓ and an emoji 🚀\n',
  'requirements.txt': 'fastapi\nuvicorn\n',
  'pyproject.toml': '[project]\nname = "x"\n',
  'config/settings.json': '{"debug": false}\n',
  'docs/naïve café ✓.md': 'a file whose name needs encoding\n',
  'Dockerfile': 'FROM python:3.12-slim\n',
  'windows.txt': 'line one\r\nline two\r\n',
  'empty.py': '',
  'data/big.csv': 'id,name\n' + Array.from({ length: 4000 }, (_, i) => `${i},name-${i}`).join('\n'),
  'static/x.unknownext': 'what is this\n',
};
const expectedType: Record<string, string> = {
  'app/main.py': 'text/x-python',
  'README.md': 'text/markdown',
  'requirements.txt': 'text/plain',
  'pyproject.toml': 'application/toml',
  'config/settings.json': 'application/json',
  Dockerfile: 'text/plain',
  'data/big.csv': 'text/csv',
  'static/x.unknownext': 'application/octet-stream',
};
/** A path as a client puts it in a URL: each segment percent-encoded, slashes kept. */
const urlPath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

describe('files of a generation (cloud off)', () => {
  let ctx: AppContext;
  let api: ReturnType<typeof generationsClient>;
  let A: string;
  let B: string;
  let g: Saved;

  beforeAll(async () => {
    ctx = await appContext();
    api = generationsClient(ctx);
    [A, B] = await Promise.all([userToken(randomUUID()), userToken(randomUUID())]);
    g = await api.save(A, { project_id: randomUUID(), files: FILES });
  });
  afterAll(() => ctx.close());

  it('lists every file with size, sha256 and media type, from the manifest, sorted by path', async () => {
    const body = await api.get(`/${g.generation_id}/files`, A);
    const paths = Object.keys(FILES).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(body).toMatchObject({ generation_id: g.generation_id, project_id: g.project_id, version: 1, file_count: paths.length });
    expect(body.total_size_bytes).toBe(Object.values(FILES).reduce((n, c) => n + enc.encode(c).byteLength, 0));
    expect(body.files.map((f: { path: string }) => f.path)).toEqual(paths);
    for (const f of body.files as { path: string; size_bytes: number; sha256: string; media_type: string }[]) {
      expect(f.size_bytes, f.path).toBe(enc.encode(FILES[f.path]!).byteLength);
      expect(f.sha256, f.path).toBe(sha256(FILES[f.path]!));
      if (expectedType[f.path]) expect(f.media_type, f.path).toBe(expectedType[f.path]);
    }
  });

  it('serves each file byte for byte, with a fitting content type, its sha256 as ETag, and 304 for If-None-Match', async () => {
    for (const [path, content] of Object.entries(FILES)) {
      const { res, bytes } = await api.bytes(`/${g.generation_id}/files/${urlPath(path)}`, A);
      expect(res.status, path).toBe(200);
      expect(Buffer.from(bytes).equals(Buffer.from(content)), path).toBe(true);
      expect(res.headers.get('etag')).toBe(`"${sha256(content)}"`);
      expect(res.headers.get('content-length')).toBe(String(enc.encode(content).byteLength));
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      if (expectedType[path]) {
        const type = expectedType[path]!;
        expect(res.headers.get('content-type'), path).toBe(type === 'application/octet-stream' ? type : `${type}; charset=utf-8`);
      }
      const etag = res.headers.get('etag')!;
      for (const inm of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
        const again = await api.req(`/${g.generation_id}/files/${urlPath(path)}`, { token: A, headers: { 'if-none-match': inm } });
        expect(again.status, `${path} ${inm}`).toBe(304);
        expect(again.headers.get('etag')).toBe(etag);
        expect(await again.text()).toBe('');
      }
      const stale = await api.req(`/${g.generation_id}/files/${urlPath(path)}`, { token: A, headers: { 'if-none-match': `"${'0'.repeat(64)}"` } });
      expect(stale.status).toBe(200);
    }
  });

  it('takes a path with its slashes percent-encoded as the same file, and a non-normalised one normalised', async () => {
    const direct = await api.bytes(`/${g.generation_id}/files/app/api/v1/routes/items.py`, A);
    const encoded = await api.bytes(`/${g.generation_id}/files/${encodeURIComponent('app/api/v1/routes/items.py')}`, A);
    const doubled = await api.bytes(`/${g.generation_id}/files/app//api/./v1/routes/items.py`, A);
    for (const r of [direct, encoded, doubled]) {
      expect(r.res.status).toBe(200);
      expect(new TextDecoder().decode(r.bytes)).toBe(FILES['app/api/v1/routes/items.py']);
    }
  });

  it('refuses paths that could never name a file with 400 invalid_path, before looking anything up', async () => {
    for (const bad of ['..%2F..%2Fetc%2Fpasswd', 'app/..%2F..%2Fsecret', '%2e%2e%2fmanifest.json', 'a%00b.py', 'app%5Cmain.py', '%2Fetc%2Fpasswd', 'C%3A%2Fx', '%E0%A4%A', 'app/']) {
      for (const id of [g.generation_id, randomUUID()]) {
        const res = await api.req(`/${id}/files/${bad}`, { token: A });
        expect(res.status, bad).toBe(400);
        expect((await errorOf(res)).code, bad).toBe('invalid_path');
      }
    }
  });

  it('does not serve the manifest or anything outside source/ (only the listed files exist)', async () => {
    for (const p of ['manifest.json', '../manifest.json', 'source/app/main.py', 'artifacts']) {
      const res = await api.req(`/${g.generation_id}/files/${p}`, { token: A });
      expect([400, 404], p).toContain(res.status);
    }
    const res = await api.req(`/${g.generation_id}/files/app/missing.py`, { token: A });
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe('file_not_found');
  });

  it("answers another user's generation, and one that does not exist, with the same 404, whatever the path", async () => {
    for (const id of [g.generation_id, randomUUID()]) {
      for (const path of ['/files', '/files/app/main.py', '/files/no/such.py']) {
        const res = await api.req(`/${id}${path}`, { token: id === g.generation_id ? B : A });
        expect(res.status, `${id} ${path}`).toBe(404);
        expect(await errorOf(res)).toEqual({ code: 'generation_not_found', message: 'generation not found' });
      }
    }
  });

  it('answers 401 without a token, 400 for a bad id, 405 for other methods', async () => {
    expect((await api.req(`/${g.generation_id}/files`)).status).toBe(401);
    expect((await api.req(`/${g.generation_id}/files/app/main.py`)).status).toBe(401);
    expect((await api.req(`/not-a-uuid/files`, { token: A })).status).toBe(400);
    expect((await api.req(`/not-a-uuid/files/app/main.py`, { token: A })).status).toBe(400);
    for (const [method, path] of [['POST', '/files'], ['DELETE', '/files/app/main.py'], ['PUT', '/files/app/main.py']] as const) {
      const res = await api.req(`/${g.generation_id}${path}`, { method, token: A });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe('GET');
    }
  });

  it('serves a file from the archive when the folder has lost it, and never a changed copy', async () => {
    const other = await api.save(A, { project_id: randomUUID(), files: FILES });
    const dir = `${ctx.config.storagePath}/${other.storage.local_path}/source`;
    rmSync(`${dir}/app/main.py`);
    const { res, bytes } = await api.bytes(`/${other.generation_id}/files/app/main.py`, A);
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(bytes)).toBe(FILES['app/main.py']);
    // a file changed on disk fails its sha256 and is passed over for the archive's
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${dir}/README.md`, 'tampered\n');
    const readme = await api.bytes(`/${other.generation_id}/files/README.md`, A);
    expect(new TextDecoder().decode(readme.bytes)).toBe(FILES['README.md']);
  });

  it('lists and serves a generation whose manifest has no file_details (written by the Python service), from its archive', async () => {
    const old = await api.save(A, { project_id: randomUUID(), files: FILES });
    await ctx.db.asService((tx) => tx.query(`update generations set manifest = manifest - 'file_details' where id = $1::uuid`, [old.generation_id]));
    const body = await api.get(`/${old.generation_id}/files`, A);
    expect(body.files.map((f: { path: string; sha256: string }) => [f.path, f.sha256])).toEqual(
      Object.keys(FILES)
        .sort((a, b) => (a < b ? -1 : 1))
        .map((p) => [p, sha256(FILES[p]!)]),
    );
    const { bytes } = await api.bytes(`/${old.generation_id}/files/${urlPath('docs/naïve café ✓.md')}`, A);
    expect(new TextDecoder().decode(bytes)).toBe(FILES['docs/naïve café ✓.md']);
  });
});

describe('files of a generation (cloud on): every tier, one cloud download', () => {
  let cloud: Awaited<ReturnType<typeof cloudAppContext>>;
  let ctx: AppContext;
  let standIn: StandIn;
  let api: ReturnType<typeof generationsClient>;
  let A: string;

  beforeAll(async () => {
    cloud = await cloudAppContext({ CACHE_TTL_HOURS: '2' });
    ({ ctx, standIn } = cloud);
    api = generationsClient(ctx);
    A = await userToken(randomUUID());
  });
  afterAll(() => cloud.close());
  beforeEach(() => standIn.faults.clear());

  // Counted from the read on: the upload's own verification reads the object back once.
  const objectDownloads = (g: Saved) => standIn.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/v${g.version}__${g.generation_id}.tar.gz`)).length;
  const allFilesMatch = async (g: Saved) => {
    for (const [path, content] of Object.entries(FILES)) {
      const { res, bytes } = await api.bytes(`/${g.generation_id}/files/${urlPath(path)}`, A);
      expect(res.status, path).toBe(200);
      expect(Buffer.from(bytes).equals(Buffer.from(content)), path).toBe(true);
    }
  };
  async function uploaded(): Promise<Saved> {
    const g = await api.save(A, { project_id: randomUUID(), files: FILES });
    await ctx.uploads!.idle();
    expect((await api.get(`/${g.generation_id}`, A)).storage.status).toBe('uploaded');
    standIn.requests.length = 0;
    return g;
  }

  it('local folder: served without asking the cloud', async () => {
    const g = await uploaded();
    await allFilesMatch(g);
    expect(objectDownloads(g)).toBe(0);
  });

  it('cache, after the local copy is deleted: filled by one download, then served from it (the bucket object gone too)', async () => {
    const g = await uploaded();
    dropCopies(ctx, g, { local: true });
    await allFilesMatch(g);
    expect(objectDownloads(g)).toBe(1);
    rmSync(standIn.objectPath('codebegen-projects', `${g.project_id}/generations/v1__${g.generation_id}.tar.gz`));
    await allFilesMatch(g);
    expect(objectDownloads(g)).toBe(1);
  });

  it('bucket, after the local copy and the cache are deleted', async () => {
    const g = await uploaded();
    dropCopies(ctx, g, { local: true, cache: true });
    const { res, bytes } = await api.bytes(`/${g.generation_id}/files/app/main.py`, A);
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(bytes)).toBe(FILES['app/main.py']);
    expect(objectDownloads(g)).toBe(1);
    await allFilesMatch(g);
    expect(objectDownloads(g)).toBe(1);
  });

  it('outbox, for a generation not uploaded yet whose local copy is gone', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await api.save(A, { project_id: randomUUID(), files: FILES });
    await ctx.uploads!.idle();
    expect((await api.get(`/${g.generation_id}`, A)).storage.status).toBe('failed');
    dropCopies(ctx, g, { local: true, cache: true });
    await allFilesMatch(g);
    expect(objectDownloads(g)).toBe(0);
  });

  it('50 concurrent file reads of a cold generation cost exactly one cloud download, all byte-identical', async () => {
    const g = await uploaded();
    dropCopies(ctx, g, { local: true, cache: true });
    const paths = Object.keys(FILES);
    const reads = await Promise.all(Array.from({ length: 50 }, (_, i) => api.bytes(`/${g.generation_id}/files/${urlPath(paths[i % paths.length]!)}`, A)));
    reads.forEach(({ res, bytes }, i) => {
      expect(res.status).toBe(200);
      expect(Buffer.from(bytes).equals(Buffer.from(FILES[paths[i % paths.length]!]!))).toBe(true);
    });
    expect(objectDownloads(g)).toBe(1);
    // and the listing never reads an archive at all
    dropCopies(ctx, g, { local: true, cache: true });
    expect((await api.get(`/${g.generation_id}/files`, A)).file_count).toBe(paths.length);
    expect(objectDownloads(g)).toBe(1);
  });
});
