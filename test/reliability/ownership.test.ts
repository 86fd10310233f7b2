import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appContext, JWT_SECRET, sampleFiles, userToken, type AppContext } from '../helpers/context.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import { report, sha256 } from './support.ts';

// Reliability 3 — ownership. Two users, every endpoint, their own ids, each other's and ids that do not exist;
// then every kind of bad token; then the bucket reached directly with a user's token (the stand-in asks the real
// storage.objects policy, in our Postgres, whether a user may read a key). Nothing of one user reaches the other,
// and another user's id answers exactly as an id that does not exist: same status, same body, byte for byte.

const BUCKET = 'codebegen-projects';
const alice = randomUUID();
const bob = randomUUID();

let standIn: StandIn;
let ctx: AppContext;
const tokens: Record<'alice' | 'bob', string> = { alice: '', bob: '' };

interface Gen {
  generation_id: string;
  project_id: string;
  version: number;
  sha256: string;
  download_url: string;
  key: string;
}
const gens = {} as Record<'alice' | 'bob', Gen>;
/** Each user's own download link (our signed URL: minted while a generation is not yet in the bucket). */
const links = {} as Record<'alice' | 'bob', { generation_id: string; token: string }>;

/** storage.objects SELECT, decided by the policy in our migrations: the row is mirrored, then read as the user. */
async function policyAllows(user: string, bucket: string, key: string): Promise<boolean> {
  await ctx.db.asOwner((tx) => tx.query('insert into storage.objects (bucket_id, name) values ($1, $2) on conflict (bucket_id, name) do nothing', [bucket, key]));
  const rows = await ctx.db.asUser({ sub: user }, (tx) => tx.query('select 1 from storage.objects where bucket_id = $1 and name = $2', [bucket, key]));
  return rows.length > 0;
}

const call = async (path: string, token: string | null, init: RequestInit = {}): Promise<Response> =>
  ctx.app.request(`http://storage.test/generations${path}`, { ...init, headers: { ...(token === null ? {} : { authorization: token.includes(' ') ? token : `Bearer ${token}` }), ...init.headers } });
const saveAs = async (token: string, project = randomUUID(), more: object = {}) => {
  const res = await call('', token, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files: sampleFiles(3, project), ...more }) });
  expect(res.status, await res.clone().text()).toBe(201);
  const g = (await res.json()) as Gen;
  return { ...g, key: `${g.project_id}/generations/v${g.version}__${g.generation_id}.tar.gz` };
};

/** What a caller learns from an answer: status, content type and the exact body. */
async function seen(res: Response) {
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET, canRead: (user, bucket, key) => policyAllows(user, bucket, key) });
  ctx = await appContext(
    { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey },
    undefined,
    { cloudRetry: { retries: 1, minTimeoutMs: 5, maxTimeoutMs: 10 } },
  );
  await ctx.cloud!.ensureBucket();
  tokens.alice = await userToken(alice);
  tokens.bob = await userToken(bob);
  gens.alice = await saveAs(tokens.alice);
  gens.bob = await saveAs(tokens.bob);
  await ctx.uploads!.idle();
  standIn.faults.failNext(1000, 503);
  for (const who of ['alice', 'bob'] as const) {
    const g = await saveAs(tokens[who]);
    const url = new URL(((await (await call(`/${g.generation_id}`, tokens[who])).json()) as { download_url: string }).download_url);
    expect(url.origin).toBe('http://storage.test');
    links[who] = { generation_id: g.generation_id, token: url.searchParams.get('token')! };
  }
  await ctx.uploads!.idle();
  standIn.faults.clear();
});
afterAll(async () => {
  await ctx?.close();
  await standIn?.close();
});

const figures = { cells: 0, identical_pairs: 0, bad_tokens: 0, storage_checks: 0, leaks: 0, oracles: 0 };
type Seen = Awaited<ReturnType<typeof seen>>;
/** Another's id must answer exactly as a missing one: counted, then asserted. */
function sameAnswer(a: Seen, b: Seen, label: string) {
  if (JSON.stringify(a) !== JSON.stringify(b)) figures.oracles++;
  else figures.identical_pairs++;
  expect(a, label).toEqual(b);
}
/** No id, digest or user id of the other user in what the caller saw. */
function noLeak(body: string, secrets: string[], label: string) {
  const leaked = secrets.filter((x) => body.includes(x));
  figures.leaks += leaked.length;
  expect(leaked, label).toEqual([]);
}
afterAll(() => {
  report('ownership', {
    ...figures,
    documented_exceptions: [
      'POST / into another user\'s project: 404 project_not_found, into a free id: 201 (ids are chosen by callers; see docs/RELIABILITY.md)',
      'POST / with another user\'s generation_id: 409 generation_conflict, with a free one: 201 (same reason)',
    ],
  });
});

