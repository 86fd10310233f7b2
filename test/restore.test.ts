import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackTree } from '../functions/_shared/archive/tar-gz.ts';
import { cloudAppContext } from './helpers/cloud-context.ts';
import { appContext, serviceToken, userToken, type AppContext } from './helpers/context.ts';
import { dropCopies, errorOf, generationsClient, sha256, type Saved } from './helpers/generations-client.ts';

// POST /generations/{id}/restore (a new version with the source's files and metadata, nothing overwritten,
// idempotent by generation_id) and PATCH /generations/{id} (pinning), over the app in process.

const LIMITS = { maxEntries: 1000, maxFileBytes: 1e7, maxTotalBytes: 1e8 };
const V1 = { 'app/main.py': 'print("v1")\n', 'README.md': '# v1 ✓\n', 'app/util/helpers.py': 'def f():\n    return 1\n', 'empty.txt': '' };
const V2 = { 'app/main.py': 'print("v2")\n', 'README.md': '# v2\n', 'new.py': 'x = 2\n' };

let ctx: AppContext;
let api: ReturnType<typeof generationsClient>;
let A: string;
let B: string;
let S: string;
const alice = randomUUID();

beforeAll(async () => {
  ctx = await appContext();
  api = generationsClient(ctx);
  [A, B, S] = await Promise.all([userToken(alice), userToken(randomUUID()), serviceToken()]);
});
afterAll(() => ctx.close());

const restore = (id: string, body?: unknown, token = A, headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' }) =>
  api.req(`/${id}/restore`, { method: 'POST', token, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });

/** The generation's files (path -> sha256), its manifest's metadata and its archive, from the tar.gz download. */
async function contents(id: string, token = A) {
  const { res, bytes } = await api.bytes(`/${id}/download`, token);
  expect(res.status).toBe(200);
  const tree = await unpackTree(bytes, LIMITS);
  const root = tree.files[0]!.path.split('/')[0]!;
  const manifest = JSON.parse(new TextDecoder().decode(tree.files.find((f) => f.path === `${root}/manifest.json`)!.data));
  const files = Object.fromEntries(tree.files.filter((f) => f.path.startsWith(`${root}/source/`)).map((f) => [f.path.slice(`${root}/source/`.length), sha256(f.data)]));
  return { root, manifest, files, archive: sha256(bytes) };
}

/** Every file under the generation's local folder and its archive, with sizes and mtimes: what "untouched" means. */
function onDisk(g: Saved) {
  const dir = join(ctx.config.storagePath, g.storage.local_path);
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[p] = `${sha256(readFileSync(p))}:${statSync(p).mtimeMs}`;
    }
  };
  walk(dir);
  out[`${dir}.tar.gz`] = `${sha256(readFileSync(`${dir}.tar.gz`))}:${statSync(`${dir}.tar.gz`).mtimeMs}`;
  return out;
}

