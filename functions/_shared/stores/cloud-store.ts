import { StorageClient, isStorageError, StorageApiError } from '@supabase/storage-js';
import pRetry from 'p-retry';
import { AppError, ErrorCode, type HttpStatus } from '../errors.ts';
import type { Logger } from '../log.ts';

/** The bucket as this service uses it. Keys are `{project_id}/generations/v{version}__{generation_id}.tar.gz`. */
export interface CloudStore {
  readonly bucket: string;
  /** Creates the private bucket (gzip only, size-limited) unless it exists; refuses a public one. */
  ensureBucket(): Promise<void>;
  /**
   * Uploads, overwriting what the key holds; with `{ overwrite: false }` an object already there is left alone and
   * the answer is `false` (so a retry never replaces a copy it has not looked at).
   */
  upload(key: string, bytes: Uint8Array, opts?: { overwrite?: boolean }): Promise<boolean>;
  download(key: string): Promise<Uint8Array>;
  /** A URL anyone holding it can download from until it expires; the file is saved as `fileName`. */
  signedUrl(key: string, expiresInSeconds: number, fileName: string): Promise<string>;
  /** Removes objects; a key that is already gone is not an error. `once`: no retries (the caller retries later). */
  remove(keys: readonly string[], opts?: { once?: boolean }): Promise<void>;
  /** Whether the bucket answers right now (one try, no retries): for health checks. */
  ping(): Promise<boolean>;
  /**
   * Every archive in the bucket (`{project}/generations/*`), with when it was last written, paging through the
   * Storage API. For maintenance.
   */
  listObjects(): Promise<{ key: string; updatedAt: Date | null }[]>;
}

export interface RetryPolicy {
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

export const defaultRetry: RetryPolicy = { retries: 4, minTimeoutMs: 200, maxTimeoutMs: 5_000 };

/**
 * Supabase Storage through storage-js. The Storage API's errors (HTTP 400 carrying the real status as a string)
 * are translated to our codes here and nowhere else; 5xx, 429 and network failures are retried with exponential
 * backoff and jitter, other 4xx never. Server side only: it holds the service key.
 */
export class SupabaseCloudStore implements CloudStore {
  private readonly client: StorageClient;

  constructor(
    opts: { url: string; serviceKey: string; bucket: string; fileSizeLimit: number; fetch?: typeof fetch; timeoutMs?: number },
    private readonly log: Logger,
    private readonly retry: RetryPolicy = defaultRetry,
  ) {
    this.bucket = opts.bucket;
    this.fileSizeLimit = opts.fileSizeLimit;
    this.client = new StorageClient(`${opts.url}/storage/v1`, { apikey: opts.serviceKey, Authorization: `Bearer ${opts.serviceKey}` }, withTimeout(opts.fetch ?? fetch, opts.timeoutMs ?? BASE_TIMEOUT_MS));
  }
  readonly bucket: string;
  private readonly fileSizeLimit: number;

  async ensureBucket(): Promise<void> {
    const got = await this.call('getBucket', () => this.client.getBucket(this.bucket), { allowNotFound: true });
    if (got) {
      // Not an AppError: a public bucket would expose every archive, so the host refuses to start.
      if (got.public) throw new Error(`[cloud] bucket "${this.bucket}" is public: make it private before enabling cloud storage`);
      return;
    }
    const created = await this.call(
      'createBucket',
      () => this.client.createBucket(this.bucket, { public: false, fileSizeLimit: this.fileSizeLimit, allowedMimeTypes: ['application/gzip'] }),
      { allowConflict: true },
    );
    this.log.info(created ? 'bucket created' : 'bucket already exists', { bucket: this.bucket });
  }

  async upload(key: string, bytes: Uint8Array, opts: { overwrite?: boolean } = {}): Promise<boolean> {
    const upsert = opts.overwrite ?? true;
    const done = await this.call(
      'upload',
      () => this.client.from(this.bucket).upload(key, bytes, { contentType: 'application/gzip', upsert, cacheControl: '3600' }),
      { allowConflict: !upsert },
    );
    return done !== null;
  }

  async download(key: string): Promise<Uint8Array> {
    // The body is read inside the retried call: a connection dropped mid-body is as transient as one refused.
    return (await this.call('download', async () => {
      const { data, error } = await this.client.from(this.bucket).download(key);
      return { data: data && new Uint8Array(await data.arrayBuffer()), error };
    }))!;
  }

  async signedUrl(key: string, expiresInSeconds: number, fileName: string): Promise<string> {
    // One try: the caller has a fallback (our own signed URL) and should not wait out a Storage outage.
    const data = await this.call('signedUrl', () => this.client.from(this.bucket).createSignedUrl(key, expiresInSeconds, { download: fileName }), { once: true });
    return data!.signedUrl;
  }

  async remove(keys: readonly string[], opts: { once?: boolean } = {}): Promise<void> {
    if (keys.length === 0) return;
    await this.call('remove', () => this.client.from(this.bucket).remove([...keys]), { once: opts.once });
  }

