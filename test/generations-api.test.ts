import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackTree } from '../functions/_shared/archive/tar-gz.ts';
import { appContext, sampleFiles, serviceToken, SERVICE_KEY, userToken, type AppContext } from './helpers/context.ts';

const BASE = 'http://storage.test/generations';
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const alice = randomUUID();
const bob = randomUUID();

let ctx: AppContext;
let A: string; // alice's token
let B: string; // bob's token
let S: string; // service token

beforeAll(async () => {
  ctx = await appContext({ MAX_FILES: '20', MAX_FILE_BYTES: '4096', MAX_GENERATION_BYTES: '16384', MAX_REQUEST_BYTES: '65536', MAX_METADATA_BYTES: '1024' });
  [A, B, S] = await Promise.all([userToken(alice), userToken(bob), serviceToken()]);
});
afterAll(() => ctx.close());

const req = async (path: string, init: RequestInit & { token?: string } = {}): Promise<Response> => {
  const headers = new Headers(init.headers);
  if (init.token) headers.set('authorization', `Bearer ${init.token}`);
  return ctx.app.request(`${BASE}${path}`, { ...init, headers });
};
const post = (body: unknown, token?: string, contentType = 'application/json') =>
  req('', { method: 'POST', token, headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

/** Everything a failed request might have touched: rows and files. */
async function snapshot() {
  const rows = await ctx.db.asService((tx) => tx.query<{ n: number }>('select (select count(*) from generations)::int + (select count(*) from projects)::int as n'));
  const listing = (dir: string): string[] =>
    existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).flatMap((e) => [join(dir, e.name), ...(e.isDirectory() ? listing(join(dir, e.name)) : [])]) : [];
  return { rows: rows[0]!.n, files: listing(ctx.storage).filter((p) => !p.includes('.codebegen-tmp')).sort() };
}

async function save(token: string, body: Record<string, unknown>) {
  const res = await post(body, token);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as Record<string, any>;
}

describe('POST /generations (the save callback)', () => {
  it('saves in CodebeGen layout and answers with the archive digest and a signed URL', async () => {
    const project = randomUUID();
    const files = sampleFiles(6);
    const body = await save(A, { project_id: project, files, metadata: { prompt: 'a todo API' } });
    expect(body).toMatchObject({ project_id: project, version: 1, file_count: 6, expires_in: 3600 });
    expect(body.total_size_bytes).toBe(Object.values(files).reduce((n, c) => n + Buffer.byteLength(c), 0));
    expect(body.storage).toEqual({ local_path: `${project}/generations/v1__${body.generation_id}`, cloud_enabled: false, uploaded: false, status: 'local' });
    expect(body.storage.local_path).not.toContain(ctx.storage);
    expect(body.download_url).toMatch(new RegExp(`^http://storage.test/functions/v1/generations/${body.generation_id}/download\\?token=`));
    const dir = join(ctx.storage, body.storage.local_path);
    expect(readdirSync(dir).sort()).toEqual(['artifacts', 'manifest.json', 'source']);
    expect(existsSync(join(dir, 'source/app/main.py'))).toBe(true);

    const dl = await ctx.app.request(body.download_url.replace('http://storage.test/functions/v1', 'http://storage.test'));
    expect(dl.status).toBe(200);
    const bytes = new Uint8Array(await dl.arrayBuffer());
    expect(sha256(bytes)).toBe(body.sha256);
    expect(dl.headers.get('content-disposition')).toBe(`attachment; filename="v1__${body.generation_id}.tar.gz"`);
    expect(dl.headers.get('content-type')).toBe('application/gzip');
    const tree = await unpackTree(bytes, { maxEntries: 100, maxFileBytes: 1e6, maxTotalBytes: 1e7 });
    for (const [path, content] of Object.entries(files)) {
      const f = tree.files.find((x) => x.path === `v1__${body.generation_id}/source/${path}`);
      expect(new TextDecoder().decode(f!.data)).toBe(content);
    }
  });

  it('numbers versions per project, honours an explicit one, and refuses a taken one with 409', async () => {
    const project = randomUUID();
    expect((await save(A, { project_id: project, files: sampleFiles(3, 'a') })).version).toBe(1);
    expect((await save(A, { project_id: project, files: sampleFiles(3, 'b') })).version).toBe(2);
    expect((await save(A, { project_id: project, version: 7, files: sampleFiles(3, 'c') })).version).toBe(7);
    expect((await save(A, { project_id: project, files: sampleFiles(3, 'd') })).version).toBe(8);
    const before = await snapshot();
    const res = await post({ project_id: project, version: 2, files: sampleFiles(3, 'e') }, A);
    expect(res.status).toBe(409);
    expect((await errorOf(res)).code).toBe('version_conflict');
    expect(await snapshot()).toEqual(before);
  });

  it('concurrent saves into one project get distinct versions', async () => {
    const project = randomUUID();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => save(A, { project_id: project, files: sampleFiles(3, `c${i}`) })));
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('is idempotent for the same generation and 409 for the same id with other content', async () => {
    const project = randomUUID();
    const id = randomUUID();
    const first = await save(A, { project_id: project, generation_id: id, files: sampleFiles(4), metadata: { a: 1, b: [1, 2] } });
    // same content, keys in another order: a replay
    const files = Object.fromEntries(Object.entries(sampleFiles(4)).reverse());
    const res = await post({ project_id: project, generation_id: id, files, metadata: { b: [1, 2], a: 1 } }, A);
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    const again = (await res.json()) as Record<string, unknown>;
    expect(again.sha256).toBe(first.sha256);
    expect(again.version).toBe(first.version);
    const before = await snapshot();
    const changed = await post({ project_id: project, generation_id: id, files: sampleFiles(4, 'other') }, A);
    expect(changed.status).toBe(409);
    expect((await errorOf(changed)).code).toBe('generation_conflict');
    const otherProject = await post({ project_id: randomUUID(), generation_id: id, files: sampleFiles(4) }, A);
    expect(otherProject.status).toBe(409);
    expect(await snapshot()).toEqual(before);
  });

  it('lower-cases ids so one generation never has two folders', async () => {
    const project = randomUUID();
    const id = randomUUID();
    const body = await save(A, { project_id: project.toUpperCase(), generation_id: id.toUpperCase(), files: sampleFiles(3) });
    expect(body.project_id).toBe(project);
    expect(body.generation_id).toBe(id);
  });

  it("never saves into another user's project (404, nothing written)", async () => {
    const project = randomUUID();
    await save(A, { project_id: project, files: sampleFiles(3) });
    const before = await snapshot();
    const res = await post({ project_id: project, files: sampleFiles(3, 'bob') }, B);
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe('project_not_found');
    expect(await snapshot()).toEqual(before);
  });

  it("cannot destroy another user's project folder by reusing its id as a generation id", async () => {
    const victim = await save(A, { project_id: randomUUID(), files: sampleFiles(3) });
    const attacker = await save(B, { project_id: randomUUID(), generation_id: victim.project_id, files: sampleFiles(1, 'x') });
    expect((await req(`/${attacker.generation_id}`, { method: 'DELETE', token: B })).status).toBe(204);
    expect(existsSync(join(ctx.storage, victim.storage.local_path))).toBe(true);
    expect((await req(`/${victim.generation_id}/download`, { token: A })).status).toBe(200);
  });

  it('lets the service role save for an owner, who then owns it', async () => {
    const project = randomUUID();
    const body = await save(S, { project_id: project, owner_id: bob, files: sampleFiles(3) });
    expect((await req(`/${body.generation_id}`, { token: B })).status).toBe(200);
    expect((await req(`/${body.generation_id}`, { token: A })).status).toBe(404);
    // the raw service key works as a bearer too (CodebeGen's backend)
    expect((await req(`/${body.generation_id}`, { token: SERVICE_KEY })).status).toBe(200);
    // and the service role cannot put bob's project under alice
    const res = await post({ project_id: project, owner_id: alice, files: sampleFiles(3, 'x') }, S);
    expect(res.status).toBe(409);
  });

  const bad: [string, () => Promise<Response>, number, string, RegExp?][] = [
    ['no token', () => post({ project_id: randomUUID(), files: sampleFiles(1) }), 401, 'unauthorized'],
    ['a token signed with another secret', async () => post({ project_id: randomUUID(), files: sampleFiles(1) }, await userToken(alice, { secret: 'x'.repeat(40) })), 401, 'unauthorized'],
    ['an expired token', async () => post({ project_id: randomUUID(), files: sampleFiles(1) }, await userToken(alice, { expiresIn: Math.floor(Date.now() / 1000) - 60 })), 401, 'unauthorized'],
    ['non-JSON', () => post('{"project_id": ', A), 400, 'invalid_json'],
    ['a wrong content type', () => post('project_id=1', A, 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type'],
    ['a missing project_id', () => post({ files: sampleFiles(1) }, A), 400, 'invalid_request', /project_id/],
    ['an invalid project_id', () => post({ project_id: 'not-a-uuid', files: sampleFiles(1) }, A), 400, 'invalid_request', /project_id/],
    ['an invalid generation_id', () => post({ project_id: randomUUID(), generation_id: '../../x', files: sampleFiles(1) }, A), 400, 'invalid_request', /generation_id/],
    ['no files', () => post({ project_id: randomUUID(), files: {} }, A), 400, 'invalid_request', /files/],
    ['files as a list', () => post({ project_id: randomUUID(), files: ['a.py'] }, A), 400, 'invalid_request', /files/],
    ['a non-string file content', () => post({ project_id: randomUUID(), files: { 'a.py': 1 } }, A), 400, 'invalid_request', /files\.a\.py/],
    ['an unknown field', () => post({ project_id: randomUUID(), files: sampleFiles(1), extra: 1 }, A), 400, 'invalid_request', /extra/],
    ['version 0', () => post({ project_id: randomUUID(), version: 0, files: sampleFiles(1) }, A), 400, 'invalid_request', /version/],
    ['a fractional version', () => post({ project_id: randomUUID(), version: 1.5, files: sampleFiles(1) }, A), 400, 'invalid_request', /version/],
    ['a string version', () => post({ project_id: randomUUID(), version: '2', files: sampleFiles(1) }, A), 400, 'invalid_request', /version/],
    ['metadata not an object', () => post({ project_id: randomUUID(), files: sampleFiles(1), metadata: 'x' }, A), 400, 'invalid_request', /metadata/],
    ['an absolute path', () => post({ project_id: randomUUID(), files: { '/etc/passwd': 'x' } }, A), 400, 'invalid_path', /etc\/passwd/],
    ['a ".." path', () => post({ project_id: randomUUID(), files: { 'app/../../x.py': 'x' } }, A), 400, 'invalid_path', /\.\./],
    ['a NUL in a path', () => post({ project_id: randomUUID(), files: { 'a\u0000.py': 'x' } }, A), 400, 'invalid_path'],
    ['a backslash path', () => post({ project_id: randomUUID(), files: { 'app\\main.py': 'x' } }, A), 400, 'invalid_path'],
    ['duplicates after normalisation', () => post({ project_id: randomUUID(), files: { 'app/a.py': 'x', 'app//./a.py': 'y' } }, A), 400, 'invalid_path', /app\/a\.py/],
    ['a path that is file and folder', () => post({ project_id: randomUUID(), files: { app: 'x', 'app/a.py': 'y' } }, A), 400, 'invalid_path'],
    ['owner_id from a user', () => post({ project_id: randomUUID(), owner_id: bob, files: sampleFiles(1) }, A), 403, 'forbidden', /owner_id/],
    ['the service role without owner_id', () => post({ project_id: randomUUID(), files: sampleFiles(1) }, S), 400, 'invalid_request', /owner_id/],
    ['too many files', () => post({ project_id: randomUUID(), files: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`f${i}.py`, ''])) }, A), 413, 'payload_too_large', /21 files/],
    ['a file over the limit', () => post({ project_id: randomUUID(), files: { 'big.py': 'x'.repeat(4097) } }, A), 413, 'payload_too_large', /big\.py/],
    ['a generation over the limit', () => post({ project_id: randomUUID(), files: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}.py`, 'x'.repeat(4000)])) }, A), 413, 'payload_too_large'],
    ['metadata over the limit', () => post({ project_id: randomUUID(), files: sampleFiles(1), metadata: { x: 'y'.repeat(2000) } }, A), 413, 'payload_too_large', /metadata/],
    ['metadata with a NUL', () => post({ project_id: randomUUID(), files: sampleFiles(1), metadata: { x: 'a\u0000b' } }, A), 400, 'invalid_request', /metadata: contains a NUL/],
    ['metadata with an unpaired surrogate', () => post({ project_id: randomUUID(), files: sampleFiles(1), metadata: { x: '\ud800' } }, A), 400, 'invalid_request', /metadata: .*surrogate/],
    ['metadata with a NUL in a key', () => post({ project_id: randomUUID(), files: sampleFiles(1), metadata: { 'a\u0000': 'x' } }, A), 400, 'invalid_request', /metadata/],
    ['metadata nested 5000 deep', () => post(`{"project_id":"${randomUUID()}","files":{"a.py":"x"},"metadata":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`, A), 400, 'invalid_request', /nested deeper/],
    ['metadata with a __proto__ key', () => post(`{"project_id":"${randomUUID()}","files":{"a.py":"x"},"metadata":{"__proto__":{"x":1}}}`, A), 400, 'invalid_request', /__proto__/],
    ['a file named __proto__', () => post(`{"project_id":"${randomUUID()}","files":{"__proto__":"x","keep.py":"y"}}`, A), 400, 'invalid_path', /__proto__/],
    ['file content that is not valid Unicode', () => post({ project_id: randomUUID(), files: { 'a.py': 'x\ud800y' } }, A), 400, 'invalid_request', /a\.py.*surrogate/],
    ['two files differing only in case', () => post({ project_id: randomUUID(), files: { 'README.md': 'a', 'readme.md': 'b' } }, A), 400, 'invalid_path', /differ only in case/],
    ['a version over the maximum', () => post({ project_id: randomUUID(), version: 1_000_000_001, files: sampleFiles(1) }, A), 400, 'invalid_request', /version/],
    ['a body over the request limit', () => post({ project_id: randomUUID(), files: { 'a.py': 'x'.repeat(70_000) } }, A), 413, 'payload_too_large'],
  ];
  it.each(bad)('refuses %s with a clear %i and changes nothing', async (_name, send, status, code, message) => {
    const before = await snapshot();
    const res = await send();
    expect(res.status).toBe(status);
    const error = await errorOf(res);
    expect(error.code).toBe(code);
    if (message) expect(error.message).toMatch(message);
    expect(await snapshot()).toEqual(before);
  });
});

describe('POST /generations refuses what it would have to alter', () => {
  it('a body that is not valid UTF-8: 400 naming where, nothing written', async () => {
    const before = await snapshot();
    const head = new TextEncoder().encode(`{"project_id":"${randomUUID()}","files":{"a.py":"x = '`);
    const body = new Uint8Array([...head, 0xff, 0xfe, ...new TextEncoder().encode(`'"}}`)]);
    const res = await req('', { method: 'POST', token: A, headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toEqual({ code: 'invalid_json', message: `body is not valid UTF-8 (at byte ${head.length}, in the value of "a.py")` });
    expect(await snapshot()).toEqual(before);
  });

  for (const [what, raw] of [
    ['an integer beyond 2^53', '9007199254740993'],
    ['a number JSON turns into Infinity', '1e400'],
    ['a negative one', '-1e400'],
  ] as const) {
    it(`metadata with ${what} (${raw}): 400, not silently changed`, async () => {
      const before = await snapshot();
      const res = await post(`{"project_id":"${randomUUID()}","files":{"a.py":"x"},"metadata":{"seed":${raw}}}`, A);
      expect(res.status).toBe(400);
      expect((await errorOf(res)).message).toMatch(/^metadata: .*(integer beyond|too large)/);
      expect(await snapshot()).toEqual(before);
    });
  }

  it('keeps numbers JSON carries exactly, as sent', async () => {
    const metadata = { big: 9007199254740991, neg: -9007199254740991, tenth: 0.1, tiny: 5e-324, small: 1.5e-300 };
    const g = await save(A, { project_id: randomUUID(), files: { 'a.py': 'x' }, metadata });
    const got = (await (await req(`/${g.generation_id}`, { token: A })).json()) as { metadata?: unknown };
    const manifest = JSON.parse(readFileSync(join(ctx.storage, g.storage.local_path, 'manifest.json'), 'utf8')) as { metadata: unknown };
    expect(manifest.metadata).toEqual(metadata);
    if (got.metadata !== undefined) expect(got.metadata).toEqual(metadata);
  });
});

describe('GET /generations (list)', () => {
  it("pages through a project's generations, newest first", async () => {
    const project = randomUUID();
    for (let i = 0; i < 5; i++) await save(A, { project_id: project, files: sampleFiles(2, `${i}`) });
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const res = await req(`?project_id=${project}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: A });
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: { version: number; download_url?: string }[]; next_cursor: string | null };
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((i) => i.version));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual([5, 4, 3, 2, 1]);
  });

  it('accepts every cursor it hands out, up to the largest version a row can hold', async () => {
    const project = randomUUID();
    const g = await save(A, { project_id: project, files: sampleFiles(2) });
    // the migration may register versions above the API's own limit (1 000 000 000); a row holds up to 2^31 - 1
    for (const v of [1_000_000_002, 2_147_483_646, 2_147_483_647]) {
      await ctx.db.asService((tx) =>
        tx.query(
          `insert into generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes, archive_sha256, content_sha256, manifest, storage_key, upload_status)
           select n.id, g.project_id, g.owner_id, $2::int, g.file_count, g.total_size_bytes, g.archive_size_bytes, g.archive_sha256, g.content_sha256, g.manifest,
             g.project_id::text || '/generations/v' || $2::int || '__' || n.id || '.tar.gz', 'local'
           from generations g, (select gen_random_uuid() as id) n where g.id = $1::uuid`,
          [g.generation_id, v],
        ),
      );
    }
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const res = await req(`?project_id=${project}&limit=1${cursor ? `&cursor=${cursor}` : ''}`, { token: A });
      expect(res.status, cursor ?? '').toBe(200);
      const page = (await res.json()) as { items: { version: number }[]; next_cursor: string | null };
      seen.push(...page.items.map((i) => i.version));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual([2_147_483_647, 2_147_483_646, 1_000_000_002, 1]);
  });

  it("answers 404 for another user's project and for none, 400 for bad queries", async () => {
    const project = randomUUID();
    await save(A, { project_id: project, files: sampleFiles(2) });
    expect((await req(`?project_id=${project}`, { token: B })).status).toBe(404);
    expect((await req(`?project_id=${randomUUID()}`, { token: A })).status).toBe(404);
    expect((await req(`?project_id=${project}`)).status).toBe(401);
    for (const q of [`?project_id=${project}&limit=0x10`, `?project_id=${project}&limit=1e1`, `?project_id=${project}&cursor=${btoa('v:9999999999')}`, '', '?project_id=x', `?project_id=${project}&limit=0`, `?project_id=${project}&limit=101`, `?project_id=${project}&cursor=zzz`, `?project_id=${project}&bogus=1`]) {
      const res = await req(q, { token: A });
      expect(res.status, q).toBe(400);
    }
  });
});

describe('GET /generations/:id, download and DELETE', () => {
  let gen: Record<string, any>;
  beforeAll(async () => {
    gen = await save(A, { project_id: randomUUID(), files: sampleFiles(3) });
  });

  it('gets its own generation with a fresh URL; others and unknown ids are 404; bad ids 400', async () => {
    const res = await req(`/${gen.generation_id}`, { token: A });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.sha256).toBe(gen.sha256);
    expect(body.download_url).toMatch(/token=/);
    expect((await req(`/${gen.generation_id}`, { token: B })).status).toBe(404);
    expect((await req(`/${randomUUID()}`, { token: A })).status).toBe(404);
    expect((await req(`/${gen.generation_id}`)).status).toBe(401);
    expect((await req('/not-a-uuid', { token: A })).status).toBe(400);
  });

  it('downloads with the signed URL until it expires; tampered or foreign tokens are refused', async () => {
    const path = (url: string) => url.replace('http://storage.test/functions/v1/generations', '');
    const url = path(gen.download_url);
    expect((await req(url)).status).toBe(200);
    const token = new URL(gen.download_url).searchParams.get('token')!;
    const [h, p, s] = token.split('.');
    const tampered = `${h}.${p!.slice(0, -2)}${p!.endsWith('A') ? 'B' : 'A'}${p!.slice(-1)}.${s}`;
    expect((await errorOf(await req(`/${gen.generation_id}/download?token=${tampered}`))).code).toBe('invalid_download_token');
    const other = await save(A, { project_id: randomUUID(), files: sampleFiles(2) });
    expect((await errorOf(await req(`/${other.generation_id}/download?token=${token}`))).code).toBe('invalid_download_token');
    expect((await req(`/${gen.generation_id}/download`)).status).toBe(401);
    expect((await req(`/${gen.generation_id}/download`, { token: A })).status).toBe(200);
    // a client that has these bytes already gets 304
    expect((await req(`/${gen.generation_id}/download`, { token: A, headers: { 'if-none-match': `"${gen.sha256}"` } })).status).toBe(304);
    expect((await req(`/${gen.generation_id}/download`, { token: B })).status).toBe(404);
    // one structured line per request, and never the token
    expect(ctx.log.lines.some((l) => l.msg === 'request' && l.path === `/generations/${gen.generation_id}/download` && l.status === 200)).toBe(true);
    expect(JSON.stringify(ctx.log.lines)).not.toContain(token.split('.')[2]);

    ctx.clock.offset += 3601 * 1000;
    try {
      const res = await req(url);
      expect(res.status).toBe(401);
      expect((await errorOf(res)).code).toBe('download_token_expired');
    } finally {
      ctx.clock.offset -= 3601 * 1000;
    }
  });

  it("deletes only the owner's generation: files and row go, a repeat is 404", async () => {
    const g = await save(A, { project_id: randomUUID(), files: sampleFiles(3) });
    const dir = join(ctx.storage, g.storage.local_path);
    expect((await req(`/${g.generation_id}`, { method: 'DELETE', token: B })).status).toBe(404);
    expect(existsSync(dir)).toBe(true);
    expect((await req(`/${g.generation_id}`, { method: 'DELETE' })).status).toBe(401);
    const res = await req(`/${g.generation_id}`, { method: 'DELETE', token: A });
    expect(res.status).toBe(204);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`${dir}.tar.gz`)).toBe(false);
    expect((await req(`/${g.generation_id}`, { token: A })).status).toBe(404);
    expect((await req(`/${g.generation_id}`, { method: 'DELETE', token: A })).status).toBe(404);
    expect((await req(g.download_url.replace('http://storage.test/functions/v1/generations', ''))).status).toBe(404);
  });

  it('never revives an old download link: deleted and saved again under its id, even in another project, the old link is 404', async () => {
    const id = randomUUID();
    const first = await save(A, { project_id: randomUUID(), generation_id: id, files: sampleFiles(3, 'first') });
    expect((await req(`/${id}`, { method: 'DELETE', token: A })).status).toBe(204);
    const second = await save(A, { project_id: randomUUID(), generation_id: id, files: sampleFiles(3, 'second') });
    expect(second.sha256).not.toBe(first.sha256);
    const old = await req(first.download_url.replace('http://storage.test/functions/v1/generations', ''));
    expect(old.status).toBe(404);
    expect(((await old.json()) as { error: { code: string } }).error.code).toBe('generation_not_found');
    const fresh = await req(second.download_url.replace('http://storage.test/functions/v1/generations', ''));
    expect(sha256(new Uint8Array(await fresh.arrayBuffer()))).toBe(second.sha256);
  });

  it('re-packs a missing stored archive from the folder and proves it is the same bytes', async () => {
    const g = await save(A, { project_id: randomUUID(), files: sampleFiles(4) });
    const { rmSync } = await import('node:fs');
    rmSync(join(ctx.storage, `${g.storage.local_path}.tar.gz`));
    const res = await req(`/${g.generation_id}/download`, { token: A });
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(g.sha256);
  });
});

describe('health, OpenAPI, CORS and unknown routes', () => {
  it('reports health without a token', async () => {
    const res = await req('/health');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', db: { ok: true }, storage: { ok: true }, cloud: { enabled: false, ok: null }, outbox: null });
  });

  it('serves an OpenAPI document built from the schemas', async () => {
    const doc = (await (await req('/openapi.json')).json()) as any;
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/', '/{id}', '/{id}/download', '/health']));
    const ref = doc.paths['/'].post.requestBody.content['application/json'].schema.$ref as string;
    const schema = doc.components.schemas[ref.split('/').pop()!];
    expect(schema.required).toEqual(expect.arrayContaining(['project_id', 'files']));
  });

  it('answers CORS preflights', async () => {
    const res = await req('', { method: 'OPTIONS', headers: { origin: 'https://app.codebegen.dev', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')).toMatch(/authorization/);
  });

  it('answers other methods on known paths with 405 and Allow', async () => {
    for (const [method, path, allow] of [['PUT', '', 'GET, POST'], ['PUT', `/${randomUUID()}`, 'GET, PATCH, DELETE'], ['POST', `/${randomUUID()}/download`, 'GET']] as const) {
      const res = await req(path, { method, token: A });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect((await errorOf(res)).code).toBe('method_not_allowed');
    }
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await ctx.app.request('http://storage.test/generations/a/b/c');
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe('not_found');
  });
});
