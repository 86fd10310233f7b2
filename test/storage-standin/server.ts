/**
 * A stand-in for Supabase's hosted Storage API (supabase/storage v1.70.x behind the `/storage/v1` gateway prefix),
 * on loopback, for the routes @supabase/storage-js 2.119 uses. Test code only.
 *
 * What storage-js 2.119 surfaces (what CloudStore translates). Calls resolve to `{ data, error }`; they throw only
 * with `.throwOnError()`. `download()` returns the same shape (data: Blob).
 *
 * - Server errors -> `StorageApiError` (`name` 'StorageApiError', `__isStorageError`), with
 *     `status`:     the HTTP status: 400 for every storage error, 500/503/429 for those;
 *     `statusCode`: the body's `statusCode` string: the real status ('404', '409', '403', '413', '415', '503', ...);
 *     `code`:       the body's `code` ('NoSuchKey', 'NoSuchBucket', 'BucketAlreadyExists', 'KeyAlreadyExists',
 *                   'AccessDenied', 'EntityTooLarge', 'InvalidMimeType', 'InvalidJWT', 'InvalidSignature',
 *                   'InvalidKey', 'InvalidBucketName', 'InvalidRequest', 'ResourceNotEmpty', 'DatabaseError', 'InvalidRange',
 *                   'InvalidParameter', 'InternalError', 'SlowDown', 'LockTimeout');
 *     `message`:    the body's `message`. The body's `error` field ('not_found', 'Duplicate', ...) is NOT surfaced.
 *   Concretely:
 *     missing object / hidden by RLS:  status 400, statusCode '404', code 'NoSuchKey', 'Object not found'
 *     missing bucket:                  status 400, statusCode '404', code 'NoSuchBucket', 'Bucket not found'
 *     bucket exists / key exists:      status 400, statusCode '409', code 'BucketAlreadyExists' | 'KeyAlreadyExists'
 *     write refused by RLS:            status 400, statusCode '403', code 'AccessDenied', 'new row violates row-level security policy'
 *     bad/expired bearer JWT:          status 400, statusCode '403', code 'AccessDenied', jose's message
 *                                      ('signature verification failed', '"exp" claim timestamp check failed', 'Invalid Compact JWS')
 *       ...but download() and info() use GET /object/:bucket/* and /object/info/:bucket/*, which treat a bad JWT as
 *       anonymous: on a private bucket that is statusCode '404' NoSuchBucket, not AccessDenied.
 *     over file_size_limit, or over the project's global upload limit (also a bucket limit above it):
 *                                      status 400, statusCode '413', code 'EntityTooLarge'
 *     mime type not allowed:           status 400, statusCode '415', code 'InvalidMimeType' (parameters are not stripped)
 *     no authorization header:         status 400, statusCode '400', code 'InvalidRequest', "headers must have required
 *                                      property 'authorization'" (schema validation: `error` is "Error")
 *     a JWT role Postgres does not know: status 500, statusCode '500', code 'DatabaseError' (retried as a 5xx)
 *     injected 500 / 503 / 429:        status 500 / 503 / 429, statusCode the same string, code 'InternalError' / 'LockTimeout' / 'SlowDown'
 * - Network failure (socket dropped, refused) -> `StorageUnknownError`, message 'fetch failed', `status` and
 *   `statusCode` undefined, no `code`; the undici TypeError in `originalError`.
 * - `exists()` answers `{ data: false, error }` for NoSuchKey and throws (!) any other error.
 * - `remove()` / `list()` of objects the caller may not see: `{ data: [], error: null }`.
 * - Signed URLs are fetched with plain fetch: errors come back as HTTP 400 with the JSON bodies of errors.ts
 *   (expired: `{"statusCode":"400","code":"InvalidJWT","error":"InvalidJWT","message":"\"exp\" claim timestamp check failed"}`).
 *
 * Paths storage-js 2.119 calls: download -> GET /object/:bucket/*key (not /object/authenticated/...),
 * info/exists -> GET /object/info/:bucket/*key, upload -> POST /object/:bucket/*key (raw body with content-type and
 * cache-control headers for Uint8Array/Buffer/ArrayBuffer; multipart with a `cacheControl` field and the file for
 * Blob/File, where the Blob's own type is the content type and the `contentType` option is ignored).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Jwt } from './auth.ts';
import { faultFailure, StorageFailure } from './errors.ts';
import { Faults } from './faults.ts';
import { route, type Context, type Incoming, type Reply } from './routes.ts';
import { Store } from './store.ts';

export interface StandIn {
  /** Origin, used as SUPABASE_URL: clients call `${url}/storage/v1/...`. */
  url: string;
  /** A service_role JWT signed with jwtSecret (what SUPABASE_SERVICE_KEY would be). */
  serviceKey: string;
  faults: Pick<Faults, 'failNext' | 'delayNext' | 'dropNext' | 'failShare' | 'clear' | 'injected'>;
  /** Every request seen, in arrival order; `status` is filled in when answered (0: dropped or not answered yet). */
  requests: { method: string; path: string; status: number }[];
  /** Where an object's bytes live on disk (tests corrupt them). */
  objectPath(bucket: string, key: string): string;
  close(): Promise<void>;
}