describe('two users x every endpoint x own / other\'s / nonexistent ids', () => {
  type Target = { id: string; project: string };
  const nobody = (): Target => ({ id: randomUUID(), project: randomUUID() });
  const targetOf = (who: 'alice' | 'bob'): Target => ({ id: gens[who].generation_id, project: gens[who].project_id });

  // Each endpoint as a user calls it on a target, and what the owner gets (null: the owner's case has its own test).
  const endpoints: [string, (token: string, t: Target) => Promise<Response>, number | null][] = [
    ['GET /{id}', (tk, t) => call(`/${t.id}`, tk), 200],
    ['HEAD /{id}', (tk, t) => call(`/${t.id}`, tk, { method: 'HEAD' }), 200],
    ['GET /{id}/download', (tk, t) => call(`/${t.id}/download`, tk), 200],
    // The ETag a client holding the archive would send: 304 for the owner, and no hint for anyone else.
    ['GET /{id}/download with If-None-Match of the archive\'s sha256', (tk, t) => call(`/${t.id}/download`, tk, { headers: { 'if-none-match': `"${Object.values(gens).find((g) => g.generation_id === t.id)?.sha256 ?? gens.alice.sha256}"` } }), 304],
    ['GET /?project_id=', (tk, t) => call(`?project_id=${t.project}`, tk), 200],
    ['GET /?project_id=&limit=1&cursor=', (tk, t) => call(`?project_id=${t.project}&limit=1&cursor=${btoa('v:2').replace(/=+$/, '')}`, tk), 200],
    ['DELETE /{id}', (tk, t) => call(`/${t.id}`, tk, { method: 'DELETE' }), null],
  ];

  it.each(endpoints)('%s: other\'s id and a nonexistent id answer identically; the owner is served', async (name, hit, ownStatus) => {
    for (const viewer of ['alice', 'bob'] as const) {
      const other = viewer === 'alice' ? 'bob' : 'alice';
      const tk = tokens[viewer];
      if (ownStatus !== null) {
        expect((await hit(tk, targetOf(viewer))).status, `${name} own`).toBe(ownStatus);
        figures.cells++;
      }
      const others = await seen(await hit(tk, targetOf(other)));
      const none = await seen(await hit(tk, nobody()));
      figures.cells += 2;
      expect(others.status, `${name}: ${others.body}`).toBeGreaterThanOrEqual(400);
      sameAnswer(others, none, `${name}: other's vs nonexistent`);
      noLeak(others.body, [gens[other].generation_id, gens[other].project_id, gens[other].sha256, other], name);
    }
    // Nothing of either user changed: not the row, not the local copy, not the bucket's copy.
    for (const who of ['alice', 'bob'] as const) {
      const res = await call(`/${gens[who].generation_id}/download`, tokens[who]);
      expect(res.status).toBe(200);
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(gens[who].sha256);
      expect(sha256(readFileSync(standIn.objectPath(BUCKET, gens[who].key))), `${who}'s object in the bucket`).toBe(gens[who].sha256);
    }
  });

  it("GET /{id}/download?token=: a user's own link opens their generation only; on another's id and a nonexistent one it answers the same", async () => {
    for (const viewer of ['alice', 'bob'] as const) {
      const other = viewer === 'alice' ? 'bob' : 'alice';
      const link = (id: string) => call(`/${id}/download?token=${encodeURIComponent(links[viewer].token)}`, null);
      expect((await link(links[viewer].generation_id)).status).toBe(200);
      for (const target of [gens[other].generation_id, links[other].generation_id]) {
        const a = await seen(await link(target));
        expect(a.status).toBe(401);
        sameAnswer(a, await seen(await link(randomUUID())), `link of ${viewer}`);
      }
      figures.cells += 5;
    }
  });

  it('DELETE of one\'s own generation works, and afterwards it answers exactly as one that never existed', async () => {
    const mine = await saveAs(tokens.bob);
    await ctx.uploads!.idle();
    expect((await call(`/${mine.generation_id}`, tokens.bob, { method: 'DELETE' })).status).toBe(204);
    expect(existsSync(standIn.objectPath(BUCKET, mine.key))).toBe(false);
    for (const [path, init] of [[`/${mine.generation_id}`, {}], [`/${mine.generation_id}/download`, {}], [`/${mine.generation_id}`, { method: 'DELETE' }]] as const) {
      sameAnswer(await seen(await call(path, tokens.bob, init)), await seen(await call(path.replace(mine.generation_id, randomUUID()), tokens.bob, init)), `${path} after delete`);
    }
    figures.cells += 7;
  });

  it("never touches the bucket on another user's behalf: a cold generation stays cold for them", async () => {
    const cold = await saveAs(tokens.alice);
    await ctx.uploads!.idle();
    const dir = join(ctx.storage, cold.project_id, 'generations', `v${cold.version}__${cold.generation_id}`);
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.tar.gz`, { force: true });
    const before = standIn.requests.length;
    for (const path of [`/${cold.generation_id}`, `/${cold.generation_id}/download`, `?project_id=${cold.project_id}`]) {
      expect((await call(path, tokens.bob)).status).toBe(404);
    }
    expect((await call(`/${cold.generation_id}`, tokens.bob, { method: 'DELETE' })).status).toBe(404);
    expect(standIn.requests.length, 'Storage requests made while bob probed').toBe(before);
    expect(existsSync(standIn.objectPath(BUCKET, cold.key))).toBe(true);
    // The owner still gets it, from the bucket.
    const res = await call(`/${cold.generation_id}/download`, tokens.alice);
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(cold.sha256);
    figures.cells += 5;
  });

  it("saves: another user's project is refused (404, nothing written); another user's generation id is refused (409, victim intact)", async () => {
    const count = async () => (await ctx.db.asService((tx) => tx.query<{ n: number }>('select (select count(*) from generations)::int + (select count(*) from projects)::int as n')))[0]!.n;
    const rowsBefore = await count();
    const into = await call('', tokens.bob, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: gens.alice.project_id, files: sampleFiles(2, 'bob') }) });
    expect(into.status).toBe(404);
    expect(((await into.json()) as { error: { code: string } }).error.code).toBe('project_not_found');
    const reuse = await call('', tokens.bob, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), generation_id: gens.alice.generation_id, files: sampleFiles(2, 'bob') }) });
    expect(reuse.status).toBe(409);
    const reuseBody = await reuse.text();
    noLeak(reuseBody, [gens.alice.project_id, gens.alice.sha256, alice], 'reused generation id');
    expect(await count()).toBe(rowsBefore);
    const res = await call(`/${gens.alice.generation_id}/download`, tokens.alice);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(gens.alice.sha256);
    figures.cells += 2;
  });

  it('the storage-maintenance function is the service\'s alone', async () => {
    for (const who of ['alice', 'bob'] as const) {
      const res = await ctx.maintenanceApp.request('http://storage.test/storage-maintenance', { method: 'POST', headers: { authorization: `Bearer ${tokens[who]}` } });
      expect(res.status).toBe(403);
    }
    expect((await ctx.maintenanceApp.request('http://storage.test/storage-maintenance', { method: 'POST' })).status).toBe(401);
    figures.cells += 3;
  });
});

describe('bad tokens on every endpoint', () => {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const exp = () => Math.floor(Date.now() / 1000) + 3600;
  const sign = (claims: Record<string, unknown>, secret = JWT_SECRET) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(secret));

  const badTokens: [string, () => Promise<string | null>][] = [
    ['no Authorization header', async () => null],
    ['"Bearer" without a token', async () => 'Bearer '],
    ['Basic credentials', async () => 'Basic YWxpY2U6cGFzc3dvcmQ='],
    ['garbage', async () => 'Bearer not.a.jwt'],
    ['expired', () => userToken(alice, { expiresIn: Math.floor(Date.now() / 1000) - 60 })],
    ['signed with another secret', () => userToken(alice, { secret: 'another-secret-that-is-long-enough-0123456789' })],
    ["bob's token with alice as subject (signature kept)", async () => {
      const [h, , s] = tokens.bob.split('.');
      return `${h}.${b64({ role: 'authenticated', aud: 'authenticated', sub: alice, exp: exp() })}.${s}`;
    }],
    ['alg none', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ role: 'authenticated', sub: alice, exp: exp() })}.`],
    ['RS256 header over an HS256 signature', async () => {
      const [, p, s] = tokens.alice.split('.');
      return `${b64({ alg: 'RS256', typ: 'JWT' })}.${p}.${s}`;
    }],
    ['role anon (the anon key)', () => sign({ role: 'anon' })],
    ['authenticated without a UUID subject', () => sign({ role: 'authenticated', sub: 'alice' })],
    ['service_role signed with another secret', () => sign({ role: 'service_role' }, 'another-secret-that-is-long-enough-0123456789')],
  ];

  const targets = () => [
    { id: gens.alice.generation_id, project: gens.alice.project_id },
    { id: randomUUID(), project: randomUUID() },
  ];
  const hits: [string, (token: string | null, t: { id: string; project: string }) => Promise<Response>][] = [
    ['GET /{id}', (tk, t) => call(`/${t.id}`, tk)],
    ['GET /{id}/download', (tk, t) => call(`/${t.id}/download`, tk)],
    ['DELETE /{id}', (tk, t) => call(`/${t.id}`, tk, { method: 'DELETE' })],
    ['GET /?project_id=', (tk, t) => call(`?project_id=${t.project}`, tk)],
    ['POST /', (tk, t) => call('', tk, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: t.project, files: sampleFiles(1) }) })],
    ['POST /storage-maintenance', async (tk) => ctx.maintenanceApp.request('http://storage.test/storage-maintenance', { method: 'POST', headers: tk === null ? {} : { authorization: tk.includes(' ') ? tk : `Bearer ${tk}` } })],
  ];

  it.each(badTokens)('%s: 401 everywhere, the same for an existing and a nonexistent target, nothing changed', async (_name, make) => {
    const token = await make();
    for (const [name, hit] of hits) {
      const [existing, missing] = targets();
      const a = await seen(await hit(token, existing!));
      const b = await seen(await hit(token, missing!));
      expect(a.status, `${name}: ${a.body}`).toBe(401);
      expect(JSON.parse(a.body).error.code, name).toBe('unauthorized');
      sameAnswer(a, b, name);
      figures.cells += 2;
    }
    const res = await call(`/${gens.alice.generation_id}/download`, tokens.alice);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(gens.alice.sha256);
    figures.bad_tokens++;
  });

  it('download links: expired, tampered or for another generation answer the same for an existing and a nonexistent id', async () => {
    const token = links.alice.token;
    const [h, p, s] = token.split('.');
    const variants: [string, string][] = [
      ['garbage', 'x'],
      ['tampered', `${h}.${p!.slice(0, -2)}${p!.endsWith('A') ? 'B' : 'A'}${p!.slice(-1)}.${s}`],
      ['for another generation', token],
    ];
    for (const [name, t] of variants) {
      const a = await seen(await call(`/${gens.alice.generation_id}/download?token=${encodeURIComponent(t)}`, null));
      const b = await seen(await call(`/${randomUUID()}/download?token=${encodeURIComponent(t)}`, null));
      expect(a.status, name).toBe(401);
      sameAnswer(a, b, name);
    }
    ctx.clock.offset += 2 * 3600_000;
    try {
      const a = await seen(await call(`/${links.alice.generation_id}/download?token=${encodeURIComponent(token)}`, null));
      expect(a.status).toBe(401);
      expect(JSON.parse(a.body).error.code).toBe('download_token_expired');
    } finally {
      ctx.clock.offset -= 2 * 3600_000;
    }
    figures.cells += 7;
  });
});

