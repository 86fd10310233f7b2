import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase } from '../../functions/_shared/db/database.ts';
import { openPostgres } from '../../functions/_shared/db/postgres-driver.ts';
import { freePort, JWT_SECRET, migrateAll, sampleFiles, serviceToken, tempDir, userToken } from '../helpers/context.ts';
import { denoAvailable, startEntry } from '../helpers/deno-entry.ts';
import { scratchDatabase } from '../helpers/scratch-db.ts';
import { ServerProcess } from '../helpers/server-process.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import { mapLimit, report, sha256, sleep } from './support.ts';

// Reliability 6 — a Storage outage, with every host's disk lost. The edge entry (Deno) and a Node host share one
// PostgreSQL 15; Storage refuses every request while SAVES saves go to each. Then both are killed (SIGKILL) and
// their disks wiped — the edge's per-worker /tmp, the Node host's STORAGE_PATH and CACHE_PATH. Storage comes
// back (after OUTAGE_SECONDS more, 0 by default; 600 reproduces the ten minutes); fresh processes with
// empty disks start, and with no hand work every acknowledged save ends uploaded, verified, byte-identical.
// What pg_cron does on Supabase (POST storage-maintenance/drain every minute while rows are due) is done here
// by a loop; the fresh Node host drains on its own retry timer.

const SAVES = Number(process.env.OUTAGE_SAVES ?? 100);
const OUTAGE_SECONDS = Number(process.env.OUTAGE_SECONDS ?? 0);
const BUCKET = 'codebegen-projects';
const adminUrl = inject('databaseUrl');
const ready = Boolean(adminUrl) && denoAvailable();
if (!ready) console.warn('\n!!! test/reliability/outage.test.ts SKIPPED: needs PostgreSQL (see test/global-setup.ts) and the npm `deno` package !!!\n');

