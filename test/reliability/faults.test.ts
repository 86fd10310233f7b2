import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appContext, JWT_SECRET, sampleFiles, userToken, type AppContext } from '../helpers/context.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import type { FaultKind } from '../storage-standin/faults.ts';
import { mapLimit, report, sha256, sourceFiles } from './support.ts';

// Reliability 1 — faults. While a seeded share of Storage requests fails (500, 503, 429, dropped connections,
// answers cut mid-body, answers that hang past the client's timeout), every save still answers 201 at once and
// every read answers; once the faults stop, every generation ends uploaded, verified byte for byte, none lost.

const SAVES = 80;
const PROJECTS = 8;
const SHARE = 0.3;
const KINDS: FaultKind[] = [500, 503, 429, 'drop', 'cut', 'hang'];
const TIMEOUT_MS = 400; // per Storage request; a 'hang' answers only after HANG_MS
const HANG_MS = 1_500;
const BUCKET = 'codebegen-projects';

interface Saved {
  generation_id: string;
  project_id: string;
  version: number;
  sha256: string;
  files: Record<string, string>;
}

let standIn: StandIn;
let ctx: AppContext;
let token: string;
const saved: Saved[] = [];

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  ctx = await appContext(
    { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey, UPLOAD_CONCURRENCY: '4' },
    undefined,
    { cloudTimeoutMs: TIMEOUT_MS, cloudRetry: { retries: 3, minTimeoutMs: 10, maxTimeoutMs: 80 } },
  );
  await ctx.cloud!.ensureBucket();
  token = await userToken(randomUUID());
});
afterAll(async () => {
  standIn?.faults.clear();
  await ctx?.close();
  await standIn?.close();
});

const call = (path: string, init: RequestInit = {}) =>
  ctx.app.request(`http://storage.test/generations${path}`, { ...init, headers: { authorization: `Bearer ${token}`, ...init.headers } });
const rows = (ids: string[]) =>
  ctx.db.asService((tx) =>
    tx.query<{ id: string; upload_status: string; upload_attempts: number; upload_error: string | null; archive_sha256: string; storage_key: string }>(
      'select id, upload_status, upload_attempts, upload_error, archive_sha256, storage_key from generations where id = any($1::uuid[])',
      [ids],
    ),
  );
const count = (xs: string[]) => xs.reduce<Record<string, number>>((acc, x) => ((acc[x] = (acc[x] ?? 0) + 1), acc), {});
const injectedTotal = () => Object.values(standIn.faults.injected).reduce((a, b) => a + b, 0);

