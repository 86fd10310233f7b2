import { writeFile } from 'node:fs/promises';
import { StorageApiError, StorageClient, StorageUnknownError } from '@supabase/storage-js';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

const SECRET = 'stand-in-jwt-secret-with-at-least-32-characters';
const ALICE = '11111111-1111-4111-8111-111111111111';
const bytes = (text: string) => new TextEncoder().encode(text);

let clock = Date.now();
let standIn: StandIn;
let service: StorageClient;

const client = (key: string) => new StorageClient(`${standIn.url}/storage/v1`, { apikey: key, Authorization: `Bearer ${key}` });
const userToken = (sub: string) =>
  new SignJWT({ role: 'authenticated', sub })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(Math.floor(clock / 1000))
    .setExpirationTime(Math.floor(clock / 1000) + 3600)
    .sign(new TextEncoder().encode(SECRET));
/** The raw answer of the stand-in, for asserting on the exact bodies. */
const raw = async (path: string, init: RequestInit & { key?: string } = {}) => {
  const key = init.key ?? standIn.serviceKey;
  const res = await fetch(`${standIn.url}/storage/v1${path}`, { ...init, headers: { apikey: key, authorization: `Bearer ${key}`, ...init.headers } });
  return { status: res.status, body: await res.json() };
};
/** storage-js's error, which must be a StorageApiError. */
const apiError = (error: unknown) => {
  expect(error).toBeInstanceOf(StorageApiError);
  const e = error as StorageApiError;
  return { status: e.status, statusCode: e.statusCode, code: e.code, message: e.message };
};

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: SECRET, now: () => clock, canRead: (user, _bucket, key) => key.startsWith(`${user}/`) });
  service = client(standIn.serviceKey);
  await service.createBucket('gens', { public: false });
});
afterAll(() => standIn.close());
beforeEach(() => standIn.faults.clear());

describe('buckets', () => {
  it('creates, refuses duplicates, gets, and reports missing buckets like the real server', async () => {
    expect(await service.createBucket('b1', { public: true })).toEqual({ data: { name: 'b1' }, error: null });
    const dup = await service.createBucket('b1');
    expect(apiError(dup.error)).toEqual({ status: 400, statusCode: '409', code: 'BucketAlreadyExists', message: 'The resource already exists' });
    const { data } = await service.getBucket('b1');
    expect(data).toMatchObject({ id: 'b1', name: 'b1', public: true, file_size_limit: null, allowed_mime_types: null });
    expect((await service.listBuckets()).data?.map((b) => b.id)).toEqual(['gens', 'b1']);
    expect(apiError((await service.getBucket('nope')).error)).toEqual({ status: 400, statusCode: '404', code: 'NoSuchBucket', message: 'Bucket not found' });
    expect(await raw('/bucket/nope')).toEqual({
      status: 400,
      body: { statusCode: '404', error: 'Bucket not found', message: 'Bucket not found', code: 'NoSuchBucket' },
    });
    expect(await service.updateBucket('b1', { public: false })).toEqual({ data: { message: 'Successfully updated' }, error: null });
    expect((await service.getBucket('b1')).data?.public).toBe(false);
    expect(await service.deleteBucket('b1')).toEqual({ data: { message: 'Successfully deleted' }, error: null });
  });

  it('enforces file_size_limit and allowed_mime_types with the real bodies', async () => {
    await service.createBucket('limited', { public: false, fileSizeLimit: 4, allowedMimeTypes: ['application/gzip'] });
    const files = service.from('limited');
    const big = await files.upload('a.gz', bytes('12345'), { contentType: 'application/gzip' });
    expect(apiError(big.error)).toEqual({ status: 400, statusCode: '413', code: 'EntityTooLarge', message: 'The object exceeded the maximum allowed size' });
    const mime = await files.upload('a.txt', bytes('1'), { contentType: 'text/plain' });
    expect(apiError(mime.error)).toEqual({ status: 400, statusCode: '415', code: 'InvalidMimeType', message: 'mime type text/plain is not supported' });
    expect((await files.upload('a.gz', bytes('1234'), { contentType: 'application/gzip' })).error).toBeNull();
  });
});

