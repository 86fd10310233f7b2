import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appContext, sampleFiles, serviceToken, SERVICE_KEY, userToken, type AppContext } from './helpers/context.ts';

// The service role (CodebeGen's backend) names owner_id for a project's first generation only: into an existing
// project, a save without it is the project owner's; another owner_id there stays a 409 (issue #17).

const BASE = 'http://storage.test/generations';
const alice = randomUUID();
const bob = randomUUID();

let ctx: AppContext;
let A: string;
let B: string;
let S: string;

beforeAll(async () => {
  ctx = await appContext();
  [A, B, S] = await Promise.all([userToken(alice), userToken(bob), serviceToken()]);
});
afterAll(() => ctx.close());

const req = (path: string, token: string | undefined, init: RequestInit = {}) => {
  const headers = new Headers(init.headers);
  if (token) headers.set('authorization', `Bearer ${token}`);
  return ctx.app.request(`${BASE}${path}`, { ...init, headers });
};
const post = (body: unknown, token: string) => req('', token, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
async function save(token: string, body: Record<string, unknown>) {
  const res = await post(body, token);
  expect(res.status, await res.clone().text()).toBe(201);
  return { body: (await res.json()) as Record<string, any>, replayed: res.headers.get('idempotent-replayed') === 'true' };
}
const counts = async (project: string) =>
  (
    await ctx.db.asService((tx) =>
      tx.query<{ projects: number; generations: number; last: number | null }>(
        `select (select count(*) from projects where id = $1::uuid)::int as projects,
                (select count(*) from generations where project_id = $1::uuid)::int as generations,
                (select last_version from projects where id = $1::uuid) as last`,
        [project],
      ),
    )
  )[0]!;

describe('a service-role save without owner_id', () => {
  it("is refused for a project's first generation, with a message that says owner_id is needed, and writes nothing", async () => {
    const project = randomUUID();
    const res = await post({ project_id: project, generation_id: randomUUID(), files: sampleFiles(2) }, S);
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('invalid_request');
    expect(error.message).toMatch(/^owner_id: required .*first generation/);
    expect(error.message).toContain(project);
    expect(await counts(project)).toEqual({ projects: 0, generations: 0, last: null });
    // also with the raw service key as the bearer
    const raw = await post({ project_id: project, files: sampleFiles(2) }, SERVICE_KEY);
    expect(raw.status).toBe(400);
    expect((await errorOf(raw)).message).toMatch(/owner_id/);
    expect(await counts(project)).toEqual({ projects: 0, generations: 0, last: null });
  });

  it("goes into an existing project as its owner's, at the next version", async () => {
    const project = randomUUID();
    const first = await save(S, { project_id: project, owner_id: bob, files: sampleFiles(2, 'v1') });
    const second = await save(S, { project_id: project, files: sampleFiles(2, 'v2') });
    const third = await save(SERVICE_KEY, { project_id: project, generation_id: randomUUID(), files: sampleFiles(2, 'v3') });
    expect([first.body.version, second.body.version, third.body.version]).toEqual([1, 2, 3]);
    for (const g of [second.body, third.body]) {
      expect(g.project_id).toBe(project);
      expect((await req(`/${g.generation_id}`, B)).status).toBe(200);
      expect((await req(`/${g.generation_id}`, A)).status).toBe(404);
      // the signed link is the owner's: it downloads
      const url = new URL(g.download_url as string);
      expect((await ctx.app.request(`${BASE}${url.pathname.replace(/^\/functions\/v1\/generations/, '')}${url.search}`)).status).toBe(200);
    }
    const owners = await ctx.db.asService((tx) => tx.query<{ owner_id: string }>('select distinct owner_id::text from generations where project_id = $1::uuid', [project]));
    expect(owners).toEqual([{ owner_id: bob }]);
    const list = (await (await req(`?project_id=${project}`, B)).json()) as { items: { version: number }[] };
    expect(list.items.map((i) => i.version)).toEqual([3, 2, 1]);
  });

  it("takes the owner of a project a user created with their own token", async () => {
    const project = randomUUID();
    await save(A, { project_id: project, files: sampleFiles(2, 'alice') });
    const { body } = await save(S, { project_id: project, files: sampleFiles(2, 'for alice') });
    expect(body.version).toBe(2);
    expect((await req(`/${body.generation_id}`, A)).status).toBe(200);
    expect((await req(`/${body.generation_id}`, B)).status).toBe(404);
  });

  it('is a replay when the same generation is sent again, with or without owner_id', async () => {
    const project = randomUUID();
    const withOwner = { project_id: project, generation_id: randomUUID(), owner_id: bob, files: sampleFiles(3, 'a'), metadata: { prompt: 'p' } };
    const a = await save(S, withOwner);
    const { owner_id: _, ...withoutOwner } = withOwner;
    const replay = await save(S, withoutOwner);
    expect(replay.replayed).toBe(true);
    expect({ ...replay.body, download_url: '', zip_url: '' }).toEqual({ ...a.body, download_url: '', zip_url: '' }); // signed URLs carry their issue time

    const sentWithout = { project_id: project, generation_id: randomUUID(), files: sampleFiles(3, 'b') };
    const b = await save(S, sentWithout);
    expect(b.replayed).toBe(false);
    const again = await save(S, { ...sentWithout, owner_id: bob });
    expect(again.replayed).toBe(true);
    expect(again.body.generation_id).toBe(b.body.generation_id);
    expect(again.body.version).toBe(2);
  });

  it('still works after every generation of the project was deleted (the project keeps its owner and versions)', async () => {
    const project = randomUUID();
    const { body } = await save(S, { project_id: project, owner_id: bob, files: sampleFiles(2) });
    expect((await req(`/${body.generation_id}`, S, { method: 'DELETE' })).status).toBe(204);
    const next = await save(S, { project_id: project, files: sampleFiles(2, 'after delete') });
    expect(next.body.version).toBe(2);
    expect((await req(`/${next.body.generation_id}`, B)).status).toBe(200);
  });

  it('gets distinct versions when several run at once', async () => {
    const project = randomUUID();
    await save(S, { project_id: project, owner_id: alice, files: sampleFiles(2) });
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => save(S, { project_id: project, files: sampleFiles(2, `c${i}`) })));
    expect(results.map((r) => r.body.version).sort((x, y) => x - y)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(await counts(project)).toMatchObject({ generations: 7, last: 7 });
  });
});