describe('the bucket reached directly with a user token', () => {
  const api = (path: string, token: string | null, init: RequestInit = {}) =>
    fetch(`${standIn.url}/storage/v1${path}`, { ...init, headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...init.headers } });
  const json = { 'content-type': 'application/json' };
  const reads: [string, (token: string | null, key: string) => Promise<Response>][] = [
    ['GET /object/authenticated/{key}', (tk, key) => api(`/object/authenticated/${BUCKET}/${key}`, tk)],
    ['GET /object/{key} (storage-js download)', (tk, key) => api(`/object/${BUCKET}/${key}`, tk)],
    ['GET /object/info/authenticated/{key}', (tk, key) => api(`/object/info/authenticated/${BUCKET}/${key}`, tk)],
    ['POST /object/sign/{key}', (tk, key) => api(`/object/sign/${BUCKET}/${key}`, tk, { method: 'POST', headers: json, body: JSON.stringify({ expiresIn: 60 }) })],
    ['POST /object/list (the project folder)', (tk, key) => api(`/object/list/${BUCKET}`, tk, { method: 'POST', headers: json, body: JSON.stringify({ prefix: key.split('/').slice(0, 2).join('/') }) })],
  ];
  const missingKey = () => `${randomUUID()}/generations/v1__${randomUUID()}.tar.gz`;

  it('a user reads their own archives and nothing of anyone else; another\'s key answers as a missing one', async () => {
    for (const viewer of ['alice', 'bob'] as const) {
      const other = viewer === 'alice' ? 'bob' : 'alice';
      const own = await api(`/object/authenticated/${BUCKET}/${gens[viewer].key}`, tokens[viewer]);
      expect(own.status).toBe(200);
      expect(sha256(new Uint8Array(await own.arrayBuffer()))).toBe(gens[viewer].sha256);
      for (const [name, read] of reads) {
        const a = await seen(await read(tokens[viewer], gens[other].key));
        const b = await seen(await read(tokens[viewer], missingKey()));
        sameAnswer(a, b, `${name} as ${viewer}`);
        noLeak(a.body, [gens[other].generation_id, gens[other].project_id], name);
        figures.storage_checks += 2;
      }
    }
    // Anonymous and bad tokens: the same answer whether the key exists or not.
    for (const token of [null, await userToken(alice, { expiresIn: Math.floor(Date.now() / 1000) - 60 }), await userToken(alice, { secret: 'another-secret-that-is-long-enough-0123456789' })]) {
      for (const [name, read] of reads) {
        const a = await seen(await read(token, gens.alice.key));
        expect(a.status, name).toBeGreaterThanOrEqual(400);
        sameAnswer(a, await seen(await read(token, missingKey())), name);
        figures.storage_checks += 2;
      }
    }
  });

  it("a user can neither remove, overwrite nor add objects, in another's folder or their own", async () => {
    const removed = await api(`/object/${BUCKET}`, tokens.bob, { method: 'DELETE', headers: json, body: JSON.stringify({ prefixes: [gens.alice.key] }) });
    expect(await removed.json()).toEqual([]);
    expect(existsSync(standIn.objectPath(BUCKET, gens.alice.key))).toBe(true);
    for (const key of [gens.alice.key, `${gens.alice.project_id}/generations/v99__${randomUUID()}.tar.gz`, `${gens.bob.project_id}/generations/v99__${randomUUID()}.tar.gz`]) {
      const res = await api(`/object/${BUCKET}/${key}`, tokens.bob, { method: 'POST', headers: { 'content-type': 'application/gzip', 'x-upsert': 'true' }, body: new Uint8Array([0x1f, 0x8b, 8, 0]) });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ statusCode: '403', code: 'AccessDenied' });
    }
    expect(sha256(new Uint8Array(await (await api(`/object/authenticated/${BUCKET}/${gens.alice.key}`, tokens.alice)).arrayBuffer()))).toBe(gens.alice.sha256);
    // The same, decided by the policies in SQL (what the real Storage API runs): no insert, update or delete for users.
    const asBob = <T>(sql: string, params: unknown[]) => ctx.db.asUser({ sub: bob }, (tx) => tx.query<T>(sql, params)).then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');
    expect(await asBob('insert into storage.objects (bucket_id, name) values ($1, $2)', [BUCKET, `${gens.bob.project_id}/generations/v99__${randomUUID()}.tar.gz`])).toBe('42501');
    const untouched = await ctx.db.asUser({ sub: bob }, (tx) => tx.query('delete from storage.objects where name = $1 returning id', [gens.alice.key]));
    expect(untouched).toEqual([]);
    figures.storage_checks += 7;
  });
});
