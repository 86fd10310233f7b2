import type { Caller, Jwt } from './auth.ts';
import { ERRORS, StorageFailure } from './errors.ts';
import { parseBucketSizeLimit, maxUploadSize, mustBeValidBucketName, mustBeValidKey, validateAllowedMimeTypes } from './limits.ts';
import { listObjectsV2, searchObjects, type ListV2Options, type SearchOptions } from './listing.ts';
import { renderAsset, renderHead, renderInfo } from './render.ts';
import * as S from './schemas.ts';
import type { Bucket, Store, StoredObject } from './store.ts';
import { fileFromRequest } from './upload.ts';
import { validate, type Schema } from './validate.ts';

/** A request as the routes see it: path segments after `/storage/v1`, already percent-decoded. */
export interface Incoming {
  method: string;
  /** The path and query as the real server (behind the gateway) sees them: without `/storage/v1`. */
  url: string;
  segments: string[];
  query: URLSearchParams;
  headers: Record<string, string | undefined>;
  /** The raw body, read once. */
  bytes(): Promise<Buffer>;
}

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** Bytes, JSON, or null for no body (HEAD, 304). */
  body: unknown;
}

export interface Context {
  store: Store;
  jwt: Jwt;
  canRead: (userId: string, bucket: string, key: string) => boolean | Promise<boolean>;
  /** The project's global upload limit, in bytes: no bucket limit and no upload may exceed it. */
  fileSizeLimit: number;
}

interface Call {
  ctx: Context;
  req: Incoming;
  caller: Caller;
  params: { bucket?: string; id?: string; key?: string };
  // Validated against the route's schema, so the handlers may read what it declares.
  body: any;
  query: Record<string, any>;
}

interface Route {
  method: string;
  /** After `/bucket` or `/object`: literal segments, `:name` for one segment, `*` (the key) for the rest. */
  path: string;
  /**
   * `jwt`: a valid JWT is required (bad -> AccessDenied); `optional`: missing or bad is anonymous
   * (`allowInvalidJwt`); `none`: the public routes, run as superuser (the signed-URL token is the credential).
   */
  auth: 'jwt' | 'optional' | 'none';
  schema?: { body?: Schema; querystring?: Schema; headers?: Schema };
  run(call: Call): Reply | Promise<Reply>;
}

const NOT_SIGNED = 'Either the object does not exist or you do not have access to it';
const UPLOAD_URL_SECONDS = 2 * 60 * 60;
const ANONYMOUS: Caller = { role: 'anon', verified: false };
/** `createDefaultSchema` adds the authorization header to every route built with it. */
const withAuth = (schema: Route['schema'] = {}) => ({ ...schema, headers: S.AUTH_HEADERS });

const BUCKET_ROUTES: Route[] = [
  { method: 'GET', path: '', auth: 'jwt', schema: withAuth({ querystring: S.LIST_BUCKETS_QUERY }), run: listBuckets },
  { method: 'POST', path: '', auth: 'jwt', schema: withAuth({ body: S.CREATE_BUCKET }), run: createBucket },
  { method: 'GET', path: ':id', auth: 'jwt', schema: withAuth(), run: ({ ctx, caller, params }) => ({ body: bucketRow(visibleBucket(ctx, caller, params.id!), false) }) },
  { method: 'PUT', path: ':id', auth: 'jwt', schema: withAuth({ body: S.UPDATE_BUCKET }), run: updateBucket },
  { method: 'DELETE', path: ':id', auth: 'jwt', schema: withAuth(), run: deleteBucket },
  { method: 'POST', path: ':id/empty', auth: 'jwt', schema: withAuth(), run: emptyBucket },
];

