import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { GenerationRef } from '../functions/_shared/archive/generation-archive.ts';
import { loadConfig } from '../functions/_shared/config.ts';
import { findGeneration } from '../functions/_shared/db/generations-repo.ts';
import { LocalGenerationStorage } from '../functions/_shared/storage/generation-storage.ts';
import { HybridGenerationStorage } from '../functions/_shared/storage/hybrid-storage.ts';
import { LocalStore } from '../functions/_shared/stores/local-store.ts';
import { buildApps } from '../functions/_shared/wiring.ts';
import { appContext, JWT_SECRET, memoryLogger, sampleFiles, tempDir, userToken, type AppContext } from './helpers/context.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// Cloud mode against the Storage stand-in: saves answer at once and upload in the background, reads go
// local -> cache -> cloud, failures are recorded and retried, and nothing is lost.

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const FAST_RETRY = { retries: 2, minTimeoutMs: 5, maxTimeoutMs: 20 };
const alice = randomUUID();
const bob = randomUUID();

let standIn: StandIn;
let ctx: AppContext;
let A: string;
let B: string;

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  ctx = await appContext(
    { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey, CACHE_TTL_HOURS: '2', UPLOAD_CONCURRENCY: '2' },
    undefined,
    { cloudRetry: FAST_RETRY },
  );
  await ctx.cloud!.ensureBucket();
  [A, B] = [await userToken(alice), await userToken(bob)];
});
afterAll(async () => {
  await ctx.close();
  await standIn.close();
});
beforeEach(() => standIn.faults.clear());

const call = (path: string, token?: string, init: RequestInit = {}) =>
  ctx.app.request(`http://storage.test/generations${path}`, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers } });
