import type { Caller, Jwt } from './auth.ts';
import { ERRORS } from './errors.ts';
import type { Bucket, Store, StoredObject } from './store.ts';

/** A request as the routes see it: path segments after `/storage/v1`, already percent-decoded. */
export interface Incoming {
  method: string;
  segments: string[];
  query: URLSearchParams;
  headers: Record<string, string | undefined>;
  json(): Promise<Record<string, unknown>>;
  /** The uploaded file: the raw body (content-type from the header) or the first file of a multipart form. */
  file(): Promise<{ bytes: Uint8Array; mimetype: string; cacheControl: string }>;
}

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body: unknown;
}

export interface Context {
  store: Store;
  jwt: Jwt;
  canRead: (userId: string, bucket: string, key: string) => boolean | Promise<boolean>;
}

const NOT_SIGNED = 'Either the object does not exist or you do not have access to it';
// Mirrors isValidBucketName / isValidKey in supabase/storage (src/storage/limits.ts).
const BUCKET_NAME = /^[\w!.*'() &$@=;:+,?-]{1,100}$/;
const OBJECT_KEY = /^(\w|\/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)+$/;

/** Dispatches one request; throws StorageFailure for the real error bodies. `null`: no such route. */
export async function route(ctx: Context, req: Incoming): Promise<Reply | null> {
  const [area, ...rest] = req.segments;
  const auth = (allowInvalidJwt = false) => ctx.jwt.caller(req.headers.authorization, allowInvalidJwt);
  const m = req.method;
  if (area === 'bucket') {
    const [id, action] = rest;
    if (m === 'GET' && id === undefined) return listBuckets(ctx, await auth());
    if (m === 'POST' && id === undefined) return createBucket(ctx, await auth(), await req.json());
    if (id === undefined) return null;
    if (m === 'GET' && !action) return { body: visibleBucket(ctx, await auth(), id) };
    if (m === 'PUT' && !action) return updateBucket(ctx, await auth(), id, await req.json());
    if (m === 'DELETE' && !action) return deleteBucket(ctx, await auth(), id);
    if (m === 'POST' && action === 'empty') return emptyBucket(ctx, await auth(), id);
    return null;
  }
  if (area !== 'object') return null;
  const [first, second, ...tail] = rest;
  const objectAt = (parts: string[]) => (parts.length >= 2 ? { bucket: parts[0]!, key: parts.slice(1).join('/') } : null);
  if (m === 'POST' && first === 'list' && second) return list(ctx, await auth(), second, await req.json());
  if (first === 'sign' && second) {
    const at = objectAt([second, ...tail]);
    if (m === 'GET' && at) return getSigned(ctx, req, at.bucket, at.key);
    if (m === 'POST' && at) return sign(ctx, await auth(), at.bucket, at.key, await req.json());
    if (m === 'POST') return signMany(ctx, await auth(), second, await req.json());
    return null;
  }
  if (first === 'upload' && second === 'sign') {
    const at = objectAt(tail);
    if (!at) return null;
    if (m === 'POST') return signUpload(ctx, await auth(), at.bucket, at.key, req.headers['x-upsert'] === 'true');
    if (m === 'PUT') return uploadSigned(ctx, req, at.bucket, at.key);
    return null;
  }
  if (m === 'GET' && first === 'info') {
    if (second === 'authenticated') return withObject(ctx, await auth(), objectAt(tail), info);
    if (second === 'public') return withObject(ctx, { role: 'anon' }, objectAt(tail), info, true);
    return withObject(ctx, await auth(true), objectAt(rest.slice(1)), info);
  }
  if (m === 'GET') {
    const download = (o: StoredObject) => serve(ctx, o, req.query.get('download'));
    if (first === 'authenticated') return withObject(ctx, await auth(), objectAt([second!, ...tail]), download);
    if (first === 'public') return withObject(ctx, { role: 'anon' }, objectAt([second!, ...tail]), download, true);
    return withObject(ctx, await auth(true), objectAt(rest), download);
  }
  if (m === 'DELETE' && first && second === undefined) return removeMany(ctx, await auth(), first, await req.json());
  const at = objectAt(rest);
  if (at && (m === 'POST' || m === 'PUT')) {
    // PUT (storage-js `update`) replaces; POST inserts unless `x-upsert: true`.
    return upload(ctx, await auth(), req, at.bucket, at.key, m === 'PUT' || req.headers['x-upsert'] === 'true');
  }
  return null;
}

// ---- policies ---------------------------------------------------------------------------------------------

/** What `storage.objects` SELECT policies let this caller see. */
async function rlsCanRead(ctx: Context, caller: Caller, bucket: string, key: string): Promise<boolean> {
  if (caller.role === 'service_role') return true;
  return caller.role === 'authenticated' && (await ctx.canRead(caller.sub, bucket, key));
}

/** Bucket rows are only visible to the service role (no `storage.buckets` policies, as in our project). */
function visibleBucket(ctx: Context, caller: Caller, id: string): Bucket {
  if (caller.role !== 'service_role') throw ERRORS.noSuchBucket();
  return ctx.store.bucket(id);
}

// ---- buckets ------------------------------------------------------------------------------------------------

function listBuckets(ctx: Context, caller: Caller): Reply {
  return { body: caller.role === 'service_role' ? [...ctx.store.buckets.values()] : [] };
}

function createBucket(ctx: Context, caller: Caller, body: Record<string, unknown>): Reply {
  const id = String(body.id ?? body.name ?? '');
  if (!BUCKET_NAME.test(id) || id.trim() !== id) throw ERRORS.invalidBucketName();
  if (caller.role !== 'service_role') throw ERRORS.rlsViolation();
  if (ctx.store.buckets.has(id)) throw ERRORS.bucketAlreadyExists();
  const at = ctx.store.timestamp();
  ctx.store.buckets.set(id, {
    id,
    name: id,
    owner: '',
    public: body.public === true,
    type: 'STANDARD',
    file_size_limit: fileSizeLimit(body.file_size_limit),
    allowed_mime_types: (body.allowed_mime_types as string[] | undefined) ?? null,
    created_at: at,
    updated_at: at,
  });
  return { body: { name: id } };
}

function updateBucket(ctx: Context, caller: Caller, id: string, body: Record<string, unknown>): Reply {
  const bucket = visibleBucket(ctx, caller, id);
  if (typeof body.public === 'boolean') bucket.public = body.public;
  if ('file_size_limit' in body) bucket.file_size_limit = fileSizeLimit(body.file_size_limit);
  if ('allowed_mime_types' in body) bucket.allowed_mime_types = (body.allowed_mime_types as string[] | undefined) ?? null;
  bucket.updated_at = ctx.store.timestamp();
  return { body: { message: 'Successfully updated' } };
}

async function deleteBucket(ctx: Context, caller: Caller, id: string): Promise<Reply> {
  visibleBucket(ctx, caller, id);
  if (ctx.store.objectsIn(id).length > 0) throw ERRORS.bucketNotEmpty();
  ctx.store.buckets.delete(id);
  return { body: { message: 'Successfully deleted' } };
}

async function emptyBucket(ctx: Context, caller: Caller, id: string): Promise<Reply> {
  visibleBucket(ctx, caller, id);
  for (const o of ctx.store.objectsIn(id)) await ctx.store.delete(id, o.name);
  return { body: { message: 'Successfully emptied' } };
}

/** `file_size_limit`: bytes, or the real server's "20GB / 20MB / 30KB / 3B" strings. */
function fileSizeLimit(value: unknown): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  const match = /^(\d+)\s*(GB|MB|KB|B)$/i.exec(String(value));
  if (!match) throw ERRORS.invalidRequest('Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B');
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[match[2]!.toLowerCase() as 'b'];
  return Number(match[1]) * unit;
}

