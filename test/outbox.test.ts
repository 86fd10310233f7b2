import { createHash, randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { createDatabase, type Database } from '../functions/_shared/db/database.ts';
import { openPGlite } from '../functions/_shared/db/pglite-driver.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { appContext, JWT_SECRET, migrateAll, migratedPGlite, sampleFiles, userToken, type AppContext } from './helpers/context.ts';
import { faultyDriver } from './helpers/faulty-driver.ts';
import { scratchDatabase } from './helpers/scratch-db.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// The upload outbox: with cloud on, a 201 means the archive's exact bytes are committed in Postgres (or already
// verified in the bucket), so no host's disk is ever the only copy. Real PGlite / PostgreSQL 15, real files, the
// Storage stand-in on loopback; faults injected only where a network would put them.

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const FAST_RETRY = { retries: 1, minTimeoutMs: 5, maxTimeoutMs: 10 };
const alice = randomUUID();
let A: string;
let standIn: StandIn;

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  A = await userToken(alice);
  const bucket = await fetch(`${standIn.url}/storage/v1/bucket`, {
    method: 'POST',
    headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'codebegen-projects', name: 'codebegen-projects', public: false }),
  });
  expect(bucket.status).toBe(200);
});
afterAll(() => standIn.close());
beforeEach(() => standIn.faults.clear());

/** A fresh, migrated PGlite whose driver can be told to fail (see faulty-driver.ts). */
async function faultyPGlite() {
  const faulty = faultyDriver(await openPGlite());
  const db = createDatabase(faulty.driver);
  await migrateAll(db);
  return { faulty, db };
}

/** One host (its own disk) with cloud on, on the database given. */
const host = (db: Database, wiring = {}) =>
  appContext({ USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey }, db, { cloudRetry: FAST_RETRY, ...wiring });

type Saved = { generation_id: string; project_id: string; version: number; sha256: string; storage: { status: string } };
async function save(ctx: AppContext, body: { project_id?: string; generation_id?: string; files?: Record<string, string> } = {}): Promise<Response> {
  return ctx.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: body.project_id ?? randomUUID(), generation_id: body.generation_id, files: body.files ?? sampleFiles(5, randomUUID()) }),
  });
}
async function saved(ctx: AppContext, body: Parameters<typeof save>[1] = {}): Promise<Saved> {
  const res = await save(ctx, body);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as Saved;
}
async function download(ctx: AppContext, id: string): Promise<{ status: number; sha: string }> {
  const res = await ctx.app.request(`http://storage.test/generations/${id}/download`, { headers: { authorization: `Bearer ${A}` } });
  return { status: res.status, sha: sha256(new Uint8Array(await res.arrayBuffer())) };
}
const row = async (db: Database, id: string) =>
  (await db.asService((tx) => tx.query<{ upload_status: string; upload_attempts: number; staged: boolean }>(
    `select upload_status, upload_attempts, exists (select 1 from codebegen_private.upload_outbox where generation_id = g.id) as staged
     from generations g where id = $1::uuid`,
    [id],
  )))[0];
const keyOf = (g: Saved) => `${g.project_id}/generations/v${g.version}__${g.generation_id}.tar.gz`;
/** Uploads of this generation's object that the stand-in accepted. */
const uploadsOf = (g: Saved) => standIn.requests.filter((r) => r.method === 'POST' && r.status === 200 && r.path.endsWith(keyOf(g)) && !r.path.includes('/sign/')).length;
const wipeDisks = (ctx: AppContext) => {
  rmSync(ctx.config.storagePath, { recursive: true, force: true });
  rmSync(ctx.config.cachePath, { recursive: true, force: true });
};