export interface StandInOptions {
  /** HS256 secret: verifies bearer JWTs and signs signed-URL tokens. */
  jwtSecret: string;
  /** Where object bytes are stored; a temp dir by default, removed on close. */
  dir?: string;
  /** Stands for storage.objects SELECT policies for `authenticated` users; default: nobody reads anything. */
  canRead?: (userId: string, bucket: string, key: string) => boolean | Promise<boolean>;
  /** Clock in ms (JWT iat/exp checks, timestamps); default Date.now. */
  now?: () => number;
  /**
   * A realistic network between us and Storage: every answer waits `latencyMs` plus the time its request and
   * response bodies take at `bytesPerSecond`. Default: loopback, no wait.
   */
  network?: { latencyMs?: number; bytesPerSecond?: number };
  /** Fixed port (default: any free one). */
  port?: number;
  /**
   * The project's global upload limit in bytes (Supabase: 50 MB = 52,428,800 on the Free plan, raised per project
   * on paid plans). A bucket `file_size_limit` above it, and any upload above it, is `413 EntityTooLarge`.
   */
  fileSizeLimit?: number;
}

/** Supabase Free's global upload limit: "50 MB", the tenants' default `file_size_limit` of 52,428,800 bytes. */
export const DEFAULT_FILE_SIZE_LIMIT = 52_428_800;

const PREFIX = '/storage/v1/';
/** Test-only routes for a stand-in in another process: GET/DELETE requests, POST faults. */
const ADMIN = '/__standin/';

