import { createHash, randomUUID } from 'node:crypto';
import { StorageClient } from '@supabase/storage-js';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../functions/_shared/errors.ts';
import { SupabaseCloudStore } from '../functions/_shared/stores/cloud-store.ts';
import { JWT_SECRET, memoryLogger } from './helpers/context.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// The CloudStore contract. By default it runs against the stand-in; set SUPABASE_URL and SUPABASE_SERVICE_KEY
// (and SUPABASE_JWT_SECRET for the user-token cases) to run the very same cases against a real Storage API.
// It works in its own bucket (CONTRACT_BUCKET, default codebegen-contract-tests) and removes what it wrote.
// CONTRACT_GLOBAL_LIMIT is the project's global upload limit in bytes (default 52428800, Supabase Free's 50 MB).

const realKey = process.env.SUPABASE_SERVICE_KEY ?? process.env.SUPABASE_SERVICE_ROLE_KEY;
const real = process.env.SUPABASE_URL && realKey;
const bucket = process.env.CONTRACT_BUCKET ?? 'codebegen-contract-tests';
const globalLimit = Number(process.env.CONTRACT_GLOBAL_LIMIT ?? 52_428_800);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
console.log(real ? `contract: against the real Storage API at ${process.env.SUPABASE_URL}` : 'contract: against the Storage stand-in (set SUPABASE_URL and SUPABASE_SERVICE_KEY for a real one)');

let standIn: StandIn | undefined;
let url: string;
let serviceKey: string;
let jwtSecret: string | undefined;
let store: SupabaseCloudStore;
const prefix = `contract-${randomUUID()}`;
const key = (name: string) => `${prefix}/generations/${name}.tar.gz`;
const bytes = (n: number) => new Uint8Array(Array.from({ length: n }, (_, i) => (i * 31) % 251));

beforeAll(async () => {
  if (real) {
    url = process.env.SUPABASE_URL!.replace(/\/+$/, '');
    serviceKey = realKey!;
    jwtSecret = process.env.SUPABASE_JWT_SECRET;
  } else {
    standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
    url = standIn.url;
    serviceKey = standIn.serviceKey;
    jwtSecret = JWT_SECRET;
  }
  store = new SupabaseCloudStore({ url, serviceKey, bucket, fileSizeLimit: 1024 * 1024 }, memoryLogger(), { retries: 3, minTimeoutMs: 10, maxTimeoutMs: 50 });
  await store.ensureBucket();
});

afterAll(async () => {
  const client = new StorageClient(`${url}/storage/v1`, { apikey: serviceKey, Authorization: `Bearer ${serviceKey}` });
  const { data } = await client.from(bucket).list(`${prefix}/generations`);
  if (data?.length) await client.from(bucket).remove(data.map((o) => `${prefix}/generations/${o.name}`));
  await standIn?.close();
});

const rejection = async (p: Promise<unknown>) => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
};

