import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase } from '../functions/_shared/db/database.ts';
import { readMigrations } from '../functions/_shared/db/migration-files.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { scratchDatabase } from './helpers/scratch-db.ts';
import { appContext, migrateAll, sampleFiles, userToken, type AppContext } from './helpers/context.ts';

// The same migrations and code path on a real PostgreSQL server through postgres.js (Debian's
// PostgreSQL 15; test/global-setup.ts starts a cluster). Each run gets a database of its own, dropped afterwards.

const adminUrl = inject('databaseUrl');
if (!adminUrl) console.warn('\n!!! test/postgres.test.ts SKIPPED: no PostgreSQL server (see test/global-setup.ts) !!!\n');

describe.skipIf(!adminUrl)('on real PostgreSQL via postgres.js', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let url: string;
  let ctx: AppContext;
  let appliedByRunners: string[][];

  beforeAll(async () => {
    scratch = await scratchDatabase(adminUrl);
    url = scratch.url;
    // two runners at once on a new database, as two servers starting together would
    const runners = [createDatabase(openPostgres(url, { max: 2 })), createDatabase(openPostgres(url, { max: 2 }))];
    try {
      appliedByRunners = await Promise.all(runners.map(migrateAll));
    } finally {
      await Promise.all(runners.map((d) => d.close()));
    }
    ctx = await appContext({}, createDatabase(openPostgres(url)));
  });

  afterAll(async () => {
    await ctx?.close();
    await scratch?.drop();
  });

  it('applies each migration exactly once with concurrent runners, and nothing on a re-run', async () => {
    const files = (await readMigrations('supabase/migrations')).map((m) => m.version);
    expect(appliedByRunners.flat().sort()).toEqual(files);
    expect(await migrateAll(ctx.db)).toEqual([]);
    const recorded = await ctx.db.asOwner((tx) => tx.query<{ version: string }>('select version from supabase_migrations.schema_migrations order by 1'));
    expect(recorded.map((r) => r.version)).toEqual(files);
  });

  it('saves, isolates users, numbers concurrent saves and deletes, through the API', async () => {
    const alice = randomUUID();
    const [A, B] = [await userToken(alice), await userToken(randomUUID())];
    const project = randomUUID();
    const call = (path: string, token: string, init: RequestInit = {}) =>
      ctx.app.request(`http://storage.test/generations${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });
    const saves = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        call('', A, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files: sampleFiles(3, `${i}`) }) }),
      ),
    );
    expect(saves.map((r) => r.status)).toEqual([201, 201, 201, 201, 201, 201]);
    const bodies = (await Promise.all(saves.map((r) => r.json()))) as { generation_id: string; version: number }[];
    expect(bodies.map((b) => b.version).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    const id = bodies[0]!.generation_id;
    expect((await call(`/${id}`, A)).status).toBe(200);
    expect((await call(`/${id}`, B)).status).toBe(404);
    expect((await call(`?project_id=${project}`, B)).status).toBe(404);
    expect((await call(`/${id}`, B, { method: 'DELETE' })).status).toBe(404);
    const into = await call('', B, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files: sampleFiles(1) }) });
    expect(into.status).toBe(404);
    expect((await call(`/${id}`, A, { method: 'DELETE' })).status).toBe(204);
    expect((await call(`/${id}`, A)).status).toBe(404);
  });

  it('has RLS on every table of ours', async () => {
    const rows = await ctx.db.asOwner((tx) =>
      tx.query<{ relname: string; relrowsecurity: boolean }>(`select relname, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r'`),
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) expect(r.relrowsecurity, r.relname).toBe(true);
  });
});