// Literal segments first: the router prefers them to parameters, as find-my-way does.
const OBJECT_ROUTES: Route[] = [
  { method: 'POST', path: 'list/:bucket', auth: 'jwt', schema: withAuth({ body: S.LIST_OBJECTS }), run: list },
  // list-v2 has no header schema: without authorization it is the JWT check that refuses it.
  { method: 'POST', path: 'list-v2/:bucket', auth: 'jwt', schema: { body: S.LIST_OBJECTS_V2 }, run: listV2 },
  { method: 'GET', path: 'sign/:bucket/*', auth: 'none', schema: { querystring: S.TOKEN_QUERY }, run: getSigned },
  { method: 'POST', path: 'sign/:bucket/*', auth: 'jwt', schema: withAuth({ body: S.SIGN_ONE }), run: sign },
  { method: 'POST', path: 'sign/:bucket', auth: 'jwt', schema: withAuth({ body: S.SIGN_MANY }), run: signMany },
  { method: 'POST', path: 'upload/sign/:bucket/*', auth: 'jwt', schema: withAuth(), run: signUpload },
  { method: 'PUT', path: 'upload/sign/:bucket/*', auth: 'none', schema: { querystring: S.TOKEN_QUERY }, run: uploadSigned },
  { method: 'GET', path: 'info/authenticated/:bucket/*', auth: 'jwt', schema: withAuth(), run: (c) => withObject(c, renderInfo) },
  { method: 'GET', path: 'info/public/:bucket/*', auth: 'none', run: (c) => withObject(c, renderInfo, true) },
  { method: 'GET', path: 'info/:bucket/*', auth: 'optional', run: (c) => withObject(c, renderInfo) },
  { method: 'HEAD', path: 'authenticated/:bucket/*', auth: 'jwt', schema: withAuth(), run: (c) => withObject(c, (o) => renderHead(o, c.req.headers)) },
  { method: 'HEAD', path: 'public/:bucket/*', auth: 'none', run: (c) => withObject(c, (o) => renderHead(o, c.req.headers), true) },
  { method: 'HEAD', path: ':bucket/*', auth: 'optional', run: (c) => withObject(c, (o) => renderHead(o, c.req.headers)) },
  { method: 'GET', path: 'authenticated/:bucket/*', auth: 'jwt', schema: withAuth({ querystring: S.DOWNLOAD_QUERY }), run: (c) => withObject(c, download(c)) },
  { method: 'GET', path: 'public/:bucket/*', auth: 'none', schema: { querystring: S.DOWNLOAD_QUERY }, run: (c) => withObject(c, download(c), true) },
  { method: 'GET', path: ':bucket/*', auth: 'optional', schema: { querystring: S.DOWNLOAD_QUERY }, run: (c) => withObject(c, download(c)) },
  // PUT (storage-js `update`) replaces; POST inserts unless `x-upsert: true`.
  { method: 'POST', path: ':bucket/*', auth: 'jwt', schema: withAuth(), run: (c) => upload(c, c.req.headers['x-upsert'] === 'true') },
  { method: 'PUT', path: ':bucket/*', auth: 'jwt', schema: withAuth(), run: (c) => upload(c, true) },
  { method: 'DELETE', path: ':bucket/*', auth: 'jwt', schema: withAuth(), run: deleteObject },
  { method: 'DELETE', path: ':bucket', auth: 'jwt', schema: withAuth({ body: S.DELETE_OBJECTS }), run: deleteObjects },
];

/**
 * Dispatches one request; throws StorageFailure for the real error bodies. `null`: not a Storage route at all
 * (Fastify's own 404). In the order Fastify runs them: route match, schema validation (params, body,
 * querystring, headers), the JWT check, then the handler.
 */