describe('a service-role save with owner_id into an existing project', () => {
  it("is accepted when it names the project's owner", async () => {
    const project = randomUUID();
    await save(S, { project_id: project, owner_id: bob, files: sampleFiles(2) });
    expect((await save(S, { project_id: project, owner_id: bob, files: sampleFiles(2, 'again') })).body.version).toBe(2);
  });

  it('stays a 409 generation_conflict when it names another owner, and changes nothing', async () => {
    const project = randomUUID();
    await save(S, { project_id: project, owner_id: bob, files: sampleFiles(2) });
    const before = await counts(project);
    const res = await post({ project_id: project, owner_id: alice, files: sampleFiles(2, 'x') }, S);
    expect(res.status).toBe(409);
    const error = await errorOf(res);
    expect(error.code).toBe('generation_conflict');
    expect(error.message).toMatch(/another owner/);
    expect(await counts(project)).toEqual(before);
    // the next save without owner_id is still bob's, at the next version (the refusal reserved none)
    const { body } = await save(S, { project_id: project, files: sampleFiles(2, 'y') });
    expect(body.version).toBe(2);
    expect((await req(`/${body.generation_id}`, B)).status).toBe(200);
  });

  it("leaves users as they were: no owner_id into another user's project is a 404, another user's owner_id a 403", async () => {
    const project = randomUUID();
    await save(S, { project_id: project, owner_id: bob, files: sampleFiles(2) });
    const hidden = await post({ project_id: project, files: sampleFiles(2, 'alice') }, A);
    expect(hidden.status).toBe(404);
    expect((await errorOf(hidden)).code).toBe('project_not_found');
    const forbidden = await post({ project_id: project, owner_id: bob, files: sampleFiles(2, 'alice') }, A);
    expect(forbidden.status).toBe(403);
    expect(await counts(project)).toMatchObject({ generations: 1, last: 1 });
  });
});
