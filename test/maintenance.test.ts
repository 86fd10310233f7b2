import { randomUUID } from 'node:crypto';
import { existsSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { appContext, JWT_SECRET, sampleFiles, serviceToken, userToken, type AppContext } from './helpers/context.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// The storage-maintenance function: cache expiry, upload retries and give-ups, orphan reports; service key only.

let standIn: StandIn;
let ctx: AppContext;
let S: string;
const alice = randomUUID();

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  ctx = await appContext(
    { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey, MAX_CACHE_AGE_HOURS: '24' },
    undefined,
    { cloudRetry: { retries: 1, minTimeoutMs: 5, maxTimeoutMs: 10 } },
  );
  await ctx.cloud!.ensureBucket();
  S = await serviceToken();
});
afterAll(async () => {
  await ctx.close();
  await standIn.close();
});

const maintain = (token?: string) =>
  ctx.maintenanceApp.request('http://storage.test/storage-maintenance', { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} });
async function save() {
  const res = await ctx.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${await userToken(alice)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(3, randomUUID()) }),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { generation_id: string; project_id: string; version: number };
}
const status = async (id: string) => (await ctx.db.asService((tx) => tx.query<{ upload_status: string }>('select upload_status from generations where id = $1::uuid', [id])))[0]?.upload_status;
const dirOf = (root: string, g: { project_id: string; generation_id: string; version: number }) => join(root, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);

