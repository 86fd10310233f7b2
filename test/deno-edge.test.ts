import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase } from '../functions/_shared/db/database.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { JWT_SECRET, migrateAll, sampleFiles, serviceToken, tempDir, userToken } from './helpers/context.ts';
import { denoAvailable, startEntry } from './helpers/deno-entry.ts';
import { scratchDatabase } from './helpers/scratch-db.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// The Supabase Edge entries themselves, under Deno (the npm `deno` binary, imports from deno.json only), on
// loopback against real PostgreSQL 15 and the Storage stand-in: save, get, download, then maintenance once.

const adminUrl = inject('databaseUrl');
const ready = Boolean(adminUrl) && denoAvailable();
if (!ready) console.warn('\n!!! test/deno-edge.test.ts SKIPPED: needs PostgreSQL (see test/global-setup.ts) and the npm `deno` package !!!\n');

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const body = async (req: IncomingMessage) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

/**
 * Supabase's API gateway in front of the Storage stand-in, as documented for the new keys: a request whose `apikey` is
 * one of the project's secret keys, with no Authorization or the same key as bearer, reaches Storage as service_role;
 * an unknown `sb_secret_` key, or a different `sb_` key as bearer, is refused. Anything else passes through unchanged.
 */
async function startGateway(standIn: StandIn, secretKeys: readonly string[]) {
  const used: string[] = [];
  const server = createServer(async (req, res) => {
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k))) as Record<string, string>;
    const apikey = headers.apikey;
    if (apikey?.startsWith('sb_secret_')) {
      const bearer = headers.authorization;
      if (!secretKeys.includes(apikey) || (bearer !== undefined && bearer !== `Bearer ${apikey}` && /^Bearer sb_/i.test(bearer))) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"Invalid API key"}');
        return;
      }
      if (bearer === undefined || bearer === `Bearer ${apikey}`) headers.authorization = `Bearer ${standIn.serviceKey}`;
      used.push(apikey);
    }
    const payload = await body(req);
    const up = await fetch(`${standIn.url}${req.url}`, { method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : payload });
    const out = Object.fromEntries([...up.headers].filter(([k]) => !['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(k)));
    res.writeHead(up.status, out).end(Buffer.from(await up.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    used: () => [...used],
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(!ready)('edge entries under Deno', () => {
  const dir = tempDir();
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let standIn: StandIn;
  let env: Record<string, string>;
  const entries: ChildProcess[] = [];

  beforeAll(async () => {
    scratch = await scratchDatabase(adminUrl, 'cb_edge');
    const db = createDatabase(openPostgres(scratch.url));
    await migrateAll(db);
    await db.close();
    standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
    // What Supabase provides, plus our custom secrets (none may start with SUPABASE_).
    env = {
      SUPABASE_URL: standIn.url,
      SUPABASE_DB_URL: scratch.url,
      SUPABASE_SERVICE_ROLE_KEY: standIn.serviceKey,
      JWT_SECRET,
      USE_CLOUD_STORAGE: 'true',
      STORAGE_PATH: join(dir.path, 'projects'),
      CACHE_PATH: join(dir.path, 'cache'),
      LOG_LEVEL: 'info',
    };
  }, 60_000);

  afterAll(async () => {
    for (const c of entries) c.kill('SIGKILL');
    await standIn?.close();
    await scratch?.drop();
    dir.remove();
  });

  it('serves generations: save, get, download, with the upload done in the background', async () => {
    const fn = await startEntry('functions/generations/index.ts', env);
    entries.push(fn.child);
    // the bucket exists on Supabase (migration); the stand-in needs it made
    const bucket = await fetch(`${standIn.url}/storage/v1/bucket`, {
      method: 'POST',
      headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'codebegen-projects', name: 'codebegen-projects', public: false }),
    });
    expect(bucket.status).toBe(200);

    const alice = randomUUID();
    const A = { authorization: `Bearer ${await userToken(alice)}` };
    const files = sampleFiles(5);
    const res = await fetch(`${fn.base}/generations`, { method: 'POST', headers: { ...A, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), files }) });
    expect(res.status, fn.output()).toBe(201);
    const saved = (await res.json()) as { generation_id: string; sha256: string; storage: { status: string } };
    expect(saved.storage.status).toBe('pending');

    let got: { storage: { status: string }; download_url: string } | undefined;
    for (let i = 0; i < 100; i++) {
      got = (await (await fetch(`${fn.base}/generations/${saved.generation_id}`, { headers: A })).json()) as typeof got;
      if (got!.storage.status === 'uploaded') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(got!.storage.status, fn.output()).toBe('uploaded');
    expect(got!.download_url.startsWith(`${standIn.url}/storage/v1/object/sign/`)).toBe(true);
    expect(sha256(new Uint8Array(await (await fetch(got!.download_url)).arrayBuffer()))).toBe(saved.sha256);
    const direct = await fetch(`${fn.base}/generations/${saved.generation_id}/download`, { headers: A });
    expect(sha256(new Uint8Array(await direct.arrayBuffer()))).toBe(saved.sha256);
    expect((await fetch(`${fn.base}/generations/${saved.generation_id}`, { headers: { authorization: `Bearer ${await userToken(randomUUID())}` } })).status).toBe(404);
  }, 120_000);

  it('keeps a save through a Storage outage, a killed worker and a wiped /tmp: a fresh worker drains it, byte-identical', async () => {
    // each worker gets /tmp folders of its own, as on Supabase
    const tmp = (name: string) => ({ STORAGE_PATH: join(dir.path, name, 'projects'), CACHE_PATH: join(dir.path, name, 'cache') });
    const first = await startEntry('functions/generations/index.ts', { ...env, ...tmp('worker-1') });
    entries.push(first.child);
    const A = { authorization: `Bearer ${await userToken(randomUUID())}` };
    standIn.faults.failNext(100_000, 503); // longer than every in-call retry
    const res = await fetch(`${first.base}/generations`, { method: 'POST', headers: { ...A, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(6, 'outage') }) });
    expect(res.status, first.output()).toBe(201);
    const saved = (await res.json()) as { generation_id: string; sha256: string };
    const sql = postgres(scratch.url, { max: 1, onnotice: () => {} });
    try {
      const status = async () => (await sql`select upload_status from generations where id = ${saved.generation_id}`)[0]!.upload_status as string;
      for (let i = 0; i < 200 && (await status()) === 'pending'; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await status(), first.output()).toBe('failed');
      first.child.kill('SIGKILL');
      rmSync(join(dir.path, 'worker-1'), { recursive: true, force: true });
      standIn.faults.clear();
      // the backoff is over (a minute later, when pg_cron calls the drain)
      await sql`update codebegen_private.upload_outbox set next_attempt_at = now() where generation_id = ${saved.generation_id}`;

      const maintenance = await startEntry('functions/storage-maintenance/index.ts', { ...env, ...tmp('worker-2') });
      entries.push(maintenance.child);
      const S = { authorization: `Bearer ${await serviceToken()}` };
      const drained = await fetch(`${maintenance.base}/storage-maintenance/drain`, { method: 'POST', headers: S });
      expect(drained.status, maintenance.output()).toBe(200);
      expect(await drained.json()).toMatchObject({ uploaded: 1, failed: 0, backlog: { rows: 0 } });
      expect(await status()).toBe('uploaded');

      const fresh = await startEntry('functions/generations/index.ts', { ...env, ...tmp('worker-3') });
      entries.push(fresh.child);
      const back = await fetch(`${fresh.base}/generations/${saved.generation_id}/download`, { headers: A });
      expect(back.status, fresh.output()).toBe(200);
      expect(sha256(new Uint8Array(await back.arrayBuffer()))).toBe(saved.sha256);
    } finally {
      await sql.end();
    }
  }, 120_000);

  it('refuses, with a 413 naming the limit, a save over the edge default (8 MiB of files)', async () => {
    const fn = await startEntry('functions/generations/index.ts', env);
    entries.push(fn.child);
    const files = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`data/part_${i}.txt`, 'x'.repeat(1024 * 1024)]));
    const res = await fetch(`${fn.base}/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await userToken(randomUUID())}`, 'content-type': 'application/json' },
      body: JSON.stringify({ project_id: randomUUID(), files }),
    });
    expect(res.status, fn.output()).toBe(413);
    expect(await res.json()).toEqual({ error: { code: 'payload_too_large', message: `files: over ${8 * 1024 * 1024} bytes in all` } });
  }, 120_000);

  it('runs storage-maintenance once for the service key, and refuses anyone else', async () => {
    const fn = await startEntry('functions/storage-maintenance/index.ts', env);
    entries.push(fn.child);
    expect((await fetch(`${fn.base}/storage-maintenance`, { method: 'POST' })).status).toBe(401);
    const res = await fetch(`${fn.base}/storage-maintenance`, { method: 'POST', headers: { authorization: `Bearer ${await serviceToken()}` } });
    expect(res.status, fn.output()).toBe(200);
    const report = (await res.json()) as { cache: unknown; uploads: unknown; orphans: { objects_without_rows: string[] } };
    expect(report).toMatchObject({ cache: { removed: 0 }, orphans: { objects_without_rows: [], rows_without_objects: [] } });
    expect(fn.output()).toContain('"msg":"maintenance finished"');
  }, 120_000);

  it('runs on the new keys alone (SUPABASE_SECRET_KEYS, SUPABASE_JWKS; no legacy key, no JWT secret): a save, its upload, maintenance', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'edge-new-keys', alg: 'ES256', use: 'sig' };
    const secretKeys = { default: `sb_secret_${randomUUID()}`, automations: `sb_secret_${randomUUID()}` };
    const gateway = await startGateway(standIn, Object.values(secretKeys));
    try {
      // the bucket (made by the first test, unless this one runs alone)
      await fetch(`${standIn.url}/storage/v1/bucket`, {
        method: 'POST',
        headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'codebegen-projects', name: 'codebegen-projects', public: false }),
      });
      const { SUPABASE_SERVICE_ROLE_KEY: _legacy, JWT_SECRET: _secret, ...platform } = env;
      const newKeys = {
        ...platform,
        SUPABASE_URL: gateway.url,
        SUPABASE_SECRET_KEYS: JSON.stringify(secretKeys),
        SUPABASE_JWKS: JSON.stringify({ keys: [jwk] }),
        STORAGE_PATH: join(dir.path, 'new-keys', 'projects'),
        CACHE_PATH: join(dir.path, 'new-keys', 'cache'),
      };
      const fn = await startEntry('functions/generations/index.ts', newKeys);
      entries.push(fn.child);
      const alice = randomUUID();
      const token = await new SignJWT({ role: 'authenticated', aud: 'authenticated' })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: jwk.kid })
        .setSubject(alice)
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(privateKey);
      const A = { authorization: `Bearer ${token}` };
      const res = await fetch(`${fn.base}/generations`, { method: 'POST', headers: { ...A, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(3, 'new-keys') }) });
      expect(res.status, fn.output()).toBe(201);
      const saved = (await res.json()) as { generation_id: string; sha256: string };
      let status = '';
      for (let i = 0; i < 100 && status !== 'uploaded'; i++) {
        status = ((await (await fetch(`${fn.base}/generations/${saved.generation_id}`, { headers: A })).json()) as { storage: { status: string } }).storage.status;
        if (status !== 'uploaded') await new Promise((r) => setTimeout(r, 100));
      }
      expect(status, fn.output()).toBe('uploaded');
      // Storage was reached with the default secret key, as apikey and bearer alike
      expect(new Set(gateway.used())).toEqual(new Set([secretKeys.default]));
      const back = await fetch(`${fn.base}/generations/${saved.generation_id}/download`, { headers: A });
      expect(sha256(new Uint8Array(await back.arrayBuffer()))).toBe(saved.sha256);

      const maintenance = await startEntry('functions/storage-maintenance/index.ts', newKeys);
      entries.push(maintenance.child);
      for (const key of Object.values(secretKeys)) {
        const run = await fetch(`${maintenance.base}/storage-maintenance/drain`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
        expect(run.status, maintenance.output()).toBe(200);
      }
      // neither a legacy service_role token (no JWT secret here) nor a user is the backend
      expect((await fetch(`${maintenance.base}/storage-maintenance`, { method: 'POST', headers: { authorization: `Bearer ${await serviceToken()}` } })).status).toBe(401);
      expect((await fetch(`${maintenance.base}/storage-maintenance`, { method: 'POST', headers: A })).status).toBe(403);
    } finally {
      await gateway.close();
    }
  }, 120_000);
});
