import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Principal } from '../functions/_shared/auth/principal.ts';
import { ConfigError, loadConfig, type Env } from '../functions/_shared/config.ts';
import type { Database, Tx } from '../functions/_shared/db/database.ts';
import type { GenerationRecord } from '../functions/_shared/db/generations-repo.ts';
import { AppError } from '../functions/_shared/errors.ts';
import { applyRetention, type RetentionPolicy, type RetentionReport } from '../functions/_shared/storage/retention.ts';
import { FAST_RETRY } from './helpers/cloud-context.ts';
import { appContext, JWT_SECRET, migratedPGlite, sampleFiles, type AppContext } from './helpers/context.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// Pinning and the operator's retention policy (issue #16, item 5), on real PGlite, files on disk and the Storage
// stand-in: retention never removes a project's newest generation or a pinned one, keep-last and max-age select
// exactly, a dry run changes nothing anywhere, and a real run removes rows, files and objects as the API's DELETE does.
// The clock is ours: every save's created_at and every run's "now" come from `clock.ms`.

const DAY = 86_400_000;
const alice = randomUUID();
const bob = randomUUID();
const user = (id: string): Principal => ({ kind: 'user', userId: id, claims: { sub: id, role: 'authenticated' } });
const SERVICE: Principal = { kind: 'service', claims: { role: 'service_role' } };
const clock = { ms: Date.now() };

let db: Database;
let standIn: StandIn;
let ctx: AppContext;
const cloudEnv = (): Env => ({ USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey });
/** The same host (database, disk, bucket) started again with other RETENTION_* settings. */
const restartedWith = (env: Env) =>
  appContext({ ...cloudEnv(), STORAGE_PATH: ctx.config.storagePath, CACHE_PATH: ctx.config.cachePath, ...env }, db, { cloudRetry: FAST_RETRY, now: () => clock.ms });

beforeAll(async () => {
  db = await migratedPGlite();
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  ctx = await appContext(cloudEnv(), db, { cloudRetry: FAST_RETRY, now: () => clock.ms });
  await ctx.cloud!.ensureBucket();
});
afterAll(async () => {
  await ctx?.close();
  await standIn?.close();
  await db?.close();
});

// The retention selection spans every project: each test starts from an empty table.
beforeEach(async () => {
  await ctx.uploads!.idle();
  await db.asOwner((tx) => tx.exec('delete from public.projects; delete from codebegen_private.pending_deletions;'));
  clock.ms += DAY;
});

/** Saves a generation of `project` as `owner` at the clock's time, then moves the clock on by `step` ms. */
async function save(owner: string, project: string, step = 60_000): Promise<GenerationRecord> {
  const { record } = await ctx.service.save(user(owner), { projectId: project, files: sampleFiles(3, randomUUID()) });
  clock.ms += step;
  return record;
}
const retain = (policy: Partial<RetentionPolicy>, now = clock.ms) =>
  applyRetention({ db, generations: ctx.service, policy: { dryRun: false, ...policy }, log: ctx.log, now });
const ids = (r: RetentionReport) => r.generations.map((g) => g.generation_id);
const remaining = async (project: string) =>
  (await db.asService((tx) => tx.query<{ version: number }>('select version from generations where project_id = $1::uuid order by version', [project]))).map((r) => Number(r.version));
const localDir = (g: GenerationRecord) => join(ctx.config.storagePath, g.projectId, 'generations', `v${g.version}__${g.id}`);
const inBucket = (g: GenerationRecord) => existsSync(standIn.objectPath('codebegen-projects', g.storageKey));
const pgCode = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');

describe('keep last N', () => {
  it('keeps exactly the newest N of each project and every pinned one; removes the rest as the API delete does', async () => {
    const [p, q] = [randomUUID(), randomUUID()];
    const gens = [];
    for (let i = 0; i < 5; i++) gens.push(await save(alice, p));
    const lone = await save(bob, q);
    await ctx.uploads!.idle();
    await ctx.service.setPinned(user(alice), gens[1]!.id, true);
    for (const g of [...gens, lone]) expect(inBucket(g) && existsSync(localDir(g))).toBe(true);

    const report = await retain({ keepLast: 2 });
    // v1 and v3 go: v2 is pinned, v4 and v5 are the newest two, bob's only generation is his project's newest
    expect(ids(report)).toEqual([gens[0]!.id, gens[2]!.id]);
    expect(report).toMatchObject({ dry_run: false, keep_last: 2, max_age_days: null, older_than: null, selected: 2, removed: 2, skipped: 0, failed: 0, more: false });
    expect(report.generations.map((g) => [g.version, g.reasons, g.outcome])).toEqual([
      [1, ['keep_last'], 'removed'],
      [3, ['keep_last'], 'removed'],
    ]);
    expect(await remaining(p)).toEqual([2, 4, 5]);
    expect(await remaining(q)).toEqual([1]);

    // Exactly what DELETE /generations/{id} leaves: no row, no local copy, no object, no tombstone left to finish.
    for (const g of [gens[0]!, gens[2]!]) {
      expect(existsSync(localDir(g))).toBe(false);
      expect(existsSync(`${localDir(g)}.tar.gz`)).toBe(false);
      expect(inBucket(g)).toBe(false);
      expect(ctx.log.lines.some((l) => l.msg === 'generation deleted' && l.generation_id === g.id)).toBe(true);
      await expect(ctx.service.get(user(alice), g.id)).rejects.toMatchObject({ status: 404 });
    }
    for (const g of [gens[1]!, gens[3]!, gens[4]!, lone]) expect(inBucket(g) && existsSync(localDir(g))).toBe(true);
    expect(await db.asService((tx) => tx.query('select 1 from codebegen_private.pending_deletions'))).toHaveLength(0);

    // A second run finds nothing more to do.
    expect(await retain({ keepLast: 2 })).toMatchObject({ selected: 0, removed: 0, generations: [] });
  });

  it('keep last 1 leaves each project its newest and its pinned ones only', async () => {
    const p = randomUUID();
    const gens = [await save(alice, p), await save(alice, p), await save(alice, p)];
    await ctx.service.setPinned(user(alice), gens[0]!.id, true);
    const report = await retain({ keepLast: 1 });
    expect(ids(report)).toEqual([gens[1]!.id]);
    expect(await remaining(p)).toEqual([1, 3]);
  });
});

describe('max age', () => {
  it('removes exactly what is older than D days, never the newest however old', async () => {
    const p = randomUUID();
    const t0 = clock.ms;
    const v1 = await save(alice, p, 3600_000); // t0
    const v2 = await save(alice, p, 3600_000); // t0 + 1 h
    const v3 = await save(alice, p); //           t0 + 2 h, the newest
    expect(v1.createdAt.getTime()).toBe(t0);

    // at exactly D days, v1 is not older than D days yet; 1 ms later it is
    expect(await retain({ maxAgeDays: 1 }, t0 + DAY)).toMatchObject({ selected: 0, older_than: new Date(t0).toISOString() });
    const justOver = await retain({ maxAgeDays: 1, dryRun: true }, t0 + DAY + 1);
    expect(ids(justOver)).toEqual([v1.id]);
    expect(justOver.generations[0]).toMatchObject({ reasons: ['max_age'], outcome: 'would_remove' });

    // ten days on every generation is old, but the newest stays
    const late = await retain({ maxAgeDays: 1 }, t0 + 10 * DAY);
    expect(ids(late)).toEqual([v1.id, v2.id]);
    expect(late.removed).toBe(2);
    expect(await remaining(p)).toEqual([3]);
    expect(inBucket(v3) && existsSync(localDir(v3))).toBe(true);
  });

  it('with both rules each selects on its own (union), and both are named', async () => {
    const p = randomUUID();
    const t0 = clock.ms;
    const old = await save(alice, p, 20 * DAY); // old, and beyond keep-last
    const young = await save(alice, p); //        beyond keep-last only
    await save(alice, p);
    await save(alice, p);
    const report = await retain({ keepLast: 2, maxAgeDays: 10, dryRun: true }, t0 + 20 * DAY + DAY);
    expect(report.generations.map((g) => [g.generation_id, g.reasons])).toEqual([
      [old.id, ['keep_last', 'max_age']],
      [young.id, ['keep_last']],
    ]);
  });

  it('is off unless set: an empty policy selects nothing, and maintenance reports no retention', async () => {
    const p = randomUUID();
    await save(alice, p);
    await save(alice, p);
    expect(await retain({}, clock.ms + 1000 * DAY)).toMatchObject({ selected: 0, generations: [] });
    const report = await ctx.maintain();
    expect(report.retention).toBeNull();
    expect(await remaining(p)).toEqual([1, 2]);
  });
});

describe('dry run', () => {
  /** Rows, tombstones, files under STORAGE_PATH and CACHE_PATH, and bucket objects: everything a run could change. */
  async function everything() {
    const rows = await db.asService((tx) => tx.query('select * from generations order by id'));
    const tombstones = await db.asService((tx) => tx.query('select * from codebegen_private.pending_deletions order by id'));
    const outbox = await db.asService((tx) => tx.query('select generation_id from codebegen_private.upload_outbox order by generation_id'));
    const files = (root: string) =>
      existsSync(root)
        ? readdirSync(root, { recursive: true, encoding: 'utf8' })
            .sort()
            .map((f) => [f, statSync(join(root, f)).size, statSync(join(root, f)).mtimeMs])
        : [];
    const objects = (await ctx.cloud!.listObjects()).map((o) => o.key).sort();
    return { rows, tombstones, outbox, store: files(ctx.config.storagePath), cache: files(ctx.config.cachePath), objects };
  }

  it('lists what it would remove and changes nothing: rows, files on disk, bucket objects', async () => {
    const p = randomUUID();
    const gens = [await save(alice, p), await save(alice, p), await save(alice, p), await save(alice, p)];
    await ctx.service.setPinned(user(alice), gens[0]!.id, true);
    await ctx.uploads!.idle();
    const before = await everything();
    expect(before.objects.length).toBeGreaterThanOrEqual(4);

    const report = await retain({ keepLast: 1, maxAgeDays: 1, dryRun: true }, clock.ms + 100 * DAY);
    expect(report).toMatchObject({ dry_run: true, selected: 2, removed: 0, skipped: 0, failed: 0 });
    expect(report.generations.map((g) => [g.version, g.outcome])).toEqual([
      [2, 'would_remove'],
      [3, 'would_remove'],
    ]);
    expect(await everything()).toEqual(before);
    // and what it listed is exactly what a real run then removes
    const real = await retain({ keepLast: 1, maxAgeDays: 1 }, clock.ms + 100 * DAY);
    expect(ids(real)).toEqual(ids(report));
    expect(await remaining(p)).toEqual([1, 4]);
  });

  it('through maintenance (RETENTION_* set, RETENTION_DRY_RUN=true): the HTTP answer carries the summary, nothing is removed', async () => {
    const p = randomUUID();
    const gens = [await save(alice, p), await save(alice, p), await save(alice, p)];
    await ctx.uploads!.idle();
    const dry = await restartedWith({ RETENTION_KEEP_LAST: '1', RETENTION_DRY_RUN: 'true' });
    try {
      const rowsBefore = await db.asService((tx) => tx.query('select * from generations order by id'));
      const res = await dry.maintenanceApp.request('http://storage.test/storage-maintenance', { method: 'POST', headers: { authorization: `Bearer ${standIn.serviceKey}` } });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { retention: RetentionReport };
      expect(body.retention).toMatchObject({ dry_run: true, keep_last: 1, max_age_days: null, selected: 2, removed: 0 });
      expect(ids(body.retention)).toEqual([gens[0]!.id, gens[1]!.id]);
      expect(await db.asService((tx) => tx.query('select * from generations order by id'))).toEqual(rowsBefore);
      for (const g of gens) expect(inBucket(g) && existsSync(localDir(g))).toBe(true);
      expect(dry.log.lines.some((l) => l.msg === 'maintenance finished' && l.retention_selected === 2 && l.retention_removed === 0 && l.retention_dry_run === true)).toBe(true);
    } finally {
      await dry.close();
    }
  });

  it('a real run through maintenance removes what the policy selects and reports it', async () => {
    const p = randomUUID();
    const gens = [await save(alice, p), await save(alice, p), await save(alice, p)];
    await ctx.uploads!.idle();
    const live = await restartedWith({ RETENTION_KEEP_LAST: '2' });
    try {
      const report = await live.maintain();
      expect(report.retention).toMatchObject({ dry_run: false, keep_last: 2, selected: 1, removed: 1, skipped: 0, failed: 0 });
      expect(ids(report.retention!)).toEqual([gens[0]!.id]);
      expect(report.deletions.pending).toBe(0);
      expect(await remaining(p)).toEqual([2, 3]);
      expect(inBucket(gens[0]!) || existsSync(localDir(gens[0]!)) || existsSync(`${localDir(gens[0]!)}.tar.gz`)).toBe(false);
      for (const g of gens.slice(1)) expect(inBucket(g) && existsSync(localDir(g))).toBe(true);
      await expect(ctx.service.get(user(alice), gens[0]!.id)).rejects.toMatchObject({ status: 404 });
    } finally {
      await live.close();
    }
  });
});

describe('a pin landing after the selection, and a project newest', () => {
  it('wins: the generation is skipped, not removed', async () => {
    const p = randomUUID();
    const gens = [await save(alice, p), await save(alice, p), await save(alice, p)];
    // The user pins v1 between the selection and its delete.
    const racing = {
      delete: async (who: Principal, id: string, opts?: { unlessKept?: boolean }) => {
        if (id === gens[0]!.id) await ctx.service.setPinned(user(alice), id, true);
        return ctx.service.delete(who, id, opts);
      },
    };
    const report = await applyRetention({ db, generations: racing, policy: { keepLast: 1, dryRun: false }, log: ctx.log, now: clock.ms });
    expect(report).toMatchObject({ selected: 2, removed: 1, skipped: 1 });
    expect(report.generations.map((g) => [g.version, g.outcome])).toEqual([
      [1, 'skipped'],
      [2, 'removed'],
    ]);
    expect(await remaining(p)).toEqual([1, 3]);
    expect(existsSync(localDir(gens[0]!))).toBe(true);
  });

  it('the service delete with unlessKept refuses a pinned generation and a project newest, with a 404', async () => {
    const p = randomUUID();
    const [v1, v2] = [await save(alice, p), await save(alice, p)];
    await ctx.service.setPinned(SERVICE, v1.id, true);
    for (const g of [v1, v2]) await expect(ctx.service.delete(SERVICE, g.id, { unlessKept: true })).rejects.toMatchObject({ code: 'generation_not_found', status: 404 });
    expect(await remaining(p)).toEqual([1, 2]);
    // the plain delete (the API's) still deletes anything its principal may
    await ctx.service.delete(user(alice), v1.id);
    expect(await remaining(p)).toEqual([2]);
  });
});

describe('setPinned', () => {
  it('the owner pins and unpins; the row says so in get and list; the same value again changes nothing', async () => {
    const p = randomUUID();
    const g = await save(alice, p);
    expect(g.pinned).toBe(false);
    const pinned = await ctx.service.setPinned(user(alice), g.id, true);
    expect(pinned).toMatchObject({ id: g.id, pinned: true, version: 1, projectId: p, archiveSha256: g.archiveSha256 });
    expect((await ctx.service.get(user(alice), g.id)).pinned).toBe(true);
    expect((await ctx.service.list(user(alice), p, 10)).items.map((i) => i.pinned)).toEqual([true]);
    const again = await ctx.service.setPinned(user(alice), g.id, true);
    expect(again.updatedAt).toEqual(pinned.updatedAt);
    expect(ctx.log.lines.filter((l) => l.msg === 'generation pinned' && l.generation_id === g.id)).toHaveLength(1);
    expect((await ctx.service.setPinned(user(alice), g.id, false)).pinned).toBe(false);
  });

  it("another user's generation, or none: the same 404 as get", async () => {
    const g = await save(alice, randomUUID());
    const asGet = await ctx.service.get(user(bob), g.id).catch((e: unknown) => e);
    expect(asGet).toBeInstanceOf(AppError);
    for (const id of [g.id, randomUUID()]) {
      const err = await ctx.service.setPinned(user(bob), id, true).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({ code: (asGet as AppError).code, status: 404, message: (asGet as AppError).message });
    }
    expect((await ctx.service.get(user(alice), g.id)).pinned).toBe(false);
    // the service role may pin anyone's
    expect((await ctx.service.setPinned(SERVICE, g.id, true)).pinned).toBe(true);
  });
});

describe('in SQL, as the user (what the Data API would let a token holder do)', () => {
  let mine: GenerationRecord;
  let theirs: GenerationRecord;
  const asAlice = <T>(fn: (tx: Tx) => Promise<T>) => db.asUser({ sub: alice }, fn);
  beforeEach(async () => {
    mine = await save(alice, randomUUID());
    theirs = await save(bob, randomUUID());
    await ctx.uploads!.idle();
  });

  it('a user may set pinned on her own rows, and nothing else anywhere', async () => {
    const read = (id: string) => db.asService(async (tx) => (await tx.query('select * from generations where id = $1::uuid', [id]))[0]!);
    const before = await read(mine.id);
    expect(await asAlice((tx) => tx.query('update generations set pinned = true where id = $1::uuid returning id', [mine.id]))).toHaveLength(1);
    expect(await asAlice((tx) => tx.query('update generations set pinned = true where id = $1::uuid returning id', [theirs.id]))).toHaveLength(0);
    for (const set of [
      `upload_status = 'uploaded'`,
      `pinned = false, upload_status = 'failed'`,
      `owner_id = '${bob}'`,
      'version = 99',
      `storage_key = 'x'`,
      `created_at = now() - interval '1 year'`,
      `manifest = '{}'`,
      `archive_sha256 = repeat('0', 64)`,
      'upload_attempts = 0',
      'updated_at = now()',
    ]) {
      expect(await pgCode(asAlice((tx) => tx.query(`update generations set ${set} where id = $1::uuid`, [mine.id]))), set).toBe('42501');
    }
    // only the pin took effect (and the trigger's updated_at)
    const { pinned, updated_at: _u, ...rest } = await read(mine.id);
    const { pinned: was, updated_at: _w, ...restBefore } = before;
    expect([was, pinned]).toEqual([false, true]);
    expect(rest).toEqual(restBefore);
    expect((await db.asService((tx) => tx.query<{ pinned: boolean }>('select pinned from generations where id = $1::uuid', [theirs.id])))[0]!.pinned).toBe(false);
  });

  it('anon cannot pin; a user cannot run the retention selection', async () => {
    const asAnon = db.asOwner(async (tx) => {
      await tx.query(`select set_config('role', 'anon', true)`);
      return tx.query('update generations set pinned = true');
    });
    expect(await pgCode(asAnon)).toBe('42501');
    expect(await pgCode(asAlice((tx) => tx.query('select * from codebegen_private.retention_candidates(1, null)')))).toBe('42501');
  });
});

describe('migrations on PGlite', () => {
  it('publish generations for Realtime (the bootstrap stands in for Supabase’s publication)', async () => {
    const rows = await db.asOwner((tx) => tx.query<{ tablename: string }>(`select tablename from pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'public'`));
    expect(rows.map((r) => r.tablename)).toEqual(['generations']);
    const [col] = await db.asOwner((tx) => tx.query<{ is_nullable: string; column_default: string }>(`select is_nullable, column_default from information_schema.columns where table_schema = 'public' and table_name = 'generations' and column_name = 'pinned'`));
    expect(col).toEqual({ is_nullable: 'NO', column_default: 'false' });
  });
});

describe('RETENTION_* config', () => {
  const configError = (env: Env): string => {
    let thrown: unknown;
    try {
      loadConfig(env);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    return (thrown as Error).message;
  };

  it('is off by default, and blank means unset', () => {
    expect(loadConfig({}).retention).toEqual({ keepLast: undefined, maxAgeDays: undefined, dryRun: false });
    expect(loadConfig({ RETENTION_KEEP_LAST: '', RETENTION_MAX_AGE_DAYS: '  ', RETENTION_DRY_RUN: '' }).retention).toEqual({ keepLast: undefined, maxAgeDays: undefined, dryRun: false });
  });

  it('reads whole numbers and a boolean dry run', () => {
    expect(loadConfig({ RETENTION_KEEP_LAST: '10', RETENTION_MAX_AGE_DAYS: ' 30 ', RETENTION_DRY_RUN: 'true' }).retention).toEqual({ keepLast: 10, maxAgeDays: 30, dryRun: true });
    expect(loadConfig({ RETENTION_KEEP_LAST: '1', RETENTION_DRY_RUN: 'no' }).retention).toEqual({ keepLast: 1, maxAgeDays: undefined, dryRun: false });
    expect(loadConfig({ RETENTION_MAX_AGE_DAYS: '36500' }).retention.maxAgeDays).toBe(36_500);
  });

  it.each([
    ['RETENTION_KEEP_LAST', '0', 'RETENTION_KEEP_LAST: must be a whole number from 1 to 1000000, got "0" (leave it unset to keep every generation)'],
    ['RETENTION_KEEP_LAST', '-3', 'RETENTION_KEEP_LAST: must be a whole number from 1 to 1000000, got "-3"'],
    ['RETENTION_KEEP_LAST', '2.5', 'RETENTION_KEEP_LAST: must be a whole number'],
    ['RETENTION_KEEP_LAST', 'ten', 'RETENTION_KEEP_LAST: must be a whole number'],
    ['RETENTION_KEEP_LAST', '1000001', 'RETENTION_KEEP_LAST: must be a whole number from 1 to 1000000'],
    ['RETENTION_MAX_AGE_DAYS', '0', 'RETENTION_MAX_AGE_DAYS: must be a whole number from 1 to 36500, got "0" (leave it unset to keep generations of any age)'],
    ['RETENTION_MAX_AGE_DAYS', '30d', 'RETENTION_MAX_AGE_DAYS: must be a whole number from 1 to 36500, got "30d"'],
    ['RETENTION_MAX_AGE_DAYS', '36501', 'RETENTION_MAX_AGE_DAYS: must be a whole number from 1 to 36500'],
    ['RETENTION_DRY_RUN', 'maybe', 'RETENTION_DRY_RUN:'],
  ])('%s=%s is a config error naming the key', (key, value, message) => {
    const text = configError({ [key]: value });
    expect(text).toContain('[config] invalid environment');
    expect(text).toContain(message);
  });

  it('names every bad key at once', () => {
    const text = configError({ RETENTION_KEEP_LAST: '0', RETENTION_MAX_AGE_DAYS: 'x', RETENTION_DRY_RUN: 'perhaps' });
    for (const key of ['RETENTION_KEEP_LAST', 'RETENTION_MAX_AGE_DAYS', 'RETENTION_DRY_RUN']) expect(text).toContain(`${key}:`);
  });
});