  async ping(): Promise<boolean> {
    const { data, error } = await this.client.getBucket(this.bucket);
    return !error && Boolean(data);
  }

  async listObjects(): Promise<{ key: string; updatedAt: Date | null }[]> {
    const page = 1000;
    const names = async (prefix: string) => {
      const out: { name: string; id: string | null; updated_at?: string | null }[] = [];
      for (let offset = 0; ; offset += page) {
        const data = await this.call('list', () => this.client.from(this.bucket).list(prefix, { limit: page, offset, sortBy: { column: 'name', order: 'asc' } }));
        out.push(...(data ?? []));
        if (!data || data.length < page) return out;
      }
    };
    const objects: { key: string; updatedAt: Date | null }[] = [];
    for (const project of await names('')) {
      if (project.id !== null) continue; // a stray file at the top level is not a project folder
      for (const o of await names(`${project.name}/generations`)) {
        if (o.id !== null) objects.push({ key: `${project.name}/generations/${o.name}`, updatedAt: o.updated_at ? new Date(o.updated_at) : null });
      }
    }
    return objects;
  }

  /** One Storage call: unwraps `{ data, error }`, translates the error, retries what is worth retrying. */
  private async call<T>(
    op: string,
    fn: () => PromiseLike<{ data: T | null; error: unknown }>,
    opts: { allowNotFound?: boolean; allowConflict?: boolean; once?: boolean } = {},
  ): Promise<T | null> {
    return pRetry(
      async () => {
        let result: { data: T | null; error: unknown };
        try {
          result = await fn();
        } catch (err) {
          throw translate(op, err); // thrown, not returned: e.g. a body cut off while being read
        }
        const { data, error } = result;
        if (!error) return data;
        const e = translate(op, error);
        if (opts.allowNotFound && e.status === 404) return null;
        if (opts.allowConflict && e.status === 409) return null;
        throw e;
      },
      {
        retries: opts.once ? 0 : this.retry.retries,
        minTimeout: this.retry.minTimeoutMs,
        maxTimeout: this.retry.maxTimeoutMs,
        randomize: true,
        shouldRetry: ({ error }) => error instanceof AppError && error.code === ErrorCode.CloudUnavailable,
        onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
          if (retriesLeft > 0 && error instanceof AppError && error.code === ErrorCode.CloudUnavailable) {
            this.log.warn('cloud call failed, retrying', { op, attempt: attemptNumber, retries_left: retriesLeft, error: error.message });
          }
        },
      },
    );
  }
}

/**
 * The Storage API answers most errors with HTTP 400 and the real status as a string in the body
 * (`{"statusCode":"404","code":"NoSuchKey",…}`); 429 and 5xx keep their own HTTP status. storage-js surfaces
 * the body as `StorageApiError { status: <HTTP>, statusCode: <body status or code>, code }`, and network
 * failures as `StorageUnknownError`.
 */
export function translate(op: string, error: unknown): AppError {
  if (!isStorageError(error)) return new AppError(ErrorCode.CloudUnavailable, 503, `[cloud] ${op}: ${String(error)}`, { cause: error });
  if (!(error instanceof StorageApiError)) {
    return new AppError(ErrorCode.CloudUnavailable, 503, `[cloud] ${op}: network error (${error.message})`, { cause: error });
  }
  const http = Number(error.status);
  const real = /^\d{3}$/.test(String(error.statusCode)) ? Number(error.statusCode) : http;
  const message = `[cloud] ${op}: ${error.message}${error.code ? ` (${error.code})` : ''}`;
  const as = (code: ErrorCode, status: HttpStatus) => new AppError(code, status, message, { cause: error });
  if (http === 429 || http >= 500 || real === 429 || real >= 500) return as(ErrorCode.CloudUnavailable, 503);
  if (real === 404) return as(ErrorCode.CloudNotFound, 404);
  if (real === 409) return as(ErrorCode.CloudConflict, 409);
  if (real === 413) return as(ErrorCode.PayloadTooLarge, 413);
  if (real === 401 || real === 403) return as(ErrorCode.CloudForbidden, 502);
  return as(ErrorCode.CloudRejected, 502);
}

/** Per-request timeout: a Storage call that hangs becomes a retried network error instead of a stuck slot. */
const BASE_TIMEOUT_MS = 60_000;
const MS_PER_MIB = 2_000;

function withTimeout(inner: typeof fetch, baseMs: number): typeof fetch {
  return (input, init) => {
    const body = init?.body;
    const bytes = body instanceof Uint8Array || body instanceof ArrayBuffer ? body.byteLength : body instanceof Blob ? body.size : 0;
    const timeout = AbortSignal.timeout(Math.ceil(baseMs + (bytes / 1_048_576) * MS_PER_MIB));
    const signal = init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    return inner(input, { ...init, signal });
  };
}