describe('objects', () => {
  const files = () => service.from('gens');

  it('uploads, refuses a duplicate without upsert, upserts, downloads the same bytes, and reports info', async () => {
    const up = await files().upload('u/one.bin', bytes('first'), { contentType: 'application/octet-stream' });
    expect(up.error).toBeNull();
    expect(up.data).toMatchObject({ path: 'u/one.bin', fullPath: 'gens/u/one.bin' });

    const dup = await files().upload('u/one.bin', bytes('again'));
    expect(apiError(dup.error)).toEqual({ status: 400, statusCode: '409', code: 'KeyAlreadyExists', message: 'The resource already exists' });
    const dupBody = await raw('/object/gens/u/one.bin', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
    expect(dupBody.body).toEqual({ statusCode: '409', error: 'Duplicate', message: 'The resource already exists', code: 'KeyAlreadyExists' });

    const payload = new Uint8Array([0, 1, 2, 250, 251, 252]);
    expect((await files().upload('u/one.bin', payload, { upsert: true, contentType: 'application/gzip' })).error).toBeNull();
    const down = await files().download('u/one.bin');
    expect(new Uint8Array(await down.data!.arrayBuffer())).toEqual(payload);

    const info = await files().info('u/one.bin');
    expect(info.data).toMatchObject({ name: 'u/one.bin', bucketId: 'gens', size: 6, contentType: 'application/gzip', cacheControl: 'max-age=3600' });
    expect(info.data?.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect((await files().exists('u/one.bin')).data).toBe(true);
    expect((await files().exists('u/none.bin')).data).toBe(false);

    const missing = await files().download('u/none.bin');
    expect(apiError(missing.error)).toEqual({ status: 400, statusCode: '404', code: 'NoSuchKey', message: 'Object not found' });
    expect(await raw('/object/authenticated/gens/u/none.bin')).toEqual({
      status: 400,
      body: { statusCode: '404', error: 'not_found', message: 'Object not found', code: 'NoSuchKey' },
    });
  });

  it('stores Blob uploads (sent as multipart) with the Blob type', async () => {
    await files().upload('blob/a.json', new Blob(['{"a":1}'], { type: 'application/json' }));
    expect((await files().info('blob/a.json')).data).toMatchObject({ size: 7, contentType: 'application/json' });
    expect(await (await files().download('blob/a.json')).data?.text()).toBe('{"a":1}');
  });

  it('serves the bytes on disk, so tests can corrupt them', async () => {
    await files().upload('corrupt/x', bytes('good'));
    await writeFile(standIn.objectPath('gens', 'corrupt/x'), 'evil');
    expect(await (await files().download('corrupt/x')).data?.text()).toBe('evil');
  });

  it('lists one folder level, sorted by name, with offset paging and search', async () => {
    for (const name of ['c.txt', 'a.txt', 'b.txt', 'sub/deep.txt']) await files().upload(`listing/${name}`, bytes(name));
    const all = await files().list('listing');
    expect(all.data?.map((e) => e.name)).toEqual(['a.txt', 'b.txt', 'c.txt', 'sub']);
    expect(all.data?.[0]).toMatchObject({ id: expect.any(String), metadata: { size: 5, mimetype: 'text/plain;charset=UTF-8', eTag: expect.any(String) } });
    expect(all.data?.[3]).toMatchObject({ name: 'sub', id: null, metadata: null });
    expect((await files().list('listing/', { limit: 2, offset: 1 })).data?.map((e) => e.name)).toEqual(['b.txt', 'c.txt']);
    expect((await files().list('listing', { search: 'b' })).data?.map((e) => e.name)).toEqual(['b.txt']);
    expect((await files().list('listing/sub')).data?.map((e) => e.name)).toEqual(['deep.txt']);
  });

  it('removes objects, and removing them again returns []', async () => {
    await files().upload('gone/a', bytes('a'));
    const first = await files().remove(['gone/a', 'gone/never']);
    expect(first.data?.map((o) => o.name)).toEqual(['gone/a']);
    expect(await files().remove(['gone/a'])).toEqual({ data: [], error: null });
    expect((await files().exists('gone/a')).data).toBe(false);
  });
});

describe('signed URLs', () => {
  const files = () => service.from('gens');
  beforeAll(() => files().upload('signed/file.tar.gz', bytes('archive'), { contentType: 'application/gzip' }));

  it('serves the object without an auth header and names the download', async () => {
    const { data, error } = await files().createSignedUrl('signed/file.tar.gz', 60, { download: 'my gen.tar.gz' });
    expect(error).toBeNull();
    const token = new URL(data!.signedUrl).searchParams.get('token')!;
    const res = await fetch(data!.signedUrl);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('archive');
    expect(res.headers.get('content-type')).toBe('application/gzip');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename=my%20gen.tar.gz; filename*=UTF-8''my%20gen.tar.gz;`);
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(claims).toEqual({ url: 'gens/signed/file.tar.gz', iat: Math.floor(clock / 1000), exp: Math.floor(clock / 1000) + 60 });
  });

  it('refuses an expired URL and a token for another key', async () => {
    const { data } = await files().createSignedUrl('signed/file.tar.gz', 60);
    const other = new URL(data!.signedUrl.replace('file.tar.gz', 'other.tar.gz'));
    const wrongKey = await fetch(other);
    expect([wrongKey.status, await wrongKey.json()]).toEqual([400, { statusCode: '400', code: 'InvalidSignature', error: 'InvalidSignature', message: 'Invalid signature' }]);
    clock += 61_000;
    try {
      const res = await fetch(data!.signedUrl);
      expect([res.status, await res.json()]).toEqual([
        400,
        { statusCode: '400', error: 'InvalidJWT', message: '"exp" claim timestamp check failed', code: 'InvalidJWT' },
      ]);
    } finally {
      clock -= 61_000;
    }
  });

  it('needs an existing object; createSignedUrls reports the missing ones', async () => {
    const missing = await files().createSignedUrl('signed/nope', 60);
    expect(apiError(missing.error).code).toBe('NoSuchKey');
    const many = await files().createSignedUrls(['signed/file.tar.gz', 'signed/nope'], 60);
    expect(many.data?.map((d) => [d.path, d.error, d.signedUrl !== null])).toEqual([
      ['signed/file.tar.gz', null, true],
      ['signed/nope', 'Either the object does not exist or you do not have access to it', false],
    ]);
  });

  it('uploads through a signed upload URL', async () => {
    const { data } = await files().createSignedUploadUrl('signed/upload.bin');
    expect((await files().uploadToSignedUrl('signed/upload.bin', data!.token, bytes('via token'))).error).toBeNull();
    expect(await (await files().download('signed/upload.bin')).data?.text()).toBe('via token');
  });
});

describe('a user token (role authenticated)', () => {
  beforeAll(async () => {
    await service.from('gens').upload(`${ALICE}/mine.txt`, bytes('mine'));
    await service.from('gens').upload('someone-else/theirs.txt', bytes('theirs'));
  });

  it('reads what canRead allows, and nothing else looks like it exists', async () => {
    const alice = client(await userToken(ALICE)).from('gens');
    expect(await (await alice.download(`${ALICE}/mine.txt`)).data?.text()).toBe('mine');
    expect((await alice.info(`${ALICE}/mine.txt`)).data?.size).toBe(4);
    expect((await alice.createSignedUrl(`${ALICE}/mine.txt`, 60)).error).toBeNull();
    expect(apiError((await alice.download('someone-else/theirs.txt')).error)).toMatchObject({ statusCode: '404', code: 'NoSuchKey' });
    expect(apiError((await alice.createSignedUrl('someone-else/theirs.txt', 60)).error).code).toBe('NoSuchKey');
    expect(await alice.list('someone-else')).toEqual({ data: [], error: null });
    expect((await alice.list()).data?.map((e) => e.name)).toEqual([ALICE]);
    expect(await alice.remove([`${ALICE}/mine.txt`, 'someone-else/theirs.txt'])).toEqual({ data: [], error: null });
    expect((await service.from('gens').exists(`${ALICE}/mine.txt`)).data).toBe(true);
  });

  it('cannot upload: 403 AccessDenied in a 400 answer', async () => {
    const token = await userToken(ALICE);
    const up = await client(token).from('gens').upload(`${ALICE}/new.txt`, bytes('x'));
    expect(apiError(up.error)).toEqual({ status: 400, statusCode: '403', code: 'AccessDenied', message: 'new row violates row-level security policy' });
    expect(await raw(`/object/gens/${ALICE}/new.txt`, { method: 'POST', key: token, body: 'x', headers: { 'content-type': 'text/plain' } })).toEqual({
      status: 400,
      body: { statusCode: '403', error: 'Unauthorized', message: 'new row violates row-level security policy', code: 'AccessDenied' },
    });
  });

  it('a bad or expired JWT: AccessDenied with jose\'s message, or anonymous on the download/info routes', async () => {
    const forged = await new SignJWT({ role: 'service_role' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('another-secret-another-secret-another'));
    expect(await raw('/bucket', { key: forged })).toEqual({
      status: 400,
      body: { statusCode: '403', error: 'Unauthorized', message: 'signature verification failed', code: 'AccessDenied' },
    });
    const token = await userToken(ALICE);
    clock += 3601_000;
    try {
      const files = client(token).from('gens');
      // list needs a valid JWT; info and download go to routes that treat a bad JWT as anonymous (private bucket: NoSuchBucket).
      expect(apiError((await files.list(ALICE)).error)).toMatchObject({ statusCode: '403', code: 'AccessDenied', message: '"exp" claim timestamp check failed' });
      expect(apiError((await files.info(`${ALICE}/mine.txt`)).error)).toMatchObject({ statusCode: '404', code: 'NoSuchBucket' });
      expect(apiError((await files.download(`${ALICE}/mine.txt`)).error)).toMatchObject({ statusCode: '404', code: 'NoSuchBucket' });
    } finally {
      clock -= 3601_000;
    }
  });
});

describe('faults', () => {
  it('failNext(2, 503): two calls fail with 503, the third succeeds', async () => {
    standIn.faults.failNext(2, 503);
    for (let i = 0; i < 2; i++) {
      const { error } = await service.listBuckets();
      expect(apiError(error)).toMatchObject({ status: 503, statusCode: '503' });
    }
    expect((await service.listBuckets()).error).toBeNull();
    expect(standIn.requests.slice(-3).map((r) => r.status)).toEqual([503, 503, 200]);
  });

  it('failNext(1, 429) surfaces 429', async () => {
    standIn.faults.failNext(1, 429);
    expect(apiError((await service.from('gens').download('u/one.bin')).error)).toMatchObject({ status: 429, statusCode: '429', code: 'SlowDown' });
  });

  it('dropNext: the client sees a network error', async () => {
    standIn.faults.dropNext(2);
    const { error } = await service.getBucket('gens');
    expect(error).toBeInstanceOf(StorageUnknownError);
    expect(error?.message).toBe('fetch failed');
    await expect(fetch(`${standIn.url}/storage/v1/bucket`)).rejects.toThrow(TypeError);
    expect((await service.getBucket('gens')).error).toBeNull();
    expect(standIn.requests.slice(-3).map((r) => r.status)).toEqual([0, 0, 200]);
  });

  it('delayNext delays answers', async () => {
    standIn.faults.delayNext(1, 300);
    const started = performance.now();
    expect((await service.listBuckets()).error).toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    const again = performance.now();
    await service.listBuckets();
    expect(performance.now() - again).toBeLessThan(290);
  });

  it('failShare fails that share of requests, the same ones for the same seed, and counts them by kind', async () => {
    const run = async () => {
      standIn.faults.clear();
      standIn.faults.failShare(0.5, [500, 503], { seed: 7 });
      const statuses: number[] = [];
      for (let i = 0; i < 40; i++) {
        const { error } = await service.listBuckets();
        statuses.push(error ? Number((error as StorageApiError).status) : 200);
      }
      return statuses;
    };
    const before = { ...standIn.faults.injected };
    const first = await run();
    const failed = first.filter((s) => s !== 200).length;
    expect(failed).toBeGreaterThan(10);
    expect(failed).toBeLessThan(30);
    expect(new Set(first)).toEqual(new Set([200, 500, 503]));
    expect((standIn.faults.injected['500'] ?? 0) + (standIn.faults.injected['503'] ?? 0) - (before['500'] ?? 0) - (before['503'] ?? 0)).toBe(failed);
    expect(await run()).toEqual(first);
  });

  it("'cut' sends half the body, then closes: a download fails mid-body; 'hang' answers only after the wait, having done the work", async () => {
    await service.from('gens').upload('u/cut.bin', bytes('x'.repeat(100_000)), { upsert: true });
    standIn.faults.failShare(1, ['cut']);
    const res = await fetch(`${standIn.url}/storage/v1/object/gens/u/cut.bin`, { headers: { authorization: `Bearer ${standIn.serviceKey}` } });
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
    standIn.faults.failShare(1, ['hang'], { hangMs: 400 });
    const started = performance.now();
    const upload = fetch(`${standIn.url}/storage/v1/object/gens/u/hang.bin`, {
      method: 'POST',
      headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/octet-stream', 'x-upsert': 'true' },
      body: bytes('late'),
      signal: AbortSignal.timeout(100),
    });
    await expect(upload).rejects.toThrow(/timeout|aborted/i);
    expect(performance.now() - started).toBeLessThan(300);
    standIn.faults.clear();
    await new Promise((r) => setTimeout(r, 500));
    const back = await service.from('gens').download('u/hang.bin');
    expect(await back.data?.text()).toBe('late');
  });
});

describe('network shaping and a stand-in in its own process', () => {
  it('adds latency plus body time at the given bandwidth; the admin routes report requests and take faults', async () => {
    const { spawnStandIn } = await import('./storage-standin/process.ts');
    const proc = await spawnStandIn({ jwtSecret: SECRET, latencyMs: 100, bytesPerSecond: 1_000_000 });
    try {
      const far = new StorageClient(`${proc.url}/storage/v1`, { apikey: proc.serviceKey, Authorization: `Bearer ${proc.serviceKey}` });
      let t = performance.now();
      expect((await far.createBucket('b')).error).toBeNull();
      expect(performance.now() - t).toBeGreaterThanOrEqual(95);
      t = performance.now();
      expect((await far.from('b').upload('k', new Uint8Array(300_000))).error).toBeNull(); // 100 ms + 300 ms of body
      expect(performance.now() - t).toBeGreaterThanOrEqual(390);
      await proc.faults({ failShare: [1, [503]] });
      expect(apiError((await far.getBucket('b')).error)).toMatchObject({ status: 503 });
      const seen = await proc.requests();
      expect(seen.requests.map((r) => `${r.method} ${r.status}`)).toEqual(['POST 200', 'POST 200', 'GET 503']);
      expect(seen.injected).toEqual({ 503: 1 });
      await proc.clearRequests();
      expect((await proc.requests()).requests).toEqual([]);
    } finally {
      await proc.close();
    }
  }, 20_000);
});