export async function route(ctx: Context, req: Incoming): Promise<Reply | null> {
  const [area, ...rest] = req.segments;
  const table = area === 'bucket' ? BUCKET_ROUTES : area === 'object' ? OBJECT_ROUTES : null;
  if (!table) return null;
  const path = area === 'bucket' && rest.length === 1 && rest[0] === '' ? [] : rest;
  for (const r of table) {
    if (r.method !== req.method) continue;
    const params = match(r.path, path);
    if (!params) continue;
    const body = r.schema?.body ? validate(r.schema.body, await json(req), 'body') : undefined;
    const query = Object.fromEntries(req.query) as Record<string, unknown>;
    if (r.schema?.querystring) validate(r.schema.querystring, query, 'querystring');
    if (r.schema?.headers) validate(r.schema.headers, { ...req.headers }, 'headers');
    const caller = r.auth === 'none' ? ANONYMOUS : await ctx.jwt.caller(req.headers.authorization, r.auth === 'optional');
    return r.run({ ctx, req, caller, params, body, query });
  }
  // The not-found handler of the /bucket and /object prefixes (src/http/not-found-handler.ts).
  throw new StorageFailure(404, 'InvalidRequest', `Route ${req.method}:${req.url} not found`, 'Not Found', 404);
}

function match(pattern: string, segments: string[]): Call['params'] | null {
  const parts = pattern === '' ? [] : pattern.split('/');
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '*') {
      if (i >= segments.length) return null;
      params.key = segments.slice(i).join('/');
      return params;
    }
    const segment = segments[i];
    if (segment === undefined) return null;
    if (part.startsWith(':')) {
      if (!segment) return null;
      params[part.slice(1)] = segment;
    } else if (part !== segment) return null;
  }
  return segments.length === parts.length ? params : null;
}

/** Fastify's JSON body parser: other content types give no object (-> "body must be object"). */
async function json(req: Incoming): Promise<unknown> {
  if (!req.headers['content-type']?.includes('application/json')) return undefined;
  const text = (await req.bytes()).toString('utf8');
  if (!text) throw new StorageFailure(400, 'InvalidRequest', "Body cannot be empty when content-type is set to 'application/json'", 'FastifyError');
  try {
    return JSON.parse(text);
  } catch (e) {
    // The parser's SyntaxError reaches the error handler as is: statusCode 400, an unknown code.
    throw new StorageFailure(400, 'InternalError', (e as Error).message, 'SyntaxError');
  }
}

// ---- policies ---------------------------------------------------------------------------------------------

/** The first query run as the caller's role: Postgres refuses a role it does not know (22023). */
function asUser(caller: Caller): void {
  if (caller.role === 'unknown') throw ERRORS.database('22023');
}

/** What `storage.objects` SELECT policies let this caller see. */
async function rlsCanRead(ctx: Context, caller: Caller, bucket: string, key: string): Promise<boolean> {
  asUser(caller);
  if (caller.role === 'service_role') return true;
  return caller.role === 'authenticated' && caller.sub !== undefined && (await ctx.canRead(caller.sub, bucket, key));
}

/** Bucket rows are only visible to the service role (no `storage.buckets` policies, as in our project). */
function visibleBucket(ctx: Context, caller: Caller, id: string): Bucket {
  asUser(caller);
  if (caller.role !== 'service_role') throw ERRORS.noSuchBucket();
  return ctx.store.bucket(id);
}

async function visibleObjects(ctx: Context, caller: Caller, bucket: string): Promise<StoredObject[]> {
  asUser(caller);
  const visible: StoredObject[] = [];
  for (const o of ctx.store.objectsIn(bucket)) if (await rlsCanRead(ctx, caller, bucket, o.name)) visible.push(o);
  return visible;
}

// ---- buckets ------------------------------------------------------------------------------------------------

/** The bucket as the response schema serializes it: no `owner_id`; `type` only in listings. */
function bucketRow(b: Bucket, withType: boolean) {
  const { id, name, owner, public: isPublic, type, file_size_limit, allowed_mime_types, created_at, updated_at } = b;
  return { id, name, owner, public: isPublic, ...(withType ? { type } : {}), file_size_limit, allowed_mime_types, created_at, updated_at };
}