describe.skipIf(!ready)('reliability: a Storage outage with every disk lost', () => {
  const dir = tempDir('codebegen-rel-outage-');
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let standIn: StandIn;
  const children: ChildProcess[] = [];
  const servers: ServerProcess[] = [];
  let common: Record<string, string>;

  beforeAll(async () => {
    scratch = await scratchDatabase(adminUrl, 'cb_outage');
    const db = createDatabase(openPostgres(scratch.url));
    await migrateAll(db);
    await db.close();
    standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
    const bucket = await fetch(`${standIn.url}/storage/v1/bucket`, {
      method: 'POST',
      headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: BUCKET, name: BUCKET, public: false }),
    });
    expect(bucket.status).toBe(200);
    common = { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, OUTBOX_LEASE_SECONDS: '3', LOG_LEVEL: 'error' };
  }, 60_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const s of servers) await s.kill();
    await standIn?.close();
    await scratch?.drop();
    dir.remove();
  });

  const edgeEnv = (worker: string) => ({
    ...common,
    SUPABASE_DB_URL: scratch.url,
    SUPABASE_SERVICE_ROLE_KEY: standIn.serviceKey,
    JWT_SECRET,
    STORAGE_PATH: join(dir.path, worker, 'projects'),
    CACHE_PATH: join(dir.path, worker, 'cache'),
  });
  const nodeHost = async (name: string) => {
    const s = new ServerProcess({
      PATH: process.env.PATH,
      PORT: String(await freePort()),
      ...common,
      DATABASE_URL: scratch.url,
      SUPABASE_SERVICE_KEY: standIn.serviceKey,
      SUPABASE_JWT_SECRET: JWT_SECRET,
      STORAGE_PATH: join(dir.path, name, 'projects'),
      CACHE_PATH: join(dir.path, name, 'cache'),
      UPLOAD_RETRY_SECONDS: '1',
    });
    servers.push(s);
    return s.start();
  };

  it(`${SAVES} saves on the edge and ${SAVES} on Node all answer 201 while Storage refuses everything; all end uploaded after kills and wiped disks`, async () => {
    const edge = await startEntry('functions/generations/index.ts', edgeEnv('edge-1'));
    children.push(edge.child);
    const node = await nodeHost('node-1');
    standIn.faults.failShare(1, [503]);
    const owner = randomUUID();
    const auth = { authorization: `Bearer ${await userToken(owner)}`, 'content-type': 'application/json' };
    const projects = Array.from({ length: 8 }, () => randomUUID());
    const targets = [...Array.from({ length: SAVES }, () => `${edge.base}/generations`), ...Array.from({ length: SAVES }, () => node.base)];
    const started = Date.now();
    const answers = await mapLimit(targets, 8, async (url, i) => {
      const res = await fetch(url, { method: 'POST', headers: auth, body: JSON.stringify({ project_id: projects[i % projects.length], files: sampleFiles(6, `outage-${i}`) }) });
      const body = (await res.json()) as { generation_id: string; sha256: string; storage: { status: string } };
      return { status: res.status, host: i < SAVES ? 'edge' : 'node', ...body };
    });
    const saveSeconds = (Date.now() - started) / 1000;
    expect(answers.filter((a) => a.status !== 201), edge.output() + node.output).toEqual([]);
    expect(answers.every((a) => a.storage.status === 'pending')).toBe(true);

    // Both hosts die without warning, uploads under way or not, and their disks go with them.
    edge.child.kill('SIGKILL');
    await node.kill('SIGKILL');
    for (const d of ['edge-1', 'node-1']) rmSync(join(dir.path, d), { recursive: true, force: true });
    if (OUTAGE_SECONDS > 0) await sleep(OUTAGE_SECONDS * 1000);
    const injected = { ...standIn.faults.injected };
    standIn.faults.clear();

    // Fresh processes, empty disks. pg_cron's part is played by a loop calling the drain.
    const recovered = Date.now();
    const maintenance = await startEntry('functions/storage-maintenance/index.ts', edgeEnv('edge-2'));
    children.push(maintenance.child);
    const fresh = await nodeHost('node-2');
    const sql = postgres(scratch.url, { max: 1, onnotice: () => {} });
    const S = { authorization: `Bearer ${await serviceToken()}` };
    let drainCalls = 0;
    try {
      const ids = answers.map((a) => a.generation_id);
      const uploaded = async () => Number((await sql`select count(*)::int as n from generations where id = any(${ids}::uuid[]) and upload_status = 'uploaded'`)[0]!.n);
      for (let i = 0; i < 240 && (await uploaded()) < ids.length; i++) {
        // pg_cron's condition: only when a row is due
        const [{ due }] = (await sql`select count(*)::int as due from codebegen_private.upload_outbox where next_attempt_at <= now() and (lease_expires_at is null or lease_expires_at < now())`) as unknown as [{ due: number }];
        if (due > 0) {
          drainCalls++;
          const res = await fetch(`${maintenance.base}/storage-maintenance/drain`, { method: 'POST', headers: S });
          expect(res.status, maintenance.output()).toBe(200);
        }
        await sleep(500);
      }
      const recoverySeconds = (Date.now() - recovered) / 1000;
      const rows = await sql`select id::text, upload_status, archive_sha256, project_id::text, version from generations where id = any(${ids}::uuid[])`;
      const outboxLeft = Number((await sql`select count(*)::int as n from codebegen_private.upload_outbox`)[0]!.n);

      // Every object in the bucket is exactly the archive the 201 named; every download is byte-identical.
      let verified = 0;
      for (const a of answers) {
        const r = rows.find((x) => x.id === a.generation_id)!;
        const object = readFileSync(standIn.objectPath(BUCKET, `${r.project_id}/generations/v${r.version}__${r.id}.tar.gz`));
        if (sha256(object) === a.sha256 && r.upload_status === 'uploaded') verified++;
      }
      const reader = await startEntry('functions/generations/index.ts', edgeEnv('edge-3'));
      children.push(reader.child);
      const sample = answers.filter((_, i) => i % 10 === 0);
      const identical = await mapLimit(sample, 4, async (a) => {
        const res = await fetch(`${reader.base}/generations/${a.generation_id}/download`, { headers: { authorization: auth.authorization } });
        return res.status === 200 && sha256(new Uint8Array(await res.arrayBuffer())) === a.sha256;
      });

      const figures = report('outage', {
        saves: answers.length,
        answered_201: answers.filter((a) => a.status === 201).length,
        save_seconds: Number(saveSeconds.toFixed(1)),
        storage_requests_refused: Object.values(injected).reduce((n, v) => n + v, 0),
        outage_extra_seconds: OUTAGE_SECONDS,
        uploaded_and_verified: verified,
        downloads_identical: `${identical.filter(Boolean).length}/${sample.length}`,
        recovery_seconds: Number(recoverySeconds.toFixed(1)),
        drain_calls: drainCalls,
        outbox_rows_left: outboxLeft,
        lost: answers.length - verified,
      });
      expect(figures.uploaded_and_verified).toBe(2 * SAVES);
      expect(identical.every(Boolean)).toBe(true);
      expect(outboxLeft).toBe(0);
    } finally {
      await sql.end();
      // nothing of this scenario may drain the next one's rows
      maintenance.child.kill('SIGKILL');
      await fresh.kill('SIGKILL');
    }
  }, 600_000 + OUTAGE_SECONDS * 1000);

  it('the fault scenario on the edge: a seeded 30 % of Storage requests fail in every way while 40 saves arrive and while they drain; all 201, all end uploaded', async () => {
    const kinds = [500, 503, 429, 'drop', 'cut', 'hang'] as const;
    const edge = await startEntry('functions/generations/index.ts', edgeEnv('edge-faults'));
    children.push(edge.child);
    const auth = { authorization: `Bearer ${await userToken(randomUUID())}`, 'content-type': 'application/json' };
    const earlier = { ...standIn.faults.injected };
    standIn.faults.failShare(0.3, [...kinds], { seed: 11, hangMs: 1_500 });
    const answers = await mapLimit(Array.from({ length: 40 }, (_, i) => i), 8, async (i) => {
      const res = await fetch(`${edge.base}/generations`, { method: 'POST', headers: auth, body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(6, `faults-${i}`) }) });
      return { status: res.status, ...((await res.json()) as { generation_id: string; sha256: string }) };
    });
    expect(answers.filter((a) => a.status !== 201)).toEqual([]);
    // the worker's own background uploads are meeting the faults when it dies, /tmp and all
    const injected = Object.fromEntries(Object.entries(standIn.faults.injected).map(([k, n]) => [k, n - (earlier[k] ?? 0)]).filter(([, n]) => Number(n) > 0));
    edge.child.kill('SIGKILL');
    rmSync(join(dir.path, 'edge-faults'), { recursive: true, force: true });
    // the faults go on while the drain works

    const maintenance = await startEntry('functions/storage-maintenance/index.ts', edgeEnv('edge-faults-2'));
    children.push(maintenance.child);
    const sql = postgres(scratch.url, { max: 1, onnotice: () => {} });
    const S = { authorization: `Bearer ${await serviceToken()}` };
    try {
      const ids = answers.map((a) => a.generation_id);
      const left = async () => Number((await sql`select count(*)::int as n from generations where id = any(${ids}::uuid[]) and upload_status <> 'uploaded'`)[0]!.n);
      let calls = 0;
      for (let i = 0; i < 240 && (await left()) > 0; i++) {
        await fetch(`${maintenance.base}/storage-maintenance/drain`, { method: 'POST', headers: S });
        calls++;
        await sleep(500);
      }
      let verified = 0;
      for (const a of answers) {
        const [r] = await sql`select upload_status, project_id::text, version from generations where id = ${a.generation_id}`;
        const object = readFileSync(standIn.objectPath(BUCKET, `${r!.project_id}/generations/v${r!.version}__${a.generation_id}.tar.gz`));
        if (r!.upload_status === 'uploaded' && sha256(object) === a.sha256) verified++;
      }
      standIn.faults.clear();
      const injectedInAll = Object.fromEntries(Object.entries(standIn.faults.injected).map(([k, n]) => [k, n - (earlier[k] ?? 0)]).filter(([, n]) => Number(n) > 0));
      const figures = report('outage-edge-faults', {
        saves: answers.length,
        answered_201: answers.filter((a) => a.status === 201).length,
        fault_share: 0.3,
        faults_injected_while_saving: injected,
        faults_injected_in_all: injectedInAll,
        drain_calls: calls,
        uploaded_and_verified: verified,
        lost: answers.length - verified,
      });
      expect(figures.lost).toBe(0);
      expect(figures.drain_calls, 'the kill left uploads for the drain').toBeGreaterThan(0);
    } finally {
      standIn.faults.clear();
      await sql.end();
    }
  }, 300_000);
});