describe('Storage failing a share of requests', () => {
  it('answers every save with 201 during the faults; afterwards every generation is uploaded and verified, none lost', async () => {
    const started = performance.now();
    const projects = Array.from({ length: PROJECTS }, () => randomUUID());
    standIn.faults.failShare(SHARE, KINDS, { seed: 6, hangMs: HANG_MS });

    const saveStatuses: number[] = [];
    const readStatuses: number[] = [];
    await mapLimit(Array.from({ length: SAVES }, (_, i) => i), 8, async (i) => {
      const files = { ...sampleFiles(6, `-${i}`), 'data/blob.txt': randomBytes(12_000).toString('base64') };
      const res = await call('', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: projects[i % PROJECTS], files }) });
      saveStatuses.push(res.status);
      const body = (await res.json()) as Saved & { storage: { status: string } };
      expect(res.status, JSON.stringify(body)).toBe(201);
      expect(body.storage.status).toBe('pending');
      saved.push({ ...body, files });
      // A read during the faults answers too (a cloud signed URL when it can get one, our own otherwise).
      const got = await call(`/${body.generation_id}`);
      readStatuses.push(got.status);
      expect(got.status).toBe(200);
    });
    const savedMs = Math.round(performance.now() - started);
    await ctx.uploads!.idle();
    const duringFaults = count((await rows(saved.map((s) => s.generation_id))).map((r) => r.upload_status));
    const injected = { ...standIn.faults.injected };
    const requestsDuringFaults = standIn.requests.length;

    // Every kind of fault really happened, or this proves less than it says.
    for (const kind of KINDS) expect(injected[String(kind)] ?? 0, `fault ${kind} injected`).toBeGreaterThan(0);

    standIn.faults.clear();
    let rounds = 0;
    for (; rounds < 10; rounds++) {
      const left = (await rows(saved.map((s) => s.generation_id))).filter((r) => r.upload_status !== 'uploaded');
      if (left.length === 0) break;
      ctx.clock.offset += 5 * 60_000; // past the longest backoff
      await ctx.uploads!.resume();
      await ctx.uploads!.idle();
    }

    const final = await rows(saved.map((s) => s.generation_id));
    expect(final).toHaveLength(SAVES);
    let verified = 0;
    for (const s of saved) {
      const r = final.find((x) => x.id === s.generation_id)!;
      expect(r, s.generation_id).toMatchObject({ upload_status: 'uploaded', upload_error: null, archive_sha256: s.sha256 });
      // The bucket's copy is the exact archive the save answered with, and holds the files that were sent.
      const inBucket = new Uint8Array(readFileSync(standIn.objectPath(BUCKET, r.storage_key)));
      expect(sha256(inBucket)).toBe(s.sha256);
      expect(await sourceFiles(inBucket)).toEqual(s.files);
      verified++;
    }
    // And the versions of each project are distinct, 1..n: no save lost or doubled in the confusion.
    for (const p of projects) {
      const versions = saved.filter((s) => s.project_id === p).map((s) => s.version).sort((a, b) => a - b);
      expect(versions).toEqual(Array.from({ length: SAVES / PROJECTS }, (_, i) => i + 1));
    }

    const msgs = ctx.log.lines.map((l) => String(l.msg));
    report('faults', {
      saves: SAVES,
      save_statuses: count(saveStatuses.map(String)),
      reads_during_faults: count(readStatuses.map(String)),
      fault_share: SHARE,
      storage_requests_during_faults: requestsDuringFaults,
      faults_injected: injected,
      faults_injected_total: Object.values(injected).reduce((a, b) => a + b, 0),
      retries_within_calls: msgs.filter((m) => m === 'cloud call failed, retrying').length,
      uploads_failed_then_retried: msgs.filter((m) => m === 'upload failed').length,
      status_when_faults_stopped: duringFaults,
      upload_attempts_total: final.reduce((n, r) => n + r.upload_attempts, 0),
      resume_rounds_after_faults: rounds,
      uploaded_and_verified: verified,
      lost: SAVES - verified,
      saves_ms: savedMs,
      total_ms: Math.round(performance.now() - started),
    });
  }, 180_000);

  it('serves cold reads during the faults with the exact bytes or a clear 503, and caches nothing wrong', async () => {
    expect(saved.length).toBe(SAVES);
    const cold = saved.slice(0, 30);
    // Only the bucket has them now.
    for (const g of cold) {
      const dir = join(ctx.storage, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}.tar.gz`, { force: true });
    }
    const before = injectedTotal();
    standIn.faults.failShare(SHARE, KINDS, { seed: 7, hangMs: HANG_MS });
    const outcomes = await mapLimit(cold, 6, async (g) => {
      const res = await call(`/${g.generation_id}/download`);
      if (res.status === 200) {
        expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(g.sha256);
        return '200';
      }
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('cloud_unavailable');
      return '503';
    });
    const injected = injectedTotal() - before;
    expect(injected).toBeGreaterThan(0);
    standIn.faults.clear();
    // Afterwards every one reads back exactly (from the cache or the bucket).
    for (const g of cold) {
      const res = await call(`/${g.generation_id}/download`);
      expect(res.status).toBe(200);
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(g.sha256);
    }
    report('faults-cold-reads', { reads: cold.length, during_faults: count(outcomes), faults_injected: injected, wrong_bytes_served: 0, after_faults_ok: cold.length });
  }, 180_000);
});
