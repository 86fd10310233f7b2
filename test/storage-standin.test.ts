import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
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

const client = (key: string, url = standIn.url) => new StorageClient(`${url}/storage/v1`, { apikey: key, Authorization: `Bearer ${key}` });
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

  it('outlives a client gone mid-upload, whether the route read the body or refused it unread', async () => {
    const rejections: unknown[] = [];
    const record = (e: unknown) => rejections.push(e);
    process.on('unhandledRejection', record);
    try {
      for (const bucket of ['gens', 'no-such-bucket']) {
        const { port } = new URL(standIn.url);
        const socket = connect(Number(port), '127.0.0.1');
        await new Promise((r) => socket.once('connect', r));
        const key = standIn.serviceKey;
        socket.write(`POST /storage/v1/object/${bucket}/cut/mid-body HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n0123456789`);
        await new Promise((r) => setTimeout(r, 50));
        socket.destroy();
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(rejections).toEqual([]);
      expect((await files().exists('cut/mid-body')).data).toBe(false);
      await files().upload('cut/after', bytes('still answering'));
      expect(await (await files().download('cut/after')).data?.text()).toBe('still answering');
    } finally {
      process.off('unhandledRejection', record);
    }
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
    // No trailing ';' since storage PR #735 (RFC 6266).
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename=my%20gen.tar.gz; filename*=UTF-8''my%20gen.tar.gz`);
    const [header, claims] = token.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()));
    expect(header).toEqual({ alg: 'HS256' });
    expect(claims).toEqual({ url: 'gens/signed/file.tar.gz', scope: 'download', iat: Math.floor(clock / 1000), exp: Math.floor(clock / 1000) + 60 });
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

describe('as the real server answers (supabase/storage v1.70.6, see SUPABASE_FACTS.md)', () => {
  const files = () => service.from('gens');
  const names = (r: { data: { name: string }[] | null }) => r.data?.map((e) => e.name);
  const json = (body: unknown, method = 'POST') => ({ method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  /** A request without any credentials. */
  const bare = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${standIn.url}/storage/v1${path}`, init);
    return { status: res.status, body: await res.json() };
  };
  const mint = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(Math.floor(clock / 1000))
      .setExpirationTime(Math.floor(clock / 1000) + 3600)
      .sign(new TextEncoder().encode(SECRET));
  const validation = (message: string) => ({ status: 400, body: { statusCode: '400', code: 'InvalidRequest', error: 'Error', message } });
  const tooLarge = { status: 400, statusCode: '413', code: 'EntityTooLarge', message: 'The object exceeded the maximum allowed size' };

  beforeAll(() => files().upload('real/file.bin', bytes('0123456789'), { contentType: 'application/octet-stream' }));

  describe('the global upload limit', () => {
    it('is 50 MB (52,428,800 bytes) by default: a bucket file_size_limit above it is 413 EntityTooLarge', async () => {
      expect(apiError((await service.createBucket('over-limit', { public: false, fileSizeLimit: 52_428_801 })).error)).toEqual(tooLarge);
      expect(await raw('/bucket', json({ name: 'over-limit', file_size_limit: '60MB' }))).toEqual({
        status: 400,
        body: { statusCode: '413', error: 'Payload too large', message: 'The object exceeded the maximum allowed size', code: 'EntityTooLarge' },
      });
      expect((await service.getBucket('over-limit')).error).not.toBeNull();
      expect((await service.createBucket('at-limit', { public: false, fileSizeLimit: 52_428_800 })).error).toBeNull();
      expect(apiError((await service.updateBucket('at-limit', { public: false, fileSizeLimit: 52_428_801 })).error)).toEqual(tooLarge);
      expect((await service.getBucket('at-limit')).data?.file_size_limit).toBe(52_428_800);
    });

    it('refuses every upload above it, raw or multipart, even into a bucket without a limit of its own', async () => {
      const small = await startStorageStandIn({ jwtSecret: SECRET, fileSizeLimit: 1000 });
      try {
        const project = client(small.serviceKey, small.url);
        expect((await project.createBucket('open', { public: false })).error).toBeNull();
        expect(apiError((await project.createBucket('bigger', { public: false, fileSizeLimit: 1001 })).error)).toEqual(tooLarge);
        const open = project.from('open');
        expect((await open.upload('at-limit.bin', new Uint8Array(1000))).error).toBeNull();
        expect(apiError((await open.upload('over.bin', new Uint8Array(1001))).error)).toEqual(tooLarge);
        expect(apiError((await open.upload('over.blob', new Blob([new Uint8Array(1001)]))).error)).toEqual(tooLarge);
        expect((await open.exists('over.bin')).data).toBe(false);
        expect((await open.exists('over.blob')).data).toBe(false);
      } finally {
        await small.close();
      }
    });
  });

  describe('listing', () => {
    it('matches the prefix case-insensitively and sorts by the lower-cased name', async () => {
      for (const name of ['Z-1', 'a', '_x', 'B']) await files().upload(`case/p/${name}`, bytes(name));
      expect(names(await files().list('case/P'))).toEqual(['_x', 'a', 'B', 'Z-1']);
      expect(names(await files().list('CASE/p', { search: 'z' }))).toEqual(['Z-1']);
    });

    it('honours sortBy: its column and its order', async () => {
      for (const name of ['b', 'c', 'a']) {
        clock += 1000;
        await files().upload(`sorted/${name}`, bytes(name));
      }
      expect(names(await files().list('sorted', { sortBy: { column: 'name', order: 'desc' } }))).toEqual(['c', 'b', 'a']);
      expect(names(await files().list('sorted', { sortBy: { column: 'created_at', order: 'asc' } }))).toEqual(['b', 'c', 'a']);
      expect(names(await files().list('sorted', { sortBy: { column: 'updated_at', order: 'desc' } }))).toEqual(['a', 'c', 'b']);
    });

    it('refuses a list without a prefix (storage-js always sends one, "" for the root) and bad options', async () => {
      expect(await raw('/object/list/gens', json({ limit: 10 }))).toEqual(validation("body must have required property 'prefix'"));
      expect(await raw('/object/list/gens', json({ prefix: '', limit: 0 }))).toEqual(validation('body/limit must be >= 1'));
      expect(await raw('/object/list/gens', json({ prefix: '', sortBy: { column: 'size' } }))).toEqual(validation('body/sortBy/column must be equal to one of the allowed values'));
      expect((await raw('/object/list/gens', json({ prefix: '' }))).status).toBe(200);
    });

    it('POST /object/list-v2: full names, a case-sensitive prefix, folders with with_delimiter, cursor paging', async () => {
      for (const name of ['v2/a.txt', 'v2/b.txt', 'v2/sub/c.txt', 'v2/sub/d.txt', 'V2/upper.txt']) await files().upload(name, bytes(name));
      const delimited = await files().listV2({ prefix: 'v2/', with_delimiter: true });
      expect(delimited.data).toEqual({
        hasNext: false,
        folders: [{ key: 'sub', name: 'v2/sub/', id: null, updated_at: null, created_at: null, last_accessed_at: null, metadata: null }],
        objects: [
          { key: 'a.txt', name: 'v2/a.txt', id: expect.any(String), updated_at: expect.any(String), created_at: expect.any(String), last_accessed_at: expect.any(String), metadata: expect.objectContaining({ size: 8 }) },
          expect.objectContaining({ key: 'b.txt', name: 'v2/b.txt' }),
        ],
      });
      const first = await files().listV2({ prefix: 'v2/', limit: 2 });
      expect(first.data).toMatchObject({ hasNext: true, nextCursorKey: 'v2/b.txt', folders: [] });
      expect(first.data?.objects.map((o) => o.name)).toEqual(['v2/a.txt', 'v2/b.txt']);
      expect(first.data?.objects[0]).not.toHaveProperty('key');
      const second = await files().listV2({ prefix: 'v2/', limit: 2, cursor: first.data!.nextCursor });
      expect(second.data).toEqual({ hasNext: false, folders: [], objects: [expect.objectContaining({ name: 'v2/sub/c.txt' }), expect.objectContaining({ name: 'v2/sub/d.txt' })] });
    });
  });

  it('refuses a content type with parameters when the bucket allows the bare type (415)', async () => {
    await service.createBucket('gzip-only', { public: false, allowedMimeTypes: ['application/gzip'] });
    const up = await service.from('gzip-only').upload('a.tar.gz', bytes('x'), { contentType: 'application/gzip; charset=binary' });
    expect(apiError(up.error)).toEqual({ status: 400, statusCode: '415', code: 'InvalidMimeType', message: 'mime type application/gzip; charset=binary is not supported' });
    expect((await service.from('gzip-only').upload('a.tar.gz', bytes('x'), { contentType: 'application/gzip' })).error).toBeNull();
  });

  it('a JWT whose role is not a database role: 500 DatabaseError (a 5xx); an authenticated one without sub: NoSuchKey', async () => {
    const editor = await mint({ role: 'editor', sub: ALICE });
    const databaseError = { statusCode: '500', code: 'DatabaseError', error: 'DatabaseError', message: 'database error, code: 22023' };
    expect(await raw('/bucket', { key: editor })).toEqual({ status: 500, body: databaseError });
    expect(await raw('/object/list/gens', { key: editor, ...json({ prefix: '' }) })).toEqual({ status: 500, body: databaseError });
    expect(apiError((await client(editor).from('gens').download('real/file.bin')).error)).toMatchObject({ status: 500, statusCode: '500', code: 'DatabaseError' });
    const noSub = await mint({ role: 'authenticated' });
    expect(apiError((await client(noSub).from('gens').download('nothing/here.bin')).error)).toMatchObject({ statusCode: '404', code: 'NoSuchKey' });
  });

  it('a request without authorization: 400 from the header schema, except on the routes that do not need it', async () => {
    const missing = validation("headers must have required property 'authorization'");
    expect(await bare('/bucket')).toEqual(missing);
    expect(await bare('/bucket/gens')).toEqual(missing);
    expect(await bare('/object/list/gens', json({ prefix: '' }))).toEqual(missing);
    expect(await bare('/object/sign/gens/real/file.bin', json({ expiresIn: 60 }))).toEqual(missing);
    expect(await bare('/object/authenticated/gens/real/file.bin')).toEqual(missing);
    expect(await bare('/object/gens/real/file.bin', { method: 'POST', body: 'x' })).toEqual(missing);
    // Fastify validates the body before the headers.
    expect(await bare('/object/sign/gens/real/file.bin', json({}))).toEqual(validation("body must have required property 'expiresIn'"));
    // storage-js's download route allows a missing JWT: anonymous, so a private bucket is not found.
    expect(await bare('/object/gens/real/file.bin')).toEqual({ status: 400, body: { statusCode: '404', code: 'NoSuchBucket', error: 'Bucket not found', message: 'Bucket not found' } });
    // list-v2 has no header schema: the JWT check refuses it.
    expect(await bare('/object/list-v2/gens', json({}))).toEqual({ status: 400, body: { statusCode: '403', code: 'AccessDenied', error: 'Unauthorized', message: 'Invalid Compact JWS' } });
    const { data } = await files().createSignedUrl('real/file.bin', 60);
    expect((await fetch(data!.signedUrl)).status).toBe(200);
  });

  it('validation errors carry "error":"Error" and the validator\'s wording; a number in a string is accepted', async () => {
    const path = '/object/sign/gens/real/file.bin';
    expect(await raw(path, json({ expiresIn: 0 }))).toEqual(validation('body/expiresIn must be >= 1'));
    expect(await raw(path, json({}))).toEqual(validation("body must have required property 'expiresIn'"));
    expect(await raw(path, json({ expiresIn: 'soon' }))).toEqual(validation('body/expiresIn must be integer'));
    const accepted = await raw(path, json({ expiresIn: '60' }));
    expect(accepted.status).toBe(200);
    expect(accepted.body.signedURL).toMatch(/^\/object\/sign\/gens\/real\/file\.bin\?token=/);
    expect(await bare(path)).toEqual(validation("querystring must have required property 'token'"));
    expect(await raw('/object/gens', json({ prefixes: [] }, 'DELETE'))).toEqual(validation('body/prefixes must NOT have fewer than 1 items'));
  });

  it('reads file_size_limit strings in decimal units: "1MB" is 1,000,000 bytes', async () => {
    await service.createBucket('units', { public: false, fileSizeLimit: '1MB' });
    expect((await service.getBucket('units')).data?.file_size_limit).toBe(1_000_000);
    for (const [value, stored] of [['1.5KB', 1500], ['20kb', 20_000], ['3B', 3], ['0.05GB', 50_000_000]] as const) {
      expect((await service.updateBucket('units', { public: false, fileSizeLimit: value })).error).toBeNull();
      expect((await service.getBucket('units')).data?.file_size_limit).toBe(stored);
    }
    expect(await raw('/bucket/units', json({ file_size_limit: '1 MB' }, 'PUT'))).toEqual(
      validation(
        'body/file_size_limit must be integer, body/file_size_limit must match pattern "^[0-9]+(?:\\.[0-9]+)?(?:[gG][bB]|[mM][bB]|[kK][bB]|[bB])$", body/file_size_limit must match a schema in anyOf',
      ),
    );
  });

  describe('routes and download headers', () => {
    const at = (path: string, init: RequestInit = {}) => fetch(`${standIn.url}/storage/v1/object${path}`, { ...init, headers: { authorization: `Bearer ${standIn.serviceKey}`, ...init.headers } });

    it('HEAD /object/:bucket/*key answers the headers without a body', async () => {
      const head = await at('/gens/real/file.bin', { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(Object.fromEntries(['content-length', 'content-type', 'accept-ranges', 'x-robots-tag'].map((h) => [h, head.headers.get(h)]))).toEqual({
        'content-length': '10',
        'content-type': 'application/octet-stream',
        'accept-ranges': 'bytes',
        'x-robots-tag': 'none',
      });
      expect(head.headers.get('etag')).toMatch(/^"[0-9a-f]{32}"$/);
      expect(await head.text()).toBe('');
      expect((await at('/gens/real/missing.bin', { method: 'HEAD' })).status).toBe(400);
    });

    it('downloads carry x-robots-tag: none; Range answers 206; a matching If-None-Match answers 304', async () => {
      const full = await at('/gens/real/file.bin');
      expect(full.headers.get('x-robots-tag')).toBe('none');
      const etag = full.headers.get('etag')!;
      expect(await full.text()).toBe('0123456789');
      const part = await at('/gens/real/file.bin', { headers: { range: 'bytes=2-5' } });
      expect([part.status, part.headers.get('content-range'), part.headers.get('content-length'), await part.text()]).toEqual([206, 'bytes 2-5/10', '4', '2345']);
      const tail = await at('/gens/real/file.bin', { headers: { range: 'bytes=-3' } });
      expect([tail.status, await tail.text()]).toEqual([206, '789']);
      const bad = await at('/gens/real/file.bin', { headers: { range: 'bytes=20-' } });
      expect([bad.status, await bad.json()]).toEqual([416, { statusCode: '416', code: 'InvalidRange', error: 'invalid_range', message: 'invalid range provided' }]);
      const cached = await at('/gens/real/file.bin', { headers: { 'if-none-match': etag } });
      expect([cached.status, await cached.text()]).toEqual([304, '']);
      expect((await at('/gens/real/file.bin', { headers: { 'if-none-match': '"stale"' } })).status).toBe(200);
      const { data } = await files().createSignedUrl('real/file.bin', 60);
      const signed = await fetch(data!.signedUrl, { headers: { range: 'bytes=0-0' } });
      expect([signed.status, signed.headers.get('x-robots-tag'), await signed.text()]).toEqual([206, 'none', '0']);
    });

    it('DELETE /object/:bucket/*key removes one object; a missing one is NoSuchKey', async () => {
      await files().upload('real/one-to-delete.bin', bytes('x'));
      expect([(await at('/gens/real/one-to-delete.bin', { method: 'DELETE' })).status]).toEqual([200]);
      expect((await files().exists('real/one-to-delete.bin')).data).toBe(false);
      const again = await at('/gens/real/one-to-delete.bin', { method: 'DELETE' });
      expect([again.status, await again.json()]).toEqual([400, { statusCode: '404', code: 'NoSuchKey', error: 'not_found', message: 'Object not found' }]);
    });
  });

  it('signed uploads: a token scoped "upload" answered with {url, token}; the PUT answers {Key}; tokens cannot cross scopes', async () => {
    const signed = await raw('/object/upload/sign/gens/real/via-upload-url.bin', { method: 'POST' });
    expect(Object.keys(signed.body)).toEqual(['url', 'token']);
    const token = signed.body.token as string;
    expect(signed.body.url).toBe(`/object/upload/sign/gens/real/via-upload-url.bin?token=${token}`);
    expect(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())).toMatchObject({ url: 'gens/real/via-upload-url.bin', upsert: false, scope: 'upload' });
    const put = await fetch(`${standIn.url}/storage/v1${signed.body.url}`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    expect([put.status, await put.json()]).toEqual([200, { Key: 'gens/real/via-upload-url.bin' }]);
    const download = await files().createSignedUrl('real/via-upload-url.bin', 60);
    const downloadToken = new URL(download.data!.signedUrl).searchParams.get('token')!;
    const replay = await fetch(`${standIn.url}/storage/v1/object/upload/sign/gens/real/via-upload-url.bin?token=${downloadToken}`, { method: 'PUT', body: 'evil' });
    expect([replay.status, await replay.json()]).toEqual([400, { statusCode: '400', code: 'InvalidSignature', error: 'InvalidSignature', message: 'Token is not scoped for upload' }]);
    expect(await (await fetch(`${standIn.url}/storage/v1/object/sign/gens/real/via-upload-url.bin?token=${token}`)).json()).toMatchObject({ message: 'Token is not scoped for download' });
  });

  it('info returns metadata {} or the x-metadata sent; remove answers rows with owner "" and user_metadata {}', async () => {
    expect((await files().info('real/file.bin')).data?.metadata).toEqual({});
    await files().upload('real/with-metadata.bin', bytes('m'), { metadata: { generation: 'g1', files: 3 } });
    expect((await files().info('real/with-metadata.bin')).data?.metadata).toEqual({ generation: 'g1', files: 3 });
    await files().upload('real/removed.bin', bytes('r'));
    const { data } = await files().remove(['real/removed.bin']);
    expect(data).toEqual([
      {
        name: 'real/removed.bin',
        bucket_id: 'gens',
        owner: '',
        owner_id: '',
        version: expect.any(String),
        id: expect.any(String),
        updated_at: expect.any(String),
        created_at: expect.any(String),
        last_accessed_at: expect.any(String),
        metadata: expect.objectContaining({ size: 1 }),
        user_metadata: {},
      },
    ]);
  });

  it('GET /bucket/:id has no type (the listing has); deleting a non-empty bucket is ResourceNotEmpty; emptying is "queued"', async () => {
    expect((await raw('/bucket/gens')).body).not.toHaveProperty('type');
    expect((await service.listBuckets()).data?.find((b) => b.id === 'gens')).toMatchObject({ type: 'STANDARD' });
    await service.createBucket('full', { public: false });
    await service.from('full').upload('x', bytes('x'));
    expect(await raw('/bucket/full', { method: 'DELETE' })).toEqual({
      status: 400,
      body: { statusCode: '409', code: 'ResourceNotEmpty', error: 'ResourceNotEmpty', message: 'The bucket you tried to delete is not empty' },
    });
    expect((await service.emptyBucket('full')).data).toEqual({ message: 'Empty bucket has been queued. Completion may take up to an hour.' });
    expect((await service.deleteBucket('full')).error).toBeNull();
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