function listBuckets({ ctx, caller, query }: Call): Reply {
  asUser(caller);
  if (caller.role !== 'service_role') return { body: [] };
  let rows = [...ctx.store.buckets.values()];
  if (query.search) rows = rows.filter((b) => b.name.toLowerCase().includes(String(query.search).toLowerCase()));
  if (query.sortColumn) {
    const column = query.sortColumn as 'id';
    const direction = query.sortOrder === 'desc' ? -1 : 1;
    rows.sort((a, b) => direction * (a[column] < b[column] ? -1 : a[column] > b[column] ? 1 : 0));
  }
  const offset = (query.offset as number | undefined) ?? 0;
  rows = rows.slice(offset, query.limit === undefined ? undefined : offset + (query.limit as number));
  return { body: rows.map((b) => bucketRow(b, true)) };
}

function createBucket({ ctx, caller, body }: Call): Reply {
  const name = body.name as string;
  if (name.trim() !== name) throw ERRORS.invalidBucketName();
  mustBeValidBucketName(name);
  const id = (body.id as string | undefined) || name;
  const fileSizeLimit = parseBucketSizeLimit(body.file_size_limit, ctx.fileSizeLimit) ?? null;
  const mimeTypes = (body.allowed_mime_types as (string | null)[] | null | undefined)?.filter((m): m is string => Boolean(m)) ?? null;
  if (mimeTypes) validateAllowedMimeTypes(mimeTypes);
  asUser(caller);
  if (caller.role !== 'service_role') throw ERRORS.rlsViolation();
  if (ctx.store.buckets.has(id)) throw ERRORS.bucketAlreadyExists();
  const at = ctx.store.timestamp();
  ctx.store.buckets.set(id, {
    id,
    name,
    owner: '',
    public: body.public === true,
    type: 'STANDARD',
    file_size_limit: fileSizeLimit,
    allowed_mime_types: mimeTypes,
    created_at: at,
    updated_at: at,
  });
  return { body: { name: id } };
}

function updateBucket({ ctx, caller, params, body }: Call): Reply {
  mustBeValidBucketName(params.id!);
  if (body.public === undefined && body.file_size_limit === undefined && body.allowed_mime_types === undefined) throw ERRORS.noContentProvided();
  const fileSizeLimit = parseBucketSizeLimit(body.file_size_limit, ctx.fileSizeLimit);
  const mimeTypes = body.allowed_mime_types as string[] | null | undefined;
  if (mimeTypes) validateAllowedMimeTypes(mimeTypes);
  const bucket = visibleBucket(ctx, caller, params.id!);
  if (typeof body.public === 'boolean') bucket.public = body.public;
  if (fileSizeLimit !== undefined) bucket.file_size_limit = fileSizeLimit;
  if (mimeTypes !== undefined) bucket.allowed_mime_types = mimeTypes;
  bucket.updated_at = ctx.store.timestamp();
  return { body: { message: 'Successfully updated' } };
}

/** Looked up and counted as superuser (so anyone learns "not empty"), deleted as the caller. */
function deleteBucket({ ctx, caller, params }: Call): Reply {
  const id = params.id!;
  ctx.store.bucket(id);
  if (ctx.store.objectsIn(id).length > 0) throw ERRORS.bucketNotEmpty();
  visibleBucket(ctx, caller, id);
  ctx.store.buckets.delete(id);
  return { body: { message: 'Successfully deleted' } };
}

/** Service role only (`enforceJwtRoles`). Queued on the real server; done at once here. */
async function emptyBucket({ ctx, caller, params }: Call): Promise<Reply> {
  if (caller.role !== 'service_role') throw ERRORS.invalidRole();
  ctx.store.bucket(params.id!);
  for (const o of ctx.store.objectsIn(params.id!)) await ctx.store.delete(params.id!, o.name);
  return { body: { message: 'Empty bucket has been queued. Completion may take up to an hour.' } };
}

// ---- objects ------------------------------------------------------------------------------------------------

/**
 * Read routes: the bucket is looked up as superuser (missing, or private for a caller without a valid JWT ->
 * NoSuchBucket); public buckets and public routes skip RLS; otherwise an object the caller may not SELECT is NoSuchKey.
 */