describe('a 201 is committed in Postgres', () => {
  let db: Database;
  let a: AppContext;
  let b: AppContext;
  beforeAll(async () => {
    db = await migratedPGlite();
    [a, b] = [await host(db), await host(db)];
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await db.close();
  });

  it('stores the archive in the outbox with the row, and removes it once the bucket copy is verified', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await saved(a);
    await a.uploads!.idle();
    expect(await row(db, g.generation_id)).toEqual({ upload_status: 'failed', upload_attempts: 1, staged: true });
    const [staged] = await db.asService((tx) => tx.query<{ archive: Uint8Array; archive_sha256: string }>('select archive, archive_sha256 from codebegen_private.upload_outbox where generation_id = $1::uuid', [g.generation_id]));
    expect(staged!.archive_sha256).toBe(g.sha256);
    expect(sha256(new Uint8Array(staged!.archive))).toBe(g.sha256);
    standIn.faults.clear();
    a.clock.offset += 60_000;
    expect(await a.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 100 })).toMatchObject({ claimed: 1, uploaded: 1, failed: 0 });
    expect(await row(db, g.generation_id)).toEqual({ upload_status: 'uploaded', upload_attempts: 2, staged: false });
  });

  it("serves a save on host A from host B (another disk) while it is still pending: from the outbox, verified, then cached", async () => {
    standIn.faults.failNext(1000, 503);
    const g = await saved(a);
    await a.uploads!.idle();
    expect((await row(db, g.generation_id))!.upload_status).toBe('failed');
    expect(existsSync(join(b.config.storagePath, g.project_id))).toBe(false);
    expect(await download(b, g.generation_id)).toEqual({ status: 200, sha: g.sha256 });
    await vi.waitFor(() => expect(existsSync(join(b.config.cachePath, g.project_id, 'generations', `v1__${g.generation_id}`, 'manifest.json'))).toBe(true));
  });

  it('uploads a save whose host lost its disk: another host drains it from the outbox, byte-identical', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await saved(a);
    await a.uploads!.idle();
    wipeDisks(a);
    standIn.faults.clear();
    b.clock.offset = a.clock.offset + 60_000;
    expect(await b.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 100 })).toMatchObject({ failed: 0 });
    expect((await row(db, g.generation_id))!.upload_status).toBe('uploaded');
    wipeDisks(b);
    expect(await download(a, g.generation_id)).toEqual({ status: 200, sha: g.sha256 });
  });

  it('never serves or uploads outbox bytes that fail their sha256', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await saved(a);
    await a.uploads!.idle();
    wipeDisks(a);
    await db.asService((tx) => tx.query(`update codebegen_private.upload_outbox set archive = overlay(archive placing '\\x00'::bytea from 20 for 1) where generation_id = $1::uuid`, [g.generation_id]));
    standIn.faults.clear();
    expect((await download(a, g.generation_id)).status).toBe(503);
    a.clock.offset += 60_000;
    expect(await a.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 100 })).toMatchObject({ uploaded: 0, failed: 1 });
    expect(uploadsOf(g)).toBe(0);
    expect(existsSync(standIn.objectPath('codebegen-projects', keyOf(g)))).toBe(false);
  });

  it('reports the backlog in health', async () => {
    const health = (await (await a.app.request('http://storage.test/generations/health')).json()) as { outbox: { rows: number; bytes: number; due: number; oldest_age_seconds: number } };
    const [{ rows }] = (await db.asService((tx) => tx.query<{ rows: number }>('select count(*)::int as rows from codebegen_private.upload_outbox'))) as [{ rows: number }];
    expect(health.outbox.rows).toBe(rows);
    expect(rows).toBeGreaterThan(0);
    expect(health.outbox.bytes).toBeGreaterThan(0);
    expect(health.outbox.oldest_age_seconds).toBeGreaterThanOrEqual(0);
  });
});