async function save(token = A, project = randomUUID()) {
  const res = await call('', token, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files: sampleFiles(6, randomUUID()) }) });
  expect(res.status).toBe(201);
  return (await res.json()) as { generation_id: string; project_id: string; version: number; sha256: string; download_url: string; storage: Record<string, unknown> };
}
const row = (id: string) => ctx.db.asService((tx) => tx.query<{ upload_status: string; upload_attempts: number; upload_error: string | null }>('select upload_status, upload_attempts, upload_error from generations where id = $1::uuid', [id]));
const cloudGets = () => standIn.requests.filter((r) => r.method === 'GET' && r.path.includes('/object/')).length;
const dropLocalCopies = (g: { project_id: string; generation_id: string; version: number }) => {
  for (const root of [ctx.config.storagePath, ctx.config.cachePath]) {
    const dir = join(root, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.tar.gz`, { force: true });
  }
};

describe('cloud enabled', () => {
  it('answers the save at once, then uploads and verifies in the background', async () => {
    const g = await save();
    expect(g.storage).toEqual({ local_path: `${g.project_id}/generations/v1__${g.generation_id}`, cloud_enabled: true, uploaded: false, status: 'pending' });
    await ctx.uploads!.idle();
    expect(await row(g.generation_id)).toEqual([{ upload_status: 'uploaded', upload_attempts: 1, upload_error: null }]);
    const key = `${g.project_id}/generations/v1__${g.generation_id}.tar.gz`;
    expect(sha256(readFileSync(standIn.objectPath('codebegen-projects', key)))).toBe(g.sha256);

    const got = (await (await call(`/${g.generation_id}`, A)).json()) as typeof g;
    expect(got.storage).toMatchObject({ cloud_enabled: true, uploaded: true, status: 'uploaded' });
    expect(got.download_url.startsWith(`${standIn.url}/storage/v1/object/sign/codebegen-projects/${key}?token=`)).toBe(true);
    const dl = await fetch(got.download_url);
    expect(dl.status).toBe(200);
    expect(sha256(new Uint8Array(await dl.arrayBuffer()))).toBe(g.sha256);
    const lines = ctx.log.lines.filter((l) => l.generation_id === g.generation_id).map((l) => l.msg);
    expect(lines).toEqual(expect.arrayContaining(['generation saved', 'upload verified']));
    expect(JSON.stringify(ctx.log.lines)).not.toContain(standIn.serviceKey);
  });

  it('serves the owner from the cloud when local copy and cache are gone, once per cache lifetime; others get 404', async () => {
    const g = await save();
    await ctx.uploads!.idle();
    dropLocalCopies(g);
    const before = cloudGets();
    const res = await call(`/${g.generation_id}/download`, A);
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(g.sha256);
    expect(cloudGets()).toBe(before + 1);
    // answered once the bytes matched; the cache fills alongside
    await vi.waitFor(() => expect(existsSync(join(ctx.config.cachePath, g.project_id, 'generations', `v1__${g.generation_id}`, 'manifest.json'))).toBe(true));
    // cached now: no second cloud read
    expect((await call(`/${g.generation_id}/download`, A)).status).toBe(200);
    expect(cloudGets()).toBe(before + 1);
    expect((await call(`/${g.generation_id}/download`, B)).status).toBe(404);
    expect((await call(`/${g.generation_id}`, B)).status).toBe(404);
    // past CACHE_TTL_HOURS the cache is stale and the cloud is read again
    ctx.clock.offset += 2 * 3600_000 + 1000;
    try {
      expect((await call(`/${g.generation_id}/download`, A)).status).toBe(200);
      expect(cloudGets()).toBe(before + 2);
    } finally {
      ctx.clock.offset -= 2 * 3600_000 + 1000;
    }
  });

  it('downloads an uncached generation once for 100 concurrent reads', async () => {
    const g = await save();
    await ctx.uploads!.idle();
    dropLocalCopies(g);
    const before = cloudGets();
    const results = await Promise.all(Array.from({ length: 100 }, () => call(`/${g.generation_id}/download`, A)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(cloudGets()).toBe(before + 1);
  });

  it('downloads once also for a reader whose cache lookup ends after the download did (a slow disk)', async () => {
    const g = await save();
    await ctx.uploads!.idle();
    dropLocalCopies(g);
    const [record] = await ctx.db.asService((tx) => findGeneration(tx, g.generation_id).then((r) => [r!]));
    // A cache on a slow disk: the second lookup's miss comes back only after the first read is done.
    let release!: () => void;
    const firstDone = new Promise<void>((r) => (release = r));
    let lookups = 0;
    class SlowDiskCache extends LocalStore {
      override async writtenAt(ref: GenerationRef) {
        const second = ++lookups === 2;
        const at = await super.writtenAt(ref);
        if (second) await firstDone;
        return at;
      }
    }
    const storage = new HybridGenerationStorage(new LocalGenerationStorage(ctx.local, ctx.log), new SlowDiskCache(ctx.config.cachePath), ctx.cloud!, ctx.uploads!, ctx.log, { cacheTtlMs: 3600_000, unpackLimits: { maxEntries: 100, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 22 } });
    const before = cloudGets();
    const [first, second] = [storage.archive(record!), storage.archive(record!)];
    const a = await first.finally(release);
    expect(sha256(a)).toBe(g.sha256);
    expect(sha256(await second)).toBe(g.sha256);
    expect(cloudGets()).toBe(before + 1);
  });

  it('passes over a local folder that no longer packs to the recorded bytes, and serves the cloud copy', async () => {
    const g = await save();
    await ctx.uploads!.idle();
    const dir = join(ctx.config.storagePath, g.project_id, 'generations', `v1__${g.generation_id}`);
    rmSync(`${dir}.tar.gz`); // as a folder CodebeGen's Python wrote: packed again on read
    const [name] = readdirSync(join(dir, 'source'));
    writeFileSync(join(dir, 'source', name!), 'changed on disk\n');
    const before = cloudGets();
    const res = await call(`/${g.generation_id}/download`, A);
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(g.sha256);
    expect(cloudGets()).toBe(before + 1);
    expect(ctx.log.lines.some((l) => l.msg === 'archive does not match its record')).toBe(true);
  });

  it('refuses, and does not cache, a cloud copy whose sha256 is wrong', async () => {
    const g = await save();
    await ctx.uploads!.idle();
    dropLocalCopies(g);
    writeFileSync(standIn.objectPath('codebegen-projects', `${g.project_id}/generations/v1__${g.generation_id}.tar.gz`), 'corrupted');
    const res = await call(`/${g.generation_id}/download`, A);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('cloud_corrupt');
    expect(existsSync(join(ctx.config.cachePath, g.project_id, 'generations', `v1__${g.generation_id}`))).toBe(false);
  });

  it('never fails a save when the cloud fails: the row records it, a later retry uploads it', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await save();
    await ctx.uploads!.idle();
    const [failed] = await row(g.generation_id);
    expect(failed).toMatchObject({ upload_status: 'failed', upload_attempts: 1 });
    expect(failed!.upload_error).toMatch(/cloud/);
    // meanwhile the owner still reads it from the local copy, with our own signed URL
    const got = (await (await call(`/${g.generation_id}`, A)).json()) as typeof g;
    expect(got.download_url).toMatch(/^http:\/\/storage\.test\//);
    expect((await call(`/${g.generation_id}/download`, A)).status).toBe(200);

    standIn.faults.clear();
    // a failed generation whose local copy is gone is uploaded all the same: its bytes wait in the outbox
    standIn.faults.failNext(1000, 503);
    const noLocal = await save();
    await ctx.uploads!.idle();
    dropLocalCopies(noLocal);
    standIn.faults.clear();
    expect(await ctx.uploads!.resume()).toBe(0); // both are backing off
    ctx.clock.offset += 60_000;
    expect(await ctx.uploads!.resume()).toBeGreaterThanOrEqual(2);
    await ctx.uploads!.idle();
    expect(await row(g.generation_id)).toEqual([{ upload_status: 'uploaded', upload_attempts: 2, upload_error: null }]);
    expect(await row(noLocal.generation_id)).toEqual([{ upload_status: 'uploaded', upload_attempts: 2, upload_error: null }]);
    const res = await call(`/${noLocal.generation_id}/download`, A);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(noLocal.sha256);
  });

  it('uploads a generation another host marked lost, when this host has its copy', async () => {
    standIn.faults.failNext(1000, 503);
    const g = await save();
    await ctx.uploads!.idle();
    standIn.faults.clear();
    await ctx.db.asService((tx) => tx.query(`update generations set upload_status = 'lost' where id = $1::uuid`, [g.generation_id]));
    ctx.clock.offset += 60_000;
    await ctx.uploads!.resume();
    await ctx.uploads!.idle();
    expect((await row(g.generation_id))[0]!.upload_status).toBe('uploaded');
  });

  it('keeps an archive the bucket refuses as too large in the outbox, retried only every few hours, never lost', async () => {
    const setLimit = (bytes: number) =>
      fetch(`${standIn.url}/storage/v1/bucket/codebegen-projects`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'codebegen-projects', public: false, file_size_limit: bytes }),
      });
    expect((await setLimit(10)).status).toBe(200);
    try {
      const g = await save();
      await ctx.uploads!.idle();
      const [r] = await row(g.generation_id);
      expect(r).toMatchObject({ upload_status: 'failed', upload_attempts: 1 });
      expect(r!.upload_error).toMatch(/^permanent: .*(too large|EntityTooLarge|413|Payload)/i);
      // retry scans within the next hours leave it alone
      ctx.clock.offset += 3600_000;
      await ctx.uploads!.resume();
      await ctx.uploads!.idle();
      expect((await row(g.generation_id))[0]!.upload_attempts).toBe(1);
      // an operator raises the limit: the next try after the long backoff uploads the bytes kept all along
      await setLimit(52_428_800);
      ctx.clock.offset += 6 * 3600_000;
      await ctx.uploads!.resume();
      await ctx.uploads!.idle();
      expect((await row(g.generation_id))[0]).toMatchObject({ upload_status: 'uploaded', upload_attempts: 2 });
    } finally {
      await setLimit(52_428_800);
    }
  });

  it('refuses at save, with 413 and nothing written, an archive over Storage\'s upload limit (STORAGE_UPLOAD_LIMIT_BYTES)', async () => {
    const small = await appContext(
      { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey, STORAGE_UPLOAD_LIMIT_BYTES: '2048', MAX_GENERATION_BYTES: '2048', MAX_FILE_BYTES: '2048' },
      undefined,
      { cloudRetry: FAST_RETRY },
    );
    try {
      const project = randomUUID();
      const res = await small.app.request('http://storage.test/generations', {
        method: 'POST',
        headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
        // files within MAX_GENERATION_BYTES, but random bytes do not compress: with the tar headers the archive is over
        body: JSON.stringify({ project_id: project, files: { 'data.txt': randomBytes(1500).toString('base64') } }),
      });
      expect(res.status).toBe(413);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('payload_too_large');
      expect(body.error.message).toMatch(/over the 2048 bytes Supabase Storage takes per object \(STORAGE_UPLOAD_LIMIT_BYTES\)/);
      expect(existsSync(join(small.config.storagePath, project))).toBe(false);
      expect(await small.db.asService((tx) => tx.query('select 1 from generations'))).toEqual([]);
      expect(await small.db.asService((tx) => tx.query('select 1 from projects'))).toEqual([]); // not even the project
      // a smaller one still fits
      expect((await small.app.request('http://storage.test/generations', {
        method: 'POST',
        headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
        body: JSON.stringify({ project_id: project, files: sampleFiles(3) }),
      })).status).toBe(201);
    } finally {
      await small.close();
    }
  });

  it('retries transient failures within one upload (503, dropped connection) and succeeds', async () => {
    standIn.faults.failNext(1, 503);
    standIn.faults.dropNext(1);
    const g = await save();
    await ctx.uploads!.idle();
    expect(await row(g.generation_id)).toEqual([{ upload_status: 'uploaded', upload_attempts: 1, upload_error: null }]);
  });

  it('deletes the cloud object, cache and local copy; when Storage refuses, the row still goes and the object follows once it is back', async () => {
    const g = await save();
    await ctx.uploads!.idle();
    const key = `${g.project_id}/generations/v1__${g.generation_id}.tar.gz`;
    standIn.faults.failNext(1000, 503);
    expect((await call(`/${g.generation_id}`, A, { method: 'DELETE' })).status).toBe(204);
    expect(await row(g.generation_id)).toEqual([]);
    expect((await call(`/${g.generation_id}`, A)).status).toBe(404);
    expect(existsSync(join(ctx.config.storagePath, g.project_id, 'generations', `v1__${g.generation_id}`))).toBe(false);
    expect(existsSync(standIn.objectPath('codebegen-projects', key))).toBe(true); // Storage refused: the tombstone keeps it
    standIn.faults.clear();
    expect(await ctx.deletions.drain()).toMatchObject({ finished: 0 }); // backing off
    ctx.clock.offset += 60_000;
    expect(await ctx.deletions.drain()).toMatchObject({ finished: 1, still_failing: 0 });
    expect(existsSync(standIn.objectPath('codebegen-projects', key))).toBe(false);
    expect((await call(`/${g.generation_id}`, A, { method: 'DELETE' })).status).toBe(404);
  });

  it('leaves nothing in the bucket when a generation is deleted while its upload is under way', async () => {
    standIn.faults.delayNext(1, 400); // the upload's POST
    const g = await save();
    expect((await call(`/${g.generation_id}`, A, { method: 'DELETE' })).status).toBe(204);
    await ctx.uploads!.idle();
    expect(existsSync(standIn.objectPath('codebegen-projects', `${g.project_id}/generations/v1__${g.generation_id}.tar.gz`))).toBe(false);
  });

  it('issues cloud download URLs that expire', async () => {
    const short = await appContext(
      { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey, DOWNLOAD_URL_TTL_SECONDS: '1' },
      undefined,
      { cloudRetry: FAST_RETRY },
    );
    try {
      const res = await short.app.request('http://storage.test/generations', {
        method: 'POST',
        headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
        body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(2) }),
      });
      const g = (await res.json()) as { generation_id: string };
      await short.uploads!.idle();
      const got = (await (await short.app.request(`http://storage.test/generations/${g.generation_id}`, { headers: { authorization: `Bearer ${A}` } })).json()) as { download_url: string; expires_in: number };
      expect(got.expires_in).toBe(1);
      expect((await fetch(got.download_url)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 2100));
      const expired = await fetch(got.download_url);
      expect(expired.status).toBe(400);
      expect(await expired.json()).toMatchObject({ statusCode: '400', error: 'InvalidJWT' });
    } finally {
      await short.close();
    }
  });
});