describe(`CloudStore contract (${real ? 'real Storage API' : 'stand-in'})`, () => {
  it('ensures the bucket idempotently, private', async () => {
    await store.ensureBucket();
    const client = new StorageClient(`${url}/storage/v1`, { apikey: serviceKey, Authorization: `Bearer ${serviceKey}` });
    const { data } = await client.getBucket(bucket);
    expect(data?.public).toBe(false);
  });

  it("refuses a bucket limit above the project's global upload limit: 413 payload_too_large, not retried", async () => {
    const overBucket = `${bucket}-over-limit`;
    const over = new SupabaseCloudStore({ url, serviceKey, bucket: overBucket, fileSizeLimit: globalLimit + 1 }, memoryLogger(), { retries: 3, minTimeoutMs: 10, maxTimeoutMs: 50 });
    const before = standIn?.requests.length ?? 0;
    try {
      expect(await rejection(over.ensureBucket())).toMatchObject({ status: 413, code: 'payload_too_large' });
      if (standIn) expect(standIn.requests.slice(before).map((r) => r.method)).toEqual(['GET', 'POST']);
    } finally {
      // Only there if CONTRACT_GLOBAL_LIMIT understates the real project's limit.
      await new StorageClient(`${url}/storage/v1`, { apikey: serviceKey, Authorization: `Bearer ${serviceKey}` }).deleteBucket(overBucket);
    }
  });

  it('uploads, downloads identical bytes, and overwrites the same key', async () => {
    const a = bytes(5000);
    await store.upload(key('a'), a);
    expect(sha256(await store.download(key('a')))).toBe(sha256(a));
    const b = bytes(7000);
    await store.upload(key('a'), b);
    expect(sha256(await store.download(key('a')))).toBe(sha256(b));
  });

  it('translates a missing object to 404 cloud_object_not_found, without retrying', async () => {
    const before = standIn?.requests.length ?? 0;
    const err = await rejection(store.download(key('missing')));
    expect(err).toMatchObject({ status: 404, code: 'cloud_object_not_found' });
    if (standIn) expect(standIn.requests.length - before).toBe(1);
  });

  it('signs a URL that downloads the object under the given file name', async () => {
    const data = bytes(1234);
    await store.upload(key('signed'), data);
    const signed = await store.signedUrl(key('signed'), 60, 'v1__x.tar.gz');
    const res = await fetch(signed);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toContain('v1__x.tar.gz');
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(data));
    const err = await rejection(store.signedUrl(key('nothing-here'), 60, 'x.tar.gz'));
    expect(err.status).toBe(404);
  });

  it('removes, and removing again is not an error', async () => {
    await store.upload(key('gone'), bytes(10));
    await store.remove([key('gone')]);
    expect((await rejection(store.download(key('gone')))).status).toBe(404);
    await store.remove([key('gone')]);
  });

  it.skipIf(real && !process.env.SUPABASE_JWT_SECRET)('refuses a user token: no upload, no reading objects that are not theirs', async () => {
    const user = await new SignJWT({ role: 'authenticated', aud: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(randomUUID())
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(jwtSecret!));
    await store.upload(key('private'), bytes(10));
    const asUser = new SupabaseCloudStore({ url, serviceKey: user, bucket, fileSizeLimit: 1024 }, memoryLogger(), { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 });
    expect((await rejection(asUser.upload(key('by-user'), bytes(10)))).code).toBe('cloud_forbidden');
    expect((await rejection(asUser.download(key('private')))).status).toBe(404);
  });
});

describe.skipIf(real)('CloudStore retries (stand-in only: faults are injected)', () => {
  it('retries 5xx, 429 and dropped connections, then succeeds', async () => {
    standIn!.faults.failNext(1, 503);
    standIn!.faults.failNext(1, 429);
    await store.upload(key('retried'), bytes(100));
    standIn!.faults.dropNext(1);
    expect((await store.download(key('retried'))).byteLength).toBe(100);
  });

  it('gives up after its retries with 503 cloud_unavailable', async () => {
    standIn!.faults.failNext(10, 500);
    const err = await rejection(store.download(key('retried')));
    expect(err).toMatchObject({ status: 503, code: 'cloud_unavailable' });
    standIn!.faults.clear();
  });

  it('never retries other 4xx', async () => {
    const before = standIn!.requests.length;
    await rejection(store.download(key('missing-again')));
    expect(standIn!.requests.length - before).toBe(1);
  });
});

describe('CloudStore against a Storage server that misbehaves at the socket level', () => {
  it('times a hanging request out and retries it as cloud_unavailable; reads a body cut mid-way again', async () => {
    const { createServer } = await import('node:http');
    let calls = 0;
    const server = createServer((req, res) => {
      calls++;
      if (calls === 1) return; // hang: never answer
      if (calls === 2) {
        res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': '1000' });
        res.write(new Uint8Array(100));
        setTimeout(() => res.destroy(), 20); // cut the body
        return;
      }
      res.writeHead(200, { 'content-type': 'application/gzip' });
      res.end(new Uint8Array(7));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const flaky = new SupabaseCloudStore(
        { url: `http://127.0.0.1:${port}`, serviceKey: 'k', bucket: 'b', fileSizeLimit: 1, timeoutMs: 300 },
        memoryLogger(),
        { retries: 3, minTimeoutMs: 1, maxTimeoutMs: 5 },
      );
      expect((await flaky.download('x.tar.gz')).byteLength).toBe(7);
      expect(calls).toBe(3);
      calls = 0;
      const once = new SupabaseCloudStore({ url: `http://127.0.0.1:${port}`, serviceKey: 'k', bucket: 'b', fileSizeLimit: 1, timeoutMs: 300 }, memoryLogger(), { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 });
      expect((await rejection(once.download('x.tar.gz'))).code).toBe('cloud_unavailable');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