describe('an upload that landed though its reply was lost', () => {
  it('ends uploaded on the next attempt, keeping the object that landed instead of replacing it', async () => {
    const db = await migratedPGlite();
    const ctx = await host(db, { cloudTimeoutMs: 300, cloudRetry: { retries: 0, minTimeoutMs: 5, maxTimeoutMs: 10 } });
    try {
      // the upload takes effect, but its answer comes only after the client gave up
      standIn.faults.failShare(1, ['hang'], { hangMs: 600 });
      const g = await saved(ctx);
      await ctx.uploads!.idle();
      standIn.faults.clear();
      expect((await row(db, g.generation_id))!.upload_status).toBe('failed');
      await new Promise((r) => setTimeout(r, 700));
      expect(existsSync(standIn.objectPath('codebegen-projects', keyOf(g)))).toBe(true);
      ctx.clock.offset += 60_000;
      expect(await ctx.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 10 })).toMatchObject({ uploaded: 1 });
      expect(await row(db, g.generation_id)).toMatchObject({ upload_status: 'uploaded', staged: false });
      expect(uploadsOf(g)).toBe(1);
    } finally {
      await ctx.close();
      await db.close();
    }
  });

  it("ends uploaded when the 'uploaded' update itself fails", async () => {
    const { faulty, db } = await faultyPGlite();
    const ctx = await host(db);
    try {
      faulty.failOn((sql) => sql.includes("set upload_status = 'uploaded'"), 'before');
      const g = await saved(ctx);
      await ctx.uploads!.idle();
      expect(await row(db, g.generation_id)).toMatchObject({ upload_status: 'failed', staged: true });
      ctx.clock.offset += 60_000;
      expect(await ctx.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 10 })).toMatchObject({ uploaded: 1 });
      expect(await row(db, g.generation_id)).toMatchObject({ upload_status: 'uploaded', staged: false });
      expect(uploadsOf(g)).toBe(1);
    } finally {
      await ctx.close();
      await db.close();
    }
  });
});

describe('an ambiguous COMMIT', () => {
  const isInsert = (sql: string) => sql.includes('insert into public.generations');

  for (const mode of ['cloud', 'local'] as const) {
    it(`${mode}: the server committed, the client heard a failure: nothing is removed and the save answers 201`, async () => {
      const { faulty, db } = await faultyPGlite();
      const ctx = mode === 'cloud' ? await host(db) : await appContext({}, db);
      try {
        faulty.failOn(isInsert, 'after-commit');
        const g = await saved(ctx);
        expect(existsSync(join(ctx.config.storagePath, g.project_id, 'generations', `v1__${g.generation_id}.tar.gz`))).toBe(true);
        expect(await download(ctx, g.generation_id)).toEqual({ status: 200, sha: g.sha256 });
      } finally {
        await ctx.close();
        await db.close();
      }
    });

    it(`${mode}: when the outcome cannot be read back, the files stay, the answer is 503, and the replay 201s with a working download`, async () => {
      const { faulty, db } = await faultyPGlite();
      const ctx = mode === 'cloud' ? await host(db) : await appContext({}, db);
      try {
        const body = { project_id: randomUUID(), generation_id: randomUUID(), files: sampleFiles(4, 'ambiguous') };
        faulty.failOn(isInsert, 'after-commit', { then: () => (faulty.unreachable = true) });
        const first = await save(ctx, body);
        faulty.unreachable = false;
        expect(first.status).toBe(503);
        expect(((await first.json()) as { error: { code: string } }).error.code).toBe('storage_unavailable');
        expect(existsSync(join(ctx.config.storagePath, body.project_id, 'generations', `v1__${body.generation_id}`, 'manifest.json'))).toBe(true);
        const replay = await saved(ctx, body);
        expect(await download(ctx, replay.generation_id)).toEqual({ status: 200, sha: replay.sha256 });
      } finally {
        await ctx.close();
        await db.close();
      }
    });
  }

  it('a commit that truly failed removes the files it placed', async () => {
    const { faulty, db } = await faultyPGlite();
    const ctx = await appContext({}, db);
    try {
      const body = { project_id: randomUUID(), generation_id: randomUUID() };
      // the last statement of the save's transaction is refused: it rolls back after the files were placed
      faulty.failOn((sql) => sql.includes('insert into public.generations'), 'before');
      expect((await save(ctx, body)).status).toBe(500);
      expect(existsSync(join(ctx.config.storagePath, body.project_id, 'generations', `v1__${body.generation_id}`))).toBe(false);
    } finally {
      await ctx.close();
      await db.close();
    }
  });
});