export async function startStorageStandIn(opts: StandInOptions): Promise<StandIn> {
  const now = opts.now ?? Date.now;
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'storage-standin.')));
  const jwt = new Jwt(opts.jwtSecret, now);
  const ctx: Context = { store: new Store(dir, now), jwt, canRead: opts.canRead ?? (() => false), fileSizeLimit: opts.fileSizeLimit ?? DEFAULT_FILE_SIZE_LIMIT };
  const faults = new Faults();
  const requests: StandIn['requests'] = [];

  const { latencyMs = 0, bytesPerSecond = Infinity } = opts.network ?? {};
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://standin');
    if (url.pathname.startsWith(ADMIN)) return admin(req, res, url.pathname.slice(ADMIN.length), requests, faults);
    const entry = { method: req.method ?? 'GET', path: url.pathname, status: 0 };
    requests.push(entry);
    const fault = faults.take();
    if (fault.drop) {
      req.socket.destroy();
      return;
    }
    answering(res, async () => {
      if (fault.delayMs) await sleep(fault.delayMs);
      const reply = fault.failWith ? failure(faultFailure(fault.failWith)) : await answer(ctx, req, url);
      const bytes = Number(req.headers['content-length'] ?? 0) + (reply.body instanceof Uint8Array ? reply.body.byteLength : 0);
      const wait = latencyMs + (bytes / bytesPerSecond) * 1000 + fault.hangMs;
      if (wait > 0) await sleep(wait);
      entry.status = reply.status ?? 200;
      send(res, reply, fault.cut);
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    serviceKey: await jwt.sign({ role: 'service_role', iss: 'supabase' }, 10 * 365 * 24 * 3600, { typ: 'JWT' }),
    faults,
    requests,
    objectPath: (bucket, key) => ctx.store.objectPath(bucket, key),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The answer to one request, sent only once its body has been read or drained (so the client finishes sending). */
async function answer(ctx: Context, req: IncomingMessage, url: URL): Promise<Reply> {
  if (!url.pathname.startsWith(PREFIX)) return notFound(req);
  const [request, drain] = incoming(req, url);
  let reply: Reply;
  try {
    reply = (await route(ctx, request)) ?? notFound(req);
  } catch (e) {
    if (e instanceof StorageFailure) reply = failure(e);
    else {
      const err = e as Error;
      reply = failure(new StorageFailure(500, 'InternalError', err.message, err.name));
    }
  }
  await drain();
  return reply;
}

function failure(e: StorageFailure): Reply {
  return { status: e.httpStatus, body: e.body() };
}

/** Fastify's own 404 for unknown routes (not the storage error shape). */
function notFound(req: IncomingMessage): Reply {
  return { status: 404, body: { message: `Route ${req.method}:${req.url} not found`, error: 'Not Found', statusCode: 404 } };
}

/** The request for the routes, and a function that discards whatever of its body they did not read. */
function incoming(req: IncomingMessage, url: URL): [Incoming, () => Promise<void>] {
  let body: Promise<Buffer> | undefined;
  const path = url.pathname.slice(PREFIX.length - 1);
  const request: Incoming = {
    method: req.method ?? 'GET',
    url: path + url.search,
    segments: path.slice(1).split('/').map(decodeURIComponent),
    query: url.searchParams,
    headers: req.headers as Record<string, string | undefined>,
    bytes: () =>
      (body ??= (async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      })()),
  };
  const drain = async () => {
    if (body) return void (await body.catch(() => undefined));
    for await (const _ of req); // an upload refused from its Content-Length: read, not kept
  };
  return [request, drain];
}

/**
 * Runs one request's handler; a client gone mid-request (its body stream rejects with 'aborted', ECONNRESET — a
 * process killed mid-upload) has no one to answer, so its socket is closed rather than the rejection left unhandled.
 */
function answering(res: ServerResponse, handle: () => Promise<void>) {
  handle().catch(() => res.destroy());
}

/** JSON, bytes, or no body (`null`: HEAD and 304, whose Content-Length the renderer sets). */
function send(res: ServerResponse, reply: Reply, cut = false) {
  const isBytes = reply.body instanceof Uint8Array;
  const payload = reply.body === null ? new Uint8Array(0) : isBytes ? (reply.body as Uint8Array) : Buffer.from(JSON.stringify(reply.body));
  res.writeHead(reply.status ?? 200, {
    ...(isBytes || reply.body === null ? {} : { 'content-type': 'application/json; charset=utf-8' }),
    ...reply.headers,
    ...(reply.body === null ? {} : { 'content-length': String(payload.byteLength) }),
  });
  if (!cut) return res.end(payload);
  res.write(payload.subarray(0, payload.byteLength >> 1), () => res.destroy());
}

/** The admin routes: what a test in another process needs to see and steer. */
function admin(req: IncomingMessage, res: ServerResponse, path: string, requests: StandIn['requests'], faults: Faults) {
  const reply = (body: unknown) => send(res, { status: 200, body: body as Reply['body'] });
  if (path === 'requests' && req.method === 'GET') return reply({ requests, injected: faults.injected });
  if (path === 'requests' && req.method === 'DELETE') return (requests.length = 0), reply({ cleared: true });
  if (path === 'faults' && req.method === 'POST') {
    answering(res, async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const f = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { clear?: boolean; failShare?: Parameters<Faults['failShare']>; delayNext?: [number, number] };
      if (f.clear) faults.clear();
      if (f.failShare) faults.failShare(...f.failShare);
      if (f.delayNext) faults.delayNext(...f.delayNext);
      reply({ ok: true });
    });
    return;
  }
  send(res, { status: 404, body: { message: 'no such admin route' } });
}