describe('POST /storage-maintenance', () => {
  it('is for the service key only', async () => {
    expect((await maintain()).status).toBe(401);
    const user = await maintain(await userToken(alice));
    expect(user.status).toBe(403);
    expect(((await user.json()) as { error: { code: string } }).error.code).toBe('forbidden');
  });

  it('cleans an aged cache, drains the outbox, reconciles a landed upload, gives up only on what has no copy, and reports orphans', async () => {
    // 1. an old and a young cache entry
    const [old, young] = [await save(), await save()];
    await ctx.uploads!.idle();
    for (const g of [old, young]) {
      rmSync(dirOf(ctx.config.storagePath, g), { recursive: true });
      rmSync(`${dirOf(ctx.config.storagePath, g)}.tar.gz`);
      const res = await ctx.app.request(`http://storage.test/generations/${g.generation_id}/download`, { headers: { authorization: `Bearer ${S}` } });
      expect(res.status).toBe(200);
      await vi.waitFor(() => expect(existsSync(dirOf(ctx.config.cachePath, g))).toBe(true)); // pulled into the cache alongside
    }
    const twoDaysAgo = (Date.now() - 48 * 3600_000) / 1000;
    utimesSync(dirOf(ctx.config.cachePath, old), twoDaysAgo, twoDaysAgo);

    // 2. two failed uploads, one of which lost its local copy: both wait in the outbox
    standIn.faults.failNext(1000, 503);
    const [failed, noLocal] = [await save(), await save()];
    await ctx.uploads!.idle();
    standIn.faults.clear();
    expect(await status(failed.generation_id)).toBe('failed');
    rmSync(dirOf(ctx.config.storagePath, noLocal), { recursive: true });
    rmSync(`${dirOf(ctx.config.storagePath, noLocal)}.tar.gz`);

    // 3. a row whose upload landed but was never recorded (reply lost), and one with no copy anywhere (staged
    //    nowhere, no local copy, no object): only the second may ever be called lost
    const landed = await save();
    await ctx.uploads!.idle();
    const gone = await save();
    await ctx.uploads!.idle();
    for (const g of [landed, gone]) {
      await ctx.db.asService((tx) => tx.query(`update generations set upload_status = 'failed' where id = $1::uuid`, [g.generation_id]));
      rmSync(dirOf(ctx.config.storagePath, g), { recursive: true });
      rmSync(`${dirOf(ctx.config.storagePath, g)}.tar.gz`);
    }
    await ctx.cloud!.remove([`${gone.project_id}/generations/v1__${gone.generation_id}.tar.gz`]);

    // 4. an object nobody recorded, and a recorded object that vanished from the bucket
    const strayKey = `${randomUUID()}/generations/v1__${randomUUID()}.tar.gz`;
    await ctx.cloud!.upload(strayKey, new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    const vanished = await save();
    await ctx.uploads!.idle();
    await ctx.cloud!.remove([`${vanished.project_id}/generations/v1__${vanished.generation_id}.tar.gz`]);

    type Report = {
      cache: { removed: number; kept: number };
      uploads: { retried: number; uploaded: number; still_failing: number; marked_lost: number; reconciled: number; adopted: number };
      outbox: { rows: number; bytes: number; due: number; oldest_age_seconds: number | null };
      orphans: { objects_without_rows: string[]; removed_objects: number; rows_without_objects: string[] };
    };
    ctx.clock.offset += 60_000; // past the failed uploads' backoff
    const first = await maintain(S);
    expect(first.status).toBe(200);
    const early = (await first.json()) as Report;
    expect(early.cache).toEqual({ removed: 1, kept: 1 });
    expect(early.uploads).toEqual({ retried: 2, uploaded: 2, still_failing: 0, marked_lost: 0, reconciled: 1, adopted: 0 });
    expect(early.outbox).toEqual({ rows: 0, bytes: 0, due: 0, oldest_age_seconds: null });
    // the stray object is younger than the grace period: reported, not removed
    expect(early.orphans).toMatchObject({ objects_without_rows: [strayKey], removed_objects: 0 });
    for (const g of [failed, noLocal, landed]) expect(await status(g.generation_id)).toBe('uploaded');
    // a row with no copy is given up only once it has been quiet for an hour (not a save under way)
    expect(await status(gone.generation_id)).toBe('failed');
    ctx.clock.offset += 2 * 3600_000;

    const report = (await (await maintain(S)).json()) as Report;
    expect(report.uploads).toEqual({ retried: 0, uploaded: 0, still_failing: 0, marked_lost: 1, reconciled: 0, adopted: 0 });
    expect(await status(gone.generation_id)).toBe('lost');
    expect(ctx.log.lines.some((l) => l.level === 'error' && l.msg === 'generation lost: no copy anywhere' && l.generation_id === gone.generation_id)).toBe(true);
    expect(report.orphans.objects_without_rows).toEqual([strayKey]);
    expect(report.orphans.removed_objects).toBe(1); // an hour later nothing can still own it
    expect(existsSync(standIn.objectPath('codebegen-projects', strayKey))).toBe(false);
    expect(report.orphans.rows_without_objects).toEqual([vanished.generation_id]);
    expect(ctx.log.lines.some((l) => l.msg === 'maintenance finished' && l.cache_removed === 1 && l.uploads_retried === 2)).toBe(true);

    // a further run finds nothing new to do
    const again = (await (await maintain(S)).json()) as Report;
    expect(again.cache.removed).toBe(0);
    expect(again.uploads).toEqual({ retried: 0, uploaded: 0, still_failing: 0, marked_lost: 0, reconciled: 0, adopted: 0 });
    expect(again.orphans.objects_without_rows).toEqual([]);
  });
});

describe('maintenance with cloud off', () => {
  it('only cleans the cache', async () => {
    const off = await appContext();
    try {
      const report = await off.maintain();
      expect(report).toMatchObject({ cache: { removed: 0, kept: 0 }, uploads: null, orphans: null });
    } finally {
      await off.close();
    }
  });
});

describe('an upload asked for twice at once', () => {
  it('runs once: maintenance and the queue share the upload under way', async () => {
    standIn.faults.delayNext(1, 300); // the queue's upload is still in the air when maintenance starts
    const g = await save();
    const before = standIn.requests.length;
    const [byMaintenance] = await Promise.all([ctx.uploads!.uploadOne(g.generation_id), ctx.uploads!.uploadOne(g.generation_id)]);
    await ctx.uploads!.idle();
    expect(byMaintenance).toBe('uploaded');
    expect(await status(g.generation_id)).toBe('uploaded');
    const uploads = standIn.requests.slice(before - 1).filter((r) => r.method === 'POST' && r.path.endsWith(`${g.generation_id}.tar.gz`));
    expect(uploads).toHaveLength(1);
  });
});

describe('scratch folders a crash left', () => {
  it('are swept from the cache and the store once an hour old, young ones kept', async () => {
    const { mkdirSync } = await import('node:fs');
    const appNow = Date.now() + ctx.clock.offset; // the clock maintenance reads
    const made: string[] = [];
    for (const root of [ctx.config.cachePath, ctx.config.storagePath]) {
      for (const [name, at] of [[`crashed-${randomUUID()}`, appNow - 2 * 3600_000], [`busy-${randomUUID()}`, appNow - 60_000]] as const) {
        const dir = join(root, '.codebegen-tmp', name);
        mkdirSync(join(dir, 'generation'), { recursive: true });
        utimesSync(dir, at / 1000, at / 1000);
        made.push(dir);
      }
    }
    const report = (await (await maintain(S)).json()) as { scratch_removed: number };
    expect(report.scratch_removed).toBeGreaterThanOrEqual(2);
    expect(made.map((d) => existsSync(d))).toEqual([false, true, false, true]);
  });
});