// ---- objects ------------------------------------------------------------------------------------------------

/**
 * Read routes: the bucket is looked up as superuser (missing, or private for an unauthenticated caller -> NoSuchBucket);
 * public buckets skip RLS; otherwise an object the caller may not SELECT is NoSuchKey.
 */
async function withObject(
  ctx: Context,
  caller: Caller,
  at: { bucket: string; key: string } | null,
  render: (obj: StoredObject) => Reply | Promise<Reply>,
  publicRoute = false,
): Promise<Reply | null> {
  if (!at) return null;
  const bucket = ctx.store.buckets.get(at.bucket);
  if (!bucket || ((publicRoute || caller.role === 'anon') && !bucket.public)) throw ERRORS.noSuchBucket();
  const obj = ctx.store.object(at.bucket, at.key);
  if (!obj || !(bucket.public || (await rlsCanRead(ctx, caller, at.bucket, at.key)))) throw ERRORS.noSuchKey();
  return render(obj);
}

function info(o: StoredObject): Reply {
  return {
    headers: { etag: o.metadata.eTag, 'last-modified': new Date(o.updated_at).toUTCString(), 'cache-control': o.metadata.cacheControl },
    body: {
      id: o.id,
      name: o.name,
      version: o.version,
      bucket_id: o.bucket_id,
      size: o.metadata.size,
      content_type: o.metadata.mimetype,
      cache_control: o.metadata.cacheControl,
      etag: o.metadata.eTag,
      metadata: o.user_metadata,
      last_modified: o.updated_at,
      created_at: o.created_at,
    },
  };
}