describe('restarts and switching cloud on later', () => {
  it('uploads, after a restart, what was pending or failed, and what was saved while cloud was off', async () => {
    const dir = tempDir();
    const env = { STORAGE_PATH: join(dir.path, 'projects'), CACHE_PATH: join(dir.path, 'cache') };
    const off = await appContext(env);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const res = await off.app.request('http://storage.test/generations', {
          method: 'POST',
          headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
          body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(3, `${i}`) }),
        });
        expect(res.status).toBe(201);
        ids.push(((await res.json()) as { generation_id: string }).generation_id);
      }
      // "restart" with cloud on: same database, same disk
      const config = loadConfig({ ...env, SUPABASE_JWT_SECRET: JWT_SECRET, USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey });
      const on = buildApps(config, off.db, memoryLogger(), { cloudRetry: FAST_RETRY });
      expect(await on.uploads!.resume()).toBe(3);
      await on.uploads!.idle();
      for (const id of ids) {
        const [r] = await off.db.asService((tx) => tx.query<{ upload_status: string }>('select upload_status from generations where id = $1::uuid', [id]));
        expect(r!.upload_status).toBe('uploaded');
      }
    } finally {
      await off.close();
      dir.remove();
    }
  });
});

describe('health in cloud mode', () => {
  it('reports the bucket reachable, and stays ok (saves still work) when it is not', async () => {
    const health = async () => (await call('/health')).json() as Promise<{ status: string; cloud: { enabled: boolean; ok: boolean } }>;
    expect(await health()).toMatchObject({ status: 'ok', cloud: { enabled: true, ok: true } });
    standIn.faults.failNext(1, 503);
    expect(await health()).toMatchObject({ status: 'ok', cloud: { enabled: true, ok: false } });
  });
});