async function withObject({ ctx, caller, params }: Call, render: (obj: StoredObject) => Reply | Promise<Reply>, publicRoute = false): Promise<Reply> {
  const bucket = ctx.store.buckets.get(params.bucket!);
  const unauthenticated = publicRoute || (caller.role === 'anon' && !caller.verified);
  if (!bucket || (unauthenticated && !bucket.public)) throw ERRORS.noSuchBucket();
  const obj = ctx.store.object(params.bucket!, params.key!);
  if (!(bucket.public || publicRoute || (await rlsCanRead(ctx, caller, params.bucket!, params.key!))) || !obj) throw ERRORS.noSuchKey();
  return render(obj);
}

const download = ({ ctx, req, query }: Call) => (o: StoredObject) => renderAsset(ctx.store, o, req.headers, { download: query.download as string | undefined });

/** The real upload pipeline: bucket (as superuser), mime type and size, key, RLS, duplicate, then insert or upsert. */
async function acceptUpload(ctx: Context, req: Incoming, bucketId: string, key: string, upsert: boolean, as: Caller, owner: string | null) {
  const bucket = ctx.store.bucket(bucketId);
  const file = await fileFromRequest(req, { maxFileSize: maxUploadSize(ctx.fileSizeLimit, bucket.file_size_limit), allowedMimeTypes: bucket.allowed_mime_types ?? [], objectName: key });
  mustBeValidKey(key);
  asUser(as);
  if (as.role !== 'service_role') throw ERRORS.rlsViolation();
  if (!upsert && ctx.store.object(bucketId, key)) throw ERRORS.keyAlreadyExists();
  if (file.truncated) throw ERRORS.entityTooLarge();
  return ctx.store.put(bucketId, key, file.bytes, file.mimetype, file.cacheControl, owner, file.userMetadata);
}

async function upload({ ctx, req, caller, params }: Call, upsert: boolean): Promise<Reply> {
  const owner = caller.role === 'authenticated' ? (caller.sub ?? null) : null;
  const row = await acceptUpload(ctx, req, params.bucket!, params.key!, upsert, caller, owner);
  return { body: { Id: row.id, Key: `${params.bucket}/${params.key}` } };
}

async function list({ ctx, caller, params, body }: Call): Promise<Reply> {
  return { body: searchObjects(await visibleObjects(ctx, caller, params.bucket!), body as SearchOptions) };
}

async function listV2({ ctx, caller, params, body }: Call): Promise<Reply> {
  return { body: listObjectsV2(await visibleObjects(ctx, caller, params.bucket!), (body ?? {}) as ListV2Options) };
}

/** The row as the response schema serializes it: a null owner becomes "". */
function objectRow(o: StoredObject) {
  return {
    name: o.name,
    bucket_id: o.bucket_id,
    owner: o.owner ?? '',
    owner_id: o.owner ?? '',
    version: o.version,
    id: o.id,
    updated_at: o.updated_at,
    created_at: o.created_at,
    last_accessed_at: o.last_accessed_at,
    metadata: o.metadata,
    user_metadata: o.user_metadata,
  };
}

/** Deletes what the caller may delete (nothing, for anyone but the service role) and returns those rows. */
async function deleteObjects({ ctx, caller, params, body }: Call): Promise<Reply> {
  asUser(caller);
  const removed: ReturnType<typeof objectRow>[] = [];
  if (caller.role !== 'service_role') return { body: removed };
  for (const key of body.prefixes as string[]) {
    const obj = ctx.store.object(params.bucket!, key);
    if (!obj) continue;
    await ctx.store.delete(params.bucket!, key);
    removed.push(objectRow(obj));
  }
  return { body: removed };
}

/** One object: found as superuser (missing -> NoSuchKey), deleted as the caller (refused -> AccessDenied). */
async function deleteObject({ ctx, caller, params }: Call): Promise<Reply> {
  if (!ctx.store.object(params.bucket!, params.key!)) throw ERRORS.noSuchKey();
  asUser(caller);
  if (caller.role !== 'service_role') throw ERRORS.accessDenied('Access denied');
  await ctx.store.delete(params.bucket!, params.key!);
  return { body: { message: 'Successfully deleted' } };
}