/** The bytes with the real renderer's headers (`download` -> Content-Disposition as the real server writes it). */
async function serve(ctx: Context, o: StoredObject, download: string | null, expires?: string): Promise<Reply> {
  const bytes = await ctx.store.read(o.bucket_id, o.name);
  const headers: Record<string, string> = {
    'content-type': o.metadata.mimetype.includes('text/html') ? 'text/plain' : o.metadata.mimetype,
    etag: o.metadata.eTag,
    'last-modified': new Date(o.updated_at).toUTCString(),
    'accept-ranges': 'bytes',
  };
  if (expires) headers.expires = expires;
  else headers['cache-control'] = o.metadata.cacheControl;
  if (download === '') headers['content-disposition'] = 'attachment;';
  else if (download !== null) {
    const name = encodeURIComponent(download);
    headers['content-disposition'] = `attachment; filename=${name}; filename*=UTF-8''${name};`;
  }
  return { headers, body: bytes };
}

async function upload(ctx: Context, caller: Caller, req: Incoming, bucketId: string, key: string, upsert: boolean): Promise<Reply> {
  const row = await store(ctx, caller, req, bucketId, key, upsert);
  return { body: { Id: row.id, Key: `${bucketId}/${key}` } };
}

/** The real upload pipeline: key check, bucket (as superuser), RLS, mime type, size, then insert or upsert. */
async function store(ctx: Context, caller: Caller, req: Incoming, bucketId: string, key: string, upsert: boolean, owner?: string) {
  if (!OBJECT_KEY.test(key)) throw ERRORS.invalidKey(key);
  const bucket = ctx.store.bucket(bucketId);
  if (caller.role !== 'service_role') throw ERRORS.rlsViolation();
  const file = await req.file();
  if (bucket.allowed_mime_types?.length && !mimeAllowed(file.mimetype, bucket.allowed_mime_types)) throw ERRORS.invalidMimeType(file.mimetype);
  if (bucket.file_size_limit !== null && file.bytes.byteLength > bucket.file_size_limit) throw ERRORS.entityTooLarge();
  if (!upsert && ctx.store.object(bucketId, key)) throw ERRORS.keyAlreadyExists();
  return ctx.store.put(bucketId, key, file.bytes, file.mimetype, file.cacheControl, owner ?? null);
}

/** `type/sub` or `type/*` entries; parameters (`;charset=...`) are ignored. */
function mimeAllowed(mimetype: string, allowed: string[]): boolean {
  const [type, sub] = mimetype.split(';')[0]!.trim().toLowerCase().split('/');
  return allowed.some((entry) => {
    const [t, s] = entry.toLowerCase().split('/');
    return t === type && (s === '*' || s === sub);
  });
}