describe('a replay heals', () => {
  let db: Database;
  let ctx: AppContext;
  beforeAll(async () => {
    db = await migratedPGlite();
    ctx = await host(db);
  });
  afterAll(async () => {
    await ctx.close();
    await db.close();
  });

  it('restores a lost generation sent again with the same content, and uploads it', async () => {
    const body = { project_id: randomUUID(), generation_id: randomUUID(), files: sampleFiles(5, 'lost') };
    standIn.faults.failNext(1000, 503);
    const g = await saved(ctx, body);
    await ctx.uploads!.idle();
    // what a pre-outbox loss looked like: no bytes anywhere, the row lost
    wipeDisks(ctx);
    await db.asService(async (tx) => {
      await tx.query('delete from codebegen_private.upload_outbox where generation_id = $1::uuid', [g.generation_id]);
      await tx.query(`update generations set upload_status = 'lost' where id = $1::uuid`, [g.generation_id]);
    });
    expect((await download(ctx, g.generation_id)).status).toBe(503);
    standIn.faults.clear();
    const again = await save(ctx, body);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const answer = (await again.json()) as Saved;
    expect(answer).toMatchObject({ sha256: g.sha256, version: g.version, storage: { status: 'pending' } });
    await ctx.uploads!.idle();
    expect(await row(db, g.generation_id)).toMatchObject({ upload_status: 'uploaded', staged: false });
    wipeDisks(ctx);
    expect(await download(ctx, g.generation_id)).toEqual({ status: 200, sha: g.sha256 });
  });

  it('leaves a generation that is safe alone: the replay stages nothing', async () => {
    const body = { project_id: randomUUID(), generation_id: randomUUID(), files: sampleFiles(3, 'safe') };
    const g = await saved(ctx, body);
    await ctx.uploads!.idle();
    const again = await save(ctx, body);
    expect(again.status).toBe(201);
    await ctx.uploads!.idle();
    expect(await row(db, g.generation_id)).toMatchObject({ upload_status: 'uploaded', staged: false, upload_attempts: 1 });
    expect(uploadsOf(g)).toBe(1);
  });

  it('cloud off: restores local files a failure removed', async () => {
    const off = await appContext();
    try {
      const body = { project_id: randomUUID(), generation_id: randomUUID(), files: sampleFiles(3, 'off') };
      const g = await saved(off, body);
      rmSync(off.config.storagePath, { recursive: true, force: true });
      expect((await download(off, g.generation_id)).status).toBe(503);
      expect((await save(off, body)).status).toBe(201);
      expect(await download(off, g.generation_id)).toEqual({ status: 200, sha: g.sha256 });
    } finally {
      await off.close();
    }
  });
});

const adminUrl = inject('databaseUrl');
if (!adminUrl) console.warn('\n!!! test/outbox.test.ts "leases" SKIPPED: needs PostgreSQL (see test/global-setup.ts) !!!\n');

