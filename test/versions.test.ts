import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../functions/_shared/db/database.ts';
import { migrate } from '../functions/_shared/db/migrate.ts';
import { readMigrations } from '../functions/_shared/db/migration-files.ts';
import { openPGlite } from '../functions/_shared/db/pglite-driver.ts';
import { appContext, migrateAll, sampleFiles, serviceToken, userToken, type AppContext } from './helpers/context.ts';

// Versions are never reused within a project, even after deletes (a per-project counter, public.projects.last_version,
// moved by a trigger on generations insert), and a delete removes the project folders it emptied.

const BASE = 'http://storage.test/generations';
const COUNTER_MIGRATION = '20261201000400';
const alice = randomUUID();

let ctx: AppContext;
let A: string;
let S: string;

beforeAll(async () => {
  ctx = await appContext();
  [A, S] = await Promise.all([userToken(alice), serviceToken()]);
});
afterAll(() => ctx.close());

const req = (path: string, init: RequestInit & { token?: string } = {}) => {
  const headers = new Headers(init.headers);
  if (init.token) headers.set('authorization', `Bearer ${init.token}`);
  return ctx.app.request(`${BASE}${path}`, { ...init, headers });
};
const post = (body: unknown, token: string) => req('', { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
async function save(token: string, body: Record<string, unknown>) {
  const res = await post(body, token);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as { generation_id: string; version: number; storage: { local_path: string } };
}
async function remove(id: string) {
  expect((await req(`/${id}`, { method: 'DELETE', token: A })).status).toBe(204);
}
const counter = async (project: string) =>
  (await ctx.db.asService((tx) => tx.query<{ v: number }>('select last_version as v from public.projects where id = $1::uuid', [project])))[0]?.v;

describe('version numbers', () => {
  it('never hands out a deleted version again: v1, v2, delete v2, the next save is v3', async () => {
    const project = randomUUID();
    expect((await save(A, { project_id: project, files: sampleFiles(2, 'a') })).version).toBe(1);
    const v2 = await save(A, { project_id: project, files: sampleFiles(2, 'b') });
    expect(v2.version).toBe(2);
    await remove(v2.generation_id);
    const v3 = await save(A, { project_id: project, files: sampleFiles(2, 'c') });
    expect(v3.version).toBe(3);
    expect(v3.storage.local_path).toBe(`${project}/generations/v3__${v3.generation_id}`);
    expect(await counter(project)).toBe(3);
  });

  it('refuses an explicit version that was used and deleted with 409 version_conflict, and changes nothing', async () => {
    const project = randomUUID();
    await save(A, { project_id: project, files: sampleFiles(2, 'a') });
    const v2 = await save(A, { project_id: project, files: sampleFiles(2, 'b') });
    await remove(v2.generation_id);
    const res = await post({ project_id: project, version: 2, files: sampleFiles(2, 'again') }, A);
    expect(res.status).toBe(409);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('version_conflict');
    expect(error.message).toMatch(/never reused/);
    expect(error.message).toMatch(/the next is 3/);
    expect(await counter(project)).toBe(2);
    expect(readdirSync(join(ctx.storage, project, 'generations')).filter((n) => n.startsWith('v2__'))).toEqual([]);
    // the service role is held to the same rule
    expect((await post({ project_id: project, owner_id: alice, version: 2, files: sampleFiles(2, 'svc') }, S)).status).toBe(409);
    expect((await save(A, { project_id: project, files: sampleFiles(2, 'c') })).version).toBe(3);
  });

  it('an explicit version above the counter moves it, for a user and for the service role', async () => {
    const project = randomUUID();
    expect((await save(A, { project_id: project, version: 5, files: sampleFiles(2, 'a') })).version).toBe(5);
    expect(await counter(project)).toBe(5);
    expect((await save(A, { project_id: project, files: sampleFiles(2, 'b') })).version).toBe(6);
    // below the counter and never used is refused too: numbers only go up
    expect((await post({ project_id: project, version: 3, files: sampleFiles(2, 'c') }, A)).status).toBe(409);
    expect((await save(S, { project_id: project, owner_id: alice, version: 9, files: sampleFiles(2, 'd') })).version).toBe(9);
    expect((await save(S, { project_id: project, owner_id: alice, files: sampleFiles(2, 'e') })).version).toBe(10);
    expect(await counter(project)).toBe(10);
  });

  it('concurrent saves after a delete still get distinct, new versions', async () => {
    const project = randomUUID();
    await save(A, { project_id: project, files: sampleFiles(2, 'a') });
    const v2 = await save(A, { project_id: project, files: sampleFiles(2, 'b') });
    await remove(v2.generation_id);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => save(A, { project_id: project, files: sampleFiles(2, `c${i}`) })));
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    expect(await counter(project)).toBe(10);
  });
});