async function list(ctx: Context, caller: Caller, bucketId: string, body: Record<string, unknown>): Promise<Reply> {
  const prefix = String(body.prefix ?? '').replace(/^\/+|\/+$/g, '');
  const base = prefix ? `${prefix}/` : '';
  const search = String(body.search ?? '').toLowerCase();
  const limit = Number(body.limit ?? 100);
  const offset = Number(body.offset ?? 0);
  const descending = (body.sortBy as { order?: string } | undefined)?.order === 'desc';
  const entries = new Map<string, unknown>();
  for (const o of ctx.store.objectsIn(bucketId)) {
    if (!o.name.startsWith(base) || !(await rlsCanRead(ctx, caller, bucketId, o.name))) continue;
    const [name, ...below] = o.name.slice(base.length).split('/');
    if (!name || !name.toLowerCase().startsWith(search)) continue;
    if (below.length > 0) entries.set(name, { name, id: null, updated_at: null, created_at: null, last_accessed_at: null, metadata: null });
    else entries.set(name, { name, id: o.id, updated_at: o.updated_at, created_at: o.created_at, last_accessed_at: o.last_accessed_at, metadata: o.metadata });
  }
  // Postgres sorts these with COLLATE "C": plain code-point order.
  const names = [...entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (descending) names.reverse();
  return { body: names.slice(offset, offset + limit).map((n) => entries.get(n)) };
}

/** Deletes what the caller may delete (nothing, for anyone but the service role) and returns those rows. */
async function removeMany(ctx: Context, caller: Caller, bucketId: string, body: Record<string, unknown>): Promise<Reply> {
  const removed: StoredObject[] = [];
  if (caller.role !== 'service_role') return { body: removed };
  for (const key of (body.prefixes as string[] | undefined) ?? []) {
    const obj = ctx.store.object(bucketId, key);
    if (!obj) continue;
    await ctx.store.delete(bucketId, key);
    removed.push(obj);
  }
  return { body: removed };
}

// ---- signed URLs ----------------------------------------------------------------------------------------

async function signedUrlFor(ctx: Context, caller: Caller, bucket: string, key: string, expiresIn: number): Promise<string | null> {
  if (!ctx.store.object(bucket, key) || !(await rlsCanRead(ctx, caller, bucket, key))) return null;
  const token = await ctx.jwt.sign({ url: `${bucket}/${key}` }, expiresIn);
  return `/object/sign/${bucket}/${key}?token=${token}`;
}

function expiresIn(body: Record<string, unknown>): number {
  const value = body.expiresIn;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw ERRORS.invalidRequest('body/expiresIn must be integer >= 1');
  return value;
}

async function sign(ctx: Context, caller: Caller, bucket: string, key: string, body: Record<string, unknown>): Promise<Reply> {
  const signedURL = await signedUrlFor(ctx, caller, bucket, key, expiresIn(body));
  if (!signedURL) throw ERRORS.noSuchKey();
  return { body: { signedURL } };
}

async function signMany(ctx: Context, caller: Caller, bucket: string, body: Record<string, unknown>): Promise<Reply> {
  const seconds = expiresIn(body);
  const results = [];
  for (const path of (body.paths as string[] | undefined) ?? []) {
    const signedURL = await signedUrlFor(ctx, caller, bucket, path, seconds);
    results.push({ error: signedURL ? null : NOT_SIGNED, path, signedURL });
  }
  return { body: results };
}

/** No Authorization needed: the token is the credential. Its `url` must be this very object. */
async function getSigned(ctx: Context, req: Incoming, bucket: string, key: string): Promise<Reply> {
  const payload = await ctx.jwt.verifySigned(req.query.get('token') ?? '');
  if (payload.url !== `${bucket}/${key}`) throw ERRORS.invalidSignature();
  const obj = ctx.store.object(bucket, key);
  if (!obj) throw ERRORS.noSuchKey();
  return serve(ctx, obj, req.query.get('download'), new Date((payload.exp ?? 0) * 1000).toUTCString());
}

/** Signed upload URLs last 2 hours; only callers who may insert get one (here: the service role). */
async function signUpload(ctx: Context, caller: Caller, bucket: string, key: string, upsert: boolean): Promise<Reply> {
  if (!OBJECT_KEY.test(key)) throw ERRORS.invalidKey(key);
  ctx.store.bucket(bucket);
  if (caller.role !== 'service_role') throw ERRORS.rlsViolation();
  const token = await ctx.jwt.sign({ owner: undefined, url: `${bucket}/${key}`, upsert }, 2 * 60 * 60);
  return { body: { url: `/object/upload/sign/${bucket}/${key}?token=${token}` } };
}

async function uploadSigned(ctx: Context, req: Incoming, bucket: string, key: string): Promise<Reply> {
  const payload = await ctx.jwt.verifySigned(req.query.get('token') ?? '');
  if (payload.url !== `${bucket}/${key}`) throw ERRORS.invalidSignature();
  const row = await store(ctx, { role: 'service_role' }, req, bucket, key, payload.upsert === true, payload.owner as string | undefined);
  return { body: { Key: `${bucket}/${key}`, Id: row.id } };
}