// ---- signed URLs ----------------------------------------------------------------------------------------

/** Download tokens carry `scope: "download"`, so they cannot be replayed against the upload route. */
async function signedUrlFor(ctx: Context, caller: Caller, bucket: string, key: string, expiresIn: number): Promise<string | null> {
  if (!(await rlsCanRead(ctx, caller, bucket, key)) || !ctx.store.object(bucket, key)) return null;
  const token = await ctx.jwt.sign({ url: `${bucket}/${key}`, scope: 'download' }, expiresIn);
  return `/object/sign/${bucket}/${key}?token=${token}`;
}

async function sign({ ctx, caller, params, body }: Call): Promise<Reply> {
  const signedURL = await signedUrlFor(ctx, caller, params.bucket!, params.key!, body.expiresIn as number);
  if (!signedURL) throw ERRORS.noSuchKey();
  return { body: { signedURL } };
}

async function signMany({ ctx, caller, params, body }: Call): Promise<Reply> {
  const results = [];
  for (const path of body.paths as string[]) {
    const signedURL = await signedUrlFor(ctx, caller, params.bucket!, path, body.expiresIn as number);
    results.push({ error: signedURL ? null : NOT_SIGNED, path, signedURL });
  }
  return { body: results };
}

/** The token must be valid, scoped for `scope` (legacy tokens: no scope; upload ones carry `upsert`) and name this object. */
async function verifySigned(ctx: Context, token: string, scope: 'download' | 'upload', bucket: string, key: string) {
  const payload = await ctx.jwt.verifySigned(token);
  const scoped = payload.scope === scope || (payload.scope === undefined && ('upsert' in payload) === (scope === 'upload'));
  if (!scoped) throw ERRORS.invalidSignature(`Token is not scoped for ${scope}`);
  if (payload.url !== `${bucket}/${key}`) throw ERRORS.invalidSignature();
  return payload;
}

/** No Authorization needed: the token is the credential. */
async function getSigned({ ctx, req, params, query }: Call): Promise<Reply> {
  const payload = await verifySigned(ctx, query.token as string, 'download', params.bucket!, params.key!);
  const obj = ctx.store.object(params.bucket!, params.key!);
  if (!obj) throw ERRORS.noSuchKey();
  return renderAsset(ctx.store, obj, req.headers, { download: query.download as string | undefined, expires: new Date((payload.exp ?? 0) * 1000).toUTCString() });
}

/** Signed upload URLs last 2 hours; only callers who may insert get one (here: the service role). */
async function signUpload({ ctx, caller, req, params }: Call): Promise<Reply> {
  const { bucket, key } = params as { bucket: string; key: string };
  mustBeValidKey(key);
  ctx.store.bucket(bucket);
  asUser(caller);
  if (caller.role !== 'service_role') throw ERRORS.rlsViolation();
  const upsert = req.headers['x-upsert'] === 'true';
  if (!upsert && ctx.store.object(bucket, key)) throw ERRORS.keyAlreadyExists();
  const token = await ctx.jwt.sign({ owner: undefined, url: `${bucket}/${key}`, upsert, scope: 'upload' }, UPLOAD_URL_SECONDS);
  return { body: { url: `/object/upload/sign/${bucket}/${key}?token=${token}`, token } };
}

async function uploadSigned({ ctx, req, params, query }: Call): Promise<Reply> {
  const payload = await verifySigned(ctx, query.token as string, 'upload', params.bucket!, params.key!);
  await acceptUpload(ctx, req, params.bucket!, params.key!, payload.upsert === true, { role: 'service_role' }, (payload.owner as string | undefined) ?? null);
  return { body: { Key: `${params.bucket}/${params.key}` } };
}