describe('a delete removes the folders it emptied', () => {
  it('deleting the last generation leaves no empty {project}/generations/ nor {project}/ folder', async () => {
    const project = randomUUID();
    const v1 = await save(A, { project_id: project, files: sampleFiles(2, 'a') });
    const v2 = await save(A, { project_id: project, files: sampleFiles(2, 'b') });
    await remove(v1.generation_id);
    // another generation is still there: the folders stay
    expect(readdirSync(join(ctx.storage, project, 'generations')).sort()).toEqual([`v2__${v2.generation_id}`, `v2__${v2.generation_id}.tar.gz`]);
    await remove(v2.generation_id);
    expect(existsSync(join(ctx.storage, project, 'generations'))).toBe(false);
    expect(existsSync(join(ctx.storage, project))).toBe(false);
    expect(existsSync(ctx.storage)).toBe(true);
    // and the project lives on: its next save is v3, in a fresh folder
    const v3 = await save(A, { project_id: project, files: sampleFiles(2, 'c') });
    expect(v3.version).toBe(3);
    expect(existsSync(join(ctx.storage, v3.storage.local_path, 'manifest.json'))).toBe(true);
  });
});

describe('the counter migration on a database that already has generations', () => {
  it('backfills last_version from the existing generations (deleted newest ones are not known, the max is)', async () => {
    const db = createDatabase(await openPGlite());
    try {
      const migrations = await readMigrations('supabase/migrations');
      const bootstrap = readFileSync('supabase/bootstrap/plain-postgres.sql', 'utf8');
      await migrate(db, migrations.filter((m) => m.version < COUNTER_MIGRATION), bootstrap);
      const [withRows, empty] = [randomUUID(), randomUUID()];
      await db.asOwner(async (tx) => {
        await tx.query('insert into public.projects (id, owner_id) values ($1::uuid, $3::uuid), ($2::uuid, $3::uuid)', [withRows, empty, alice]);
        for (const version of [1, 4, 2]) {
          const id = randomUUID();
          await tx.query(
            `insert into public.generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes,
               archive_sha256, content_sha256, manifest, storage_key)
             values ($1::uuid, $2::uuid, $3::uuid, $4::int, 1, 1, 1, repeat('a', 64), repeat('b', 64), '{}'::jsonb,
               $2 || '/generations/v' || $4 || '__' || $1 || '.tar.gz')`,
            [id, withRows, alice, version],
          );
        }
      });
      expect(await migrateAll(db)).toContain(COUNTER_MIGRATION);
      const rows = await db.asOwner((tx) => tx.query<{ id: string; v: number }>('select id::text, last_version as v from public.projects order by id'));
      expect(Object.fromEntries(rows.map((r) => [r.id, r.v]))).toEqual({ [withRows]: 4, [empty]: 0 });

      // the API on that database continues after the backfilled counter
      const host = await appContext({}, db);
      try {
        const res = await host.app.request(BASE, {
          method: 'POST',
          headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
          body: JSON.stringify({ project_id: withRows, files: sampleFiles(1) }),
        });
        expect(res.status).toBe(201);
        expect(((await res.json()) as { version: number }).version).toBe(5);
      } finally {
        await host.close();
      }
    } finally {
      await db.close();
    }
  });
});