describe('POST /generations/{id}/restore', () => {
  it("restores v1 as the project's next version: same files and metadata plus restored_from; v1 untouched", async () => {
    const project = randomUUID();
    const g1 = await api.save(A, { project_id: project, files: V1, metadata: { prompt: 'a todo API', nested: { n: [1, 2] } } });
    const g2 = await api.save(A, { project_id: project, files: V2, metadata: { prompt: 'v2' } });
    const before = { row: await api.get(`/${g1.generation_id}`, A), disk: onDisk(g1), contents: await contents(g1.generation_id) };

    const res = await restore(g1.generation_id);
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    const g3 = (await res.json()) as Saved & { restored_from: unknown };
    expect(res.headers.get('location')).toBe(`http://storage.test/functions/v1/generations/${g3.generation_id}`);
    expect(g3).toMatchObject({ project_id: project, version: 3, file_count: 4, restored_from: { generation_id: g1.generation_id, version: 1 }, pinned: false });
    expect(g3.generation_id).not.toBe(g1.generation_id);
    expect(g3.zip_url).toContain(`/${g3.generation_id}/download?format=zip&token=`);

    const copy = await contents(g3.generation_id);
    expect(copy.files).toEqual(before.contents.files);
    expect(copy.files).toEqual(Object.fromEntries(Object.entries(V1).map(([p, c]) => [p, sha256(c)])));
    expect(copy.manifest.metadata).toEqual({ prompt: 'a todo API', nested: { n: [1, 2] }, restored_from: { generation_id: g1.generation_id, version: 1 } });
    expect(copy.manifest).toMatchObject({ generation_id: g3.generation_id, version: 3 });
    // not a byte copy: the root folder and manifest name the new version and id
    expect(copy.root).toBe(`v3__${g3.generation_id}`);
    expect(copy.archive).not.toBe(before.contents.archive);
    for (const [path, content] of Object.entries(V1)) {
      const { bytes } = await api.bytes(`/${g3.generation_id}/files/${path}`, A);
      expect(Buffer.from(bytes).equals(Buffer.from(content)), path).toBe(true);
    }

    expect(await api.get(`/${g1.generation_id}`, A)).toMatchObject({ ...before.row, download_url: expect.any(String), zip_url: expect.any(String) });
    expect(onDisk(g1)).toEqual(before.disk);
    expect(await contents(g1.generation_id)).toEqual(before.contents);
    expect((await contents(g2.generation_id)).files).toEqual(Object.fromEntries(Object.entries(V2).map(([p, c]) => [p, sha256(c)])));
    const list = await api.get<{ items: { version: number }[] }>(`?project_id=${project}`, A);
    expect(list.items.map((i) => i.version)).toEqual([3, 2, 1]);

    // a restore of the restore: restored_from names its own source, the rest carries over
    const g4 = (await (await restore(g3.generation_id)).json()) as Saved & { restored_from: unknown };
    expect(g4).toMatchObject({ version: 4, restored_from: { generation_id: g3.generation_id, version: 3 } });
    const again = await contents(g4.generation_id);
    expect(again.files).toEqual(copy.files);
    expect(again.manifest.metadata.restored_from).toEqual({ generation_id: g3.generation_id, version: 3 });
  });

  it('is idempotent by generation_id: a replay answers the same generation, Idempotent-Replayed, no new version', async () => {
    const project = randomUUID();
    const g1 = await api.save(A, { project_id: project, files: V1 });
    const g2 = await api.save(A, { project_id: project, files: V2 });
    const id = randomUUID();
    const first = await restore(g1.generation_id, { generation_id: id });
    expect(first.status).toBe(201);
    const made = (await first.json()) as Saved;
    expect(made).toMatchObject({ generation_id: id, version: 3 });
    for (const spelled of [id, id.toUpperCase()]) {
      const replay = await restore(g1.generation_id, { generation_id: spelled });
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.json()).toMatchObject({ generation_id: id, version: 3, sha256: made.sha256, restored_from: { generation_id: g1.generation_id, version: 1 } });
    }
    // the same id for another source is other content: 409, nothing made
    const conflict = await restore(g2.generation_id, { generation_id: id });
    expect(conflict.status).toBe(409);
    expect((await errorOf(conflict)).code).toBe('generation_conflict');
    // an id another user holds is taken
    const bobs = await api.save(B, { project_id: randomUUID(), files: V1 });
    expect((await restore(g1.generation_id, { generation_id: bobs.generation_id })).status).toBe(409);
    // without an id, each restore is a new version
    expect(((await (await restore(g1.generation_id, {})).json()) as Saved).version).toBe(4);
    expect(((await (await restore(g1.generation_id)).json()) as Saved).version).toBe(5);
    expect(((await (await restore(g1.generation_id, '', A, { 'content-type': 'application/json' })).json()) as Saved).version).toBe(6);
    const list = await api.get<{ items: { version: number }[] }>(`?project_id=${project}`, A);
    expect(list.items.map((i) => i.version)).toEqual([6, 5, 4, 3, 2, 1]);
  });

  it("answers another user's generation and an unknown one with the same 404, and writes nothing", async () => {
    const bobs = await api.save(B, { project_id: randomUUID(), files: V1 });
    for (const id of [bobs.generation_id, randomUUID()]) {
      for (const body of [undefined, { generation_id: randomUUID() }]) {
        const res = await restore(id, body);
        expect(res.status).toBe(404);
        expect(await errorOf(res)).toEqual({ code: 'generation_not_found', message: 'generation not found' });
      }
    }
    const list = await api.get<{ items: unknown[] }>(`?project_id=${bobs.project_id}`, B);
    expect(list.items).toHaveLength(1);
  });

  it('lets the service role restore for the owner, who owns the copy', async () => {
    const g1 = await api.save(A, { project_id: randomUUID(), files: V1 });
    const res = await restore(g1.generation_id, undefined, S);
    expect(res.status).toBe(201);
    const made = (await res.json()) as Saved;
    expect((await api.get(`/${made.generation_id}`, A)).version).toBe(2);
    expect((await api.req(`/${made.generation_id}`, { token: B })).status).toBe(404);
  });

  it('refuses bad input: a strict body, JSON only, a UUID id, a token', async () => {
    const g1 = await api.save(A, { project_id: randomUUID(), files: V1 });
    const cases: [unknown, Record<string, string>, number, string][] = [
      [{ generation_id: 'nope' }, { 'content-type': 'application/json' }, 400, 'generation_id'],
      [{ project_id: randomUUID() }, { 'content-type': 'application/json' }, 400, 'project_id'],
      [{ files: {} }, { 'content-type': 'application/json' }, 400, 'files'],
      [[], { 'content-type': 'application/json' }, 400, 'body'],
      ['{"generation_id":', { 'content-type': 'application/json' }, 400, 'JSON'],
      [{ generation_id: randomUUID() }, { 'content-type': 'text/plain' }, 415, 'application/json'],
      ['x'.repeat(5000), { 'content-type': 'application/json' }, 413, 'over'],
    ];
    for (const [body, headers, status, says] of cases) {
      const res = await restore(g1.generation_id, body, A, headers);
      expect(res.status, JSON.stringify(body).slice(0, 40)).toBe(status);
      expect((await errorOf(res)).message).toContain(says);
    }
    expect((await restore('not-a-uuid')).status).toBe(400);
    expect((await api.req(`/${g1.generation_id}/restore`, { method: 'POST' })).status).toBe(401);
    const get = await api.req(`/${g1.generation_id}/restore`, { token: A });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const list = await api.get<{ items: unknown[] }>(`?project_id=${g1.project_id}`, A);
    expect(list.items).toHaveLength(1);
  });
});