describe.skipIf(!adminUrl)('leases on PostgreSQL 15 (two drainers, real row locks)', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let db: Database;
  let a: AppContext;
  let b: AppContext;
  beforeAll(async () => {
    scratch = await scratchDatabase(adminUrl, 'cb_outbox');
    db = createDatabase(openPostgres(scratch.url, { max: 8 }));
    await migrateAll(db);
    [a, b] = [await host(db), await host(db)];
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.close();
    await scratch?.drop();
  });

  it('two drainers at once upload each row exactly once', async () => {
    standIn.faults.failNext(100_000, 503);
    const gs = await Promise.all(Array.from({ length: 24 }, () => saved(a)));
    await a.uploads!.idle();
    standIn.faults.clear();
    a.clock.offset = b.clock.offset = 60_000;
    const budget = { maxMs: 30_000, maxBytes: 1 << 30, maxRows: 100 };
    const [ra, rb] = await Promise.all([a.uploads!.drain(budget), b.uploads!.drain(budget)]);
    expect(ra.uploaded + rb.uploaded).toBe(24);
    expect(ra.claimed + rb.claimed).toBe(24);
    expect(ra.claimed).toBeGreaterThan(0);
    expect(rb.claimed).toBeGreaterThan(0);
    for (const g of gs) {
      expect(uploadsOf(g), g.generation_id).toBe(1);
      expect((await row(db, g.generation_id))!.upload_status).toBe('uploaded');
    }
  });

  it("a replay on another host leaves a row another drainer holds alone", async () => {
    const body = { project_id: randomUUID(), generation_id: randomUUID(), files: sampleFiles(3, 'held') };
    standIn.faults.failNext(1000, 503);
    const g = await saved(a, body);
    await a.uploads!.idle();
    standIn.faults.clear();
    const now = Date.now() + b.clock.offset;
    await db.asService((tx) => tx.query(
      `update codebegen_private.upload_outbox set lease_owner = 'drainer-busy', lease_expires_at = $2::timestamptz, next_attempt_at = $3::timestamptz where generation_id = $1::uuid`,
      [g.generation_id, new Date(now + 10 * 60_000).toISOString(), new Date(now).toISOString()],
    ));
    const replay = await save(b, body);
    expect(replay.status).toBe(201);
    await b.uploads!.idle();
    expect(uploadsOf(g)).toBe(0);
    expect((await row(db, g.generation_id))!.upload_status).toBe('failed');
    await db.asService((tx) => tx.query('delete from generations where id = $1::uuid', [g.generation_id]));
  });

  it('a lease held by a drainer that died is taken over once it expires, not before', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await saved(a);
    await a.uploads!.idle();
    standIn.faults.clear();
    const now = Date.now() + a.clock.offset;
    await db.asService((tx) => tx.query(
      `update codebegen_private.upload_outbox set lease_owner = 'drainer-dead', lease_expires_at = $2::timestamptz, next_attempt_at = $3::timestamptz where generation_id = $1::uuid`,
      [g.generation_id, new Date(now + 10 * 60_000).toISOString(), new Date(now).toISOString()],
    ));
    const budget = { maxMs: 10_000, maxBytes: 1 << 30, maxRows: 10 };
    expect(await b.uploads!.drain(budget)).toMatchObject({ claimed: 0 });
    expect(await b.uploads!.uploadOne(g.generation_id)).toBe('skipped');
    b.clock.offset = a.clock.offset + 11 * 60_000;
    expect(await b.uploads!.drain(budget)).toMatchObject({ claimed: 1, uploaded: 1 });
    expect((await row(db, g.generation_id))!.upload_status).toBe('uploaded');
  });
});

describe('retry selection cannot starve', () => {
  it("finds this host's own copy of a lost row behind 1 500 other lost rows, and uploads it", async () => {
    const db = await migratedPGlite();
    const ctx = await host(db);
    try {
      // 1 500 rows other hosts marked lost, none of which this host can help with
      const other = randomUUID();
      await db.asService(async (tx) => {
        await tx.query('insert into projects (id, owner_id) values ($1::uuid, $2::uuid)', [other, alice]);
        await tx.query(
          `insert into generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes, archive_sha256, content_sha256, manifest, storage_key, upload_status)
           select id, $1::uuid, $2::uuid, v, 1, 1, 1, repeat('a', 64), repeat('b', 64), '{}', $1::text || '/generations/v' || v || '__' || id || '.tar.gz', 'lost'
           from (select gen_random_uuid() as id, v from generate_series(1, 1500) v) s`,
          [other, alice],
        );
      });
      // and one this host holds a local copy of, with an id that sorts after all of them
      const body = { project_id: randomUUID(), generation_id: 'ffffffff-ffff-4fff-8fff-ffffffffffff', files: sampleFiles(3, 'mine') };
      standIn.faults.failNext(1000, 503);
      const g = await saved(ctx, body);
      await ctx.uploads!.idle();
      standIn.faults.clear();
      await db.asService(async (tx) => {
        await tx.query('delete from codebegen_private.upload_outbox where generation_id = $1::uuid', [g.generation_id]);
        await tx.query(`update generations set upload_status = 'lost' where id = $1::uuid`, [g.generation_id]);
      });
      const report = await ctx.maintain();
      expect(report.uploads).toMatchObject({ adopted: 1, uploaded: 1, marked_lost: 0 });
      expect(await row(db, g.generation_id)).toMatchObject({ upload_status: 'uploaded', staged: false });
      const stillLost = await db.asService((tx) => tx.query<{ n: number }>(`select count(*)::int as n from generations where upload_status = 'lost'`));
      expect(stillLost[0]!.n).toBe(1500);
    } finally {
      await ctx.close();
      await db.close();
    }
  }, 60_000);
});