describe('PATCH /generations/{id} (pinning)', () => {
  it('pins and unpins the owner’s generation; get and list show it', async () => {
    const g = await api.save(A, { project_id: randomUUID(), files: V1 });
    expect(g.pinned).toBe(false);
    const pin = await api.json(`/${g.generation_id}`, A, 'PATCH', { pinned: true });
    expect(pin.status).toBe(200);
    expect(await pin.json()).toMatchObject({ generation_id: g.generation_id, pinned: true, download_url: expect.any(String), zip_url: expect.any(String) });
    expect((await api.get(`/${g.generation_id}`, A)).pinned).toBe(true);
    expect((await api.get<{ items: { pinned: boolean }[] }>(`?project_id=${g.project_id}`, A)).items[0]!.pinned).toBe(true);
    // the same value again changes nothing and answers the same
    expect(await (await api.json(`/${g.generation_id}`, A, 'PATCH', { pinned: true })).json()).toMatchObject({ pinned: true });
    expect(await (await api.json(`/${g.generation_id}`, A, 'PATCH', { pinned: false })).json()).toMatchObject({ pinned: false });
    expect((await api.get(`/${g.generation_id}`, A)).pinned).toBe(false);
  });

  it("answers another user's generation and an unknown one with the same 404, and changes nothing", async () => {
    const g = await api.save(A, { project_id: randomUUID(), files: V1 });
    for (const [id, token] of [[g.generation_id, B], [randomUUID(), A]] as const) {
      const res = await api.json(`/${id}`, token, 'PATCH', { pinned: true });
      expect(res.status).toBe(404);
      expect(await errorOf(res)).toEqual({ code: 'generation_not_found', message: 'generation not found' });
    }
    expect((await api.get(`/${g.generation_id}`, A)).pinned).toBe(false);
  });

  it('takes exactly {"pinned": boolean}: anything else is a 400 (or 415 / 401), and changes nothing', async () => {
    const g = await api.save(A, { project_id: randomUUID(), files: V1 });
    for (const body of [{}, { pinned: 'true' }, { pinned: 1 }, { pinned: null }, { pinned: true, version: 3 }, [true], 'true', '{"pinned": tru']) {
      const res = await api.json(`/${g.generation_id}`, A, 'PATCH', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(['invalid_request', 'invalid_json']).toContain((await errorOf(res)).code);
    }
    expect((await api.req(`/${g.generation_id}`, { method: 'PATCH', token: A, body: '{"pinned":true}' })).status).toBe(415);
    expect((await api.req(`/${g.generation_id}`, { method: 'PATCH', token: A, headers: { 'content-type': 'text/plain' }, body: '{"pinned":true}' })).status).toBe(415);
    expect((await api.json(`/${g.generation_id}`, undefined, 'PATCH', { pinned: true })).status).toBe(401);
    expect((await api.json(`/not-a-uuid`, A, 'PATCH', { pinned: true })).status).toBe(400);
    expect((await api.json(`/${g.generation_id}`, A, 'PATCH', { pinned: true, pad: 'x'.repeat(5000) })).status).toBe(413);
    expect((await api.get(`/${g.generation_id}`, A)).pinned).toBe(false);
  });
});

describe('restore with cloud storage on', () => {
  it('restores a cold generation (no local copy, no cache) from the bucket, and uploads the copy', async () => {
    const cloud = await cloudAppContext();
    try {
      const c = generationsClient(cloud.ctx);
      const A2 = await userToken(randomUUID());
      const g1 = await c.save(A2, { project_id: randomUUID(), files: V1, metadata: { m: 1 } });
      await cloud.ctx.uploads!.idle();
      dropCopies(cloud.ctx, g1, { local: true, cache: true });
      const res = await c.req(`/${g1.generation_id}/restore`, { method: 'POST', token: A2 });
      expect(res.status).toBe(201);
      const g2 = (await res.json()) as Saved;
      expect(g2).toMatchObject({ version: 2, storage: { status: 'pending' } });
      await cloud.ctx.uploads!.idle();
      expect((await c.get(`/${g2.generation_id}`, A2)).storage.status).toBe('uploaded');
      const listed = await c.get<{ files: { path: string; sha256: string }[] }>(`/${g2.generation_id}/files`, A2);
      expect(Object.fromEntries(listed.files.map((f) => [f.path, f.sha256]))).toEqual(Object.fromEntries(Object.entries(V1).map(([p, v]) => [p, sha256(v)])));
    } finally {
      await cloud.close();
    }
  });
});
