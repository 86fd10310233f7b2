import createClient from 'openapi-fetch';
import { errorFromAnswer, StorageApiError } from './errors.js';
import { backoffMs, DEFAULT_RETRY, retryableStatus, sleep, type RetryOptions } from './retry.js';
import type { components, paths } from './schema.js';

export type Schemas = components['schemas'];
/** A generation as save and get answer it, with a signed `download_url`. */
export type Generation = Schemas['Generation'];
/** What `save` takes: `files` maps relative paths to UTF-8 content. */
export type SaveGenerationInput = Schemas['SaveGenerationRequest'];
/** One page of `listPage`. */
export type GenerationPage = Schemas['GenerationList'];
/** A generation as the list shows it (no download URL). */
export type GenerationSummary = GenerationPage['items'][number];
export type Health = Schemas['Health'];
/** What `restore` answers: the new generation, and which one it was restored from. */
export type RestoredGeneration = Schemas['RestoredGeneration'];
/** `files`: every file of a generation, from its manifest. */
export type GenerationFiles = Schemas['FileList'];
export type GenerationFile = GenerationFiles['files'][number];
/** `diff`: added, removed and modified files between two generations of one project. */
export type GenerationDiff = Schemas['Diff'];

type Token = string | null | undefined;

export interface StorageClientOptions {
  /**
   * The generations function: `https://<project-ref>.supabase.co/functions/v1/generations` on Supabase,
   * `http://localhost:54321/functions/v1/generations` on the embedded default.
   */
  baseUrl: string;
  /** A fixed bearer token (a Supabase user's access token). */
  accessToken?: string;
  /** Asked before every request (and every retry), so a refreshed token is used as soon as there is one. */
  getAccessToken?: () => Token | Promise<Token>;
  /** The fetch to use (default: globalThis.fetch). It is always called with one Request. */
  fetch?: (request: Request) => Promise<Response>;
  /** Retry policy for the calls that are safe to repeat; `false` turns retries off. */
  retry?: Partial<RetryOptions> | false;
  /** Extra headers on every API request (CORS allows `apikey` and `x-client-info` besides the ones the client sets). */
  headers?: Record<string, string>;
}

export interface CallOptions {
  /** Aborts the call, including a backoff wait between retries. */
  signal?: AbortSignal;
}

export interface ListOptions extends CallOptions {
  /** Page size, 1–100 (the API's default is 20). */
  limit?: number;
}

export interface ListPageOptions extends ListOptions {
  /** `next_cursor` of the previous page. */
  cursor?: string;
}

export type ArchiveFormat = 'tar.gz' | 'zip';
type BodyKind = 'blob' | 'arraybuffer';
type BodyOf<K extends BodyKind> = K extends 'arraybuffer' ? ArrayBuffer : Blob;

export interface DownloadOptions<K extends BodyKind = 'blob'> extends CallOptions {
  /** `tar.gz` (default) or `zip`. */
  format?: ArchiveFormat;
  /** `blob` (default) or `arraybuffer`. */
  as?: K;
}

type FileKind = 'text' | BodyKind;
type FileBodyOf<K extends FileKind> = K extends 'text' ? string : K extends 'arraybuffer' ? ArrayBuffer : Blob;

export interface FileOptions<K extends FileKind = 'text'> extends CallOptions {
  /** `text` (default: UTF-8, as the API serves text files), `blob` or `arraybuffer`. */
  as?: K;
}

export interface FileContent<T> {
  path: string;
  data: T;
  /** As served, e.g. `text/x-python; charset=utf-8`. */
  contentType: string;
  size: number;
  /** The file's sha256 (its ETag); the bytes were checked against it where WebCrypto is available. */
  sha256: string | null;
}

export interface DiffOptions extends CallOptions {
  /** Add unified diffs of the changed text files (within the API's limits; `patch_omitted` says why one is missing). */
  patch?: boolean;
}

export interface RestoreOptions extends CallOptions {
  /** The new generation's id. With one, the call is idempotent (and retried); without, the API makes one up. */
  generation_id?: string;
}

export interface Downloaded<T> {
  data: T;
  /** From `Content-Disposition`, e.g. `v1__<id>.zip`. */
  filename: string;
  contentType: string;
  size: number;
  /** `X-Checksum-Sha256` when the server sent one; the bytes were checked against it where WebCrypto is available. */
  sha256: string | null;
}

/** Enough of a supabase-js client for `fromSupabase` (structural: supabase-js is not a dependency). */
export interface SupabaseLike {
  auth: {
    getSession(): Promise<{ data: { session: { access_token: string } | null }; error?: unknown }>;
  };
}

type Answer<D> = { data?: D; error?: unknown; response: Response };
type Attempt<D> = (headers: Record<string, string>) => Promise<Answer<D>>;

/**
 * A client of the `generations` function. Every method throws StorageApiError for an answer that is not a
 * success (with the API's `code`) and for a request that never got one (`network_error`).
 */
export function createStorageClient(options: StorageClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const fetchImpl = (request: Request) => (options.fetch ?? globalThis.fetch)(request);
  const policy: RetryOptions = options.retry === false ? { ...DEFAULT_RETRY, retries: 0 } : { ...DEFAULT_RETRY, ...options.retry };
  const api = createClient<paths>({ baseUrl, fetch: fetchImpl });
  api.use({
    async onRequest({ request }) {
      // `raw` calls too carry the token (the methods below set it themselves, fresh for each attempt).
      if (!request.headers.has('authorization')) {
        for (const [k, v] of Object.entries(await authHeaders())) if (!request.headers.has(k)) request.headers.set(k, v);
      }
      // The API's root is the base URL itself (`POST …/generations`), never `…/generations/`, which openapi-fetch
      // would send for the path "/".
      const url = new URL(request.url);
      if (url.pathname.length < 2 || !url.pathname.endsWith('/')) return undefined;
      url.pathname = url.pathname.replace(/\/+$/, '');
      // The body as bytes, not as the Request's stream: browsers send a stream only over HTTP/2, and with duplex.
      const body = request.body === null ? null : await request.arrayBuffer();
      return new Request(url, { method: request.method, headers: request.headers, body, signal: request.signal });
    },
  });

  const authHeaders = async (): Promise<Record<string, string>> => {
    const token = options.accessToken ?? (await options.getAccessToken?.());
    return { ...options.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
  };

  /**
   * Runs `attempt` until it succeeds; with `retry`, again after a network failure or a 5xx, with backoff.
   * Everything else throws at once.
   */
  async function send<D>(attempt: Attempt<D>, how: { retry: boolean; signal?: AbortSignal | undefined; auth?: boolean }): Promise<{ data: D; response: Response }> {
    const retries = how.retry ? policy.retries : 0;
    for (let n = 1; ; n++) {
      const headers = how.auth === false ? {} : await authHeaders();
      let answer: Answer<D>;
      try {
        answer = await attempt(headers);
      } catch (err) {
        if (how.signal?.aborted || (err as Error)?.name === 'AbortError') throw err;
        if (n <= retries) {
          await sleep(backoffMs(n, policy), how.signal);
          continue;
        }
        throw new StorageApiError('network_error', 0, `no answer from the storage API: ${(err as Error)?.message ?? String(err)}`, { cause: err, attempts: n });
      }
      const { response } = answer;
      // An attempt that answers without `error` accepted the status (a 503 health report, a 304).
      if (response.ok || !('error' in answer)) return { data: answer.data as D, response };
      const error = errorFromAnswer(response, answer.error, n);
      if (n <= retries && retryableStatus(response.status, error.code)) {
        await sleep(backoffMs(n, policy, response.headers.get('retry-after')), how.signal);
        continue;
      }
      throw error;
    }
  }

  /** A GET of an absolute URL (a signed download URL) without our bearer token: the token is in the URL. */
  const getSigned = (url: string, signal?: AbortSignal): Attempt<ArrayBuffer> => async () => {
    const response = await fetchImpl(new Request(url, signal ? { signal } : {}));
    if (!response.ok) return { error: await readBody(response), response };
    return { data: await response.arrayBuffer(), response };
  };

  async function setPinned(id: string, pinned: boolean, o: CallOptions): Promise<Generation> {
    const { data } = await send((headers) => api.PATCH('/{id}', { params: { path: { id } }, body: { pinned }, headers, signal: o.signal }), { retry: true, signal: o.signal });
    return data;
  }

  async function downloaded<K extends BodyKind>(answer: { data: ArrayBuffer; response: Response }, as: K | undefined, fallbackName: string): Promise<Downloaded<BodyOf<K>>> {
    const { data, response } = answer;
    const sha256 = await checked(data, response);
    const contentType = response.headers.get('content-type') ?? 'application/octet-stream';
    const body = (as === 'arraybuffer' ? data : new Blob([data], { type: contentType })) as BodyOf<K>;
    return { data: body, filename: filenameOf(response.headers.get('content-disposition')) ?? fallbackName, contentType, size: data.byteLength, sha256 };
  }

  /** A GET of one of our routes with the bearer token, its body as bytes. */
  const getBytes = (url: string, signal?: AbortSignal): Attempt<ArrayBuffer> => async (headers) => {
    const response = await fetchImpl(new Request(url, { headers, ...(signal ? { signal } : {}) }));
    if (!response.ok) return { error: await readBody(response), response };
    return { data: await response.arrayBuffer(), response };
  };

  const client = {
    baseUrl,

    /**
     * Saves a generation (201). Retried on 5xx and network errors only when `generation_id` is given: then a
     * repeat is a replay of the same save, never a second generation.
     */
    async save(input: SaveGenerationInput, o: CallOptions = {}): Promise<Generation> {
      const { data } = await send((headers) => api.POST('/', { body: input, headers, signal: o.signal }), { retry: input.generation_id !== undefined, signal: o.signal });
      return data;
    },

    /** One page of a project's generations, newest version first. */
    async listPage(projectId: string, o: ListPageOptions = {}): Promise<GenerationPage> {
      const query = { project_id: projectId, ...(o.limit === undefined ? {} : { limit: o.limit }), ...(o.cursor === undefined ? {} : { cursor: o.cursor }) };
      const { data } = await send((headers) => api.GET('/', { params: { query }, headers, signal: o.signal }), { retry: true, signal: o.signal });
      return data;
    },

    /** Every generation of a project, newest version first, fetching page after page as the loop goes on. */
    async *list(projectId: string, o: ListOptions = {}): AsyncGenerator<GenerationSummary, void, undefined> {
      let cursor: string | undefined;
      do {
        const page = await client.listPage(projectId, { ...o, cursor });
        yield* page.items;
        cursor = page.next_cursor ?? undefined;
      } while (cursor !== undefined);
    },

    /** One generation, with a freshly signed `download_url`. */
    async get(id: string, o: CallOptions = {}): Promise<Generation> {
      const { data } = await send((headers) => api.GET('/{id}', { params: { path: { id } }, headers, signal: o.signal }), { retry: true, signal: o.signal });
      return data;
    },

    /** A freshly signed download URL (valid `expires_in` seconds): for a link or `window.location`, no token needed. */
    async downloadUrl(id: string, o: CallOptions & { format?: ArchiveFormat } = {}): Promise<string> {
      const g = await client.get(id, o);
      return o.format === 'zip' ? g.zip_url : g.download_url;
    },

    /**
     * The archive's bytes. Given a generation (the answer of save, get, restore), through its signed URL (no
     * bearer token is sent), or, when that link has expired (any 400/401/403), once through the authenticated
     * route; given an id, through the authenticated route.
     */
    async download<K extends BodyKind = 'blob'>(target: string | Generation, o: DownloadOptions<K> = {}): Promise<Downloaded<BodyOf<K>>> {
      const format = o.format ?? 'tar.gz';
      if (typeof target !== 'string') {
        const url = format === 'zip' ? target.zip_url : target.download_url;
        try {
          const answer = await send(getSigned(url, o.signal), { retry: true, signal: o.signal, auth: false });
          return await downloaded(answer, o.as, `v${target.version}__${target.generation_id}.${format}`);
        } catch (err) {
          if (!(err instanceof StorageApiError && [400, 401, 403].includes(err.status))) throw err;
          return client.download(target.generation_id, o);
        }
      }
      const url = `${baseUrl}/${encodeURIComponent(target)}/download${format === 'zip' ? '?format=zip' : ''}`;
      const answer = await send(getBytes(url, o.signal), { retry: true, signal: o.signal });
      return downloaded(answer, o.as, `${target}.${format}`);
    },

    /** Every file of a generation (path, size, sha256, media type), from its manifest: no archive is read. */
    async files(id: string, o: CallOptions = {}): Promise<GenerationFiles> {
      const { data } = await send((headers) => api.GET('/{id}/files', { params: { path: { id } }, headers, signal: o.signal }), { retry: true, signal: o.signal });
      return data;
    },

    /**
     * One file's content (`path` as `files` lists it), checked against its sha256. Revalidated by the browser's
     * HTTP cache with its ETag: an unchanged file is not sent again.
     */
    async file<K extends FileKind = 'text'>(id: string, path: string, o: FileOptions<K> = {}): Promise<FileContent<FileBodyOf<K>>> {
      const url = `${baseUrl}/${encodeURIComponent(id)}/files/${path.split('/').map(encodeURIComponent).join('/')}`;
      const { data, response } = await send(getBytes(url, o.signal), { retry: true, signal: o.signal });
      const sha256 = await checked(data, response);
      const contentType = response.headers.get('content-type') ?? 'application/octet-stream';
      const body = o.as === 'arraybuffer' ? data : o.as === 'blob' ? new Blob([data], { type: contentType }) : new TextDecoder().decode(data);
      return { path, data: body as FileBodyOf<K>, contentType, size: data.byteLength, sha256 };
    },

    /** What changed from generation `against` to generation `id` (two generations of one project). */
    async diff(id: string, against: string, o: DiffOptions = {}): Promise<GenerationDiff> {
      const query = { against, ...(o.patch === undefined ? {} : { patch: o.patch ? ('true' as const) : ('false' as const) }) };
      const { data } = await send((headers) => api.GET('/{id}/diff', { params: { path: { id }, query }, headers, signal: o.signal }), { retry: true, signal: o.signal });
      return data;
    },

    /**
     * Saves generation `id` again as its project's next version, server side (same files and metadata, plus
     * `restored_from`); nothing is overwritten. Retried only with a `generation_id`, which makes it idempotent.
     */
    async restore(id: string, o: RestoreOptions = {}): Promise<RestoredGeneration> {
      const body = o.generation_id === undefined ? {} : { generation_id: o.generation_id };
      const { data } = await send((headers) => api.POST('/{id}/restore', { params: { path: { id } }, body, headers, signal: o.signal }), { retry: o.generation_id !== undefined, signal: o.signal });
      return data;
    },

    /** Pins a generation: the retention policy never removes it. Sets a value (never toggles), so it is retried. */
    pin: (id: string, o: CallOptions = {}) => setPinned(id, true, o),
    /** Unpins a generation: the retention policy may remove it again (never the newest of its project). */
    unpin: (id: string, o: CallOptions = {}) => setPinned(id, false, o),

    /**
     * Deletes a generation and every copy of it. Retried like any delete; a retry that finds the generation
     * already gone (the first attempt deleted it, its answer was lost) counts as done.
     */
    async delete(id: string, o: CallOptions = {}): Promise<void> {
      try {
        await send((headers) => api.DELETE('/{id}', { params: { path: { id } }, headers, signal: o.signal }), { retry: true, signal: o.signal });
      } catch (err) {
        if (err instanceof StorageApiError && err.code === 'generation_not_found' && err.attempts > 1) return;
        throw err;
      }
    },

    /** The health report: answered for 200 (`ok`) and 503 (`degraded`) alike; never retried. */
    async health(o: CallOptions = {}): Promise<Health> {
      const url = `${baseUrl}/health`;
      const { data } = await send(async () => {
        const response = await fetchImpl(new Request(url, o.signal ? { signal: o.signal } : {}));
        const body = await readBody(response);
        const isReport = typeof body === 'object' && body !== null && 'status' in body;
        if (response.ok || (response.status === 503 && isReport)) return { data: body as Health, response };
        return { error: body, response };
      }, { retry: false, signal: o.signal, auth: false });
      return data;
    },

    /** The typed openapi-fetch client underneath (with the token, without retries), for what the methods above do not cover. */
    raw: api,
  };
  return client;
}

export type StorageClient = ReturnType<typeof createStorageClient>;

/**
 * A client signed in as the supabase-js client's user: each request carries the session's current access token
 * (`supabase.auth.getSession()`, which refreshes it when due). `baseUrl` defaults to the project's
 * `<supabaseUrl>/functions/v1/generations`.
 */
export function fromSupabase(supabase: SupabaseLike, options: Partial<Omit<StorageClientOptions, 'accessToken' | 'getAccessToken'>> = {}): StorageClient {
  const baseUrl = options.baseUrl ?? `${functionsUrlOf(supabase)}/generations`;
  return createStorageClient({
    ...options,
    baseUrl,
    getAccessToken: async () => {
      const { data, error } = await supabase.auth.getSession();
      if (error) throw error;
      return data.session?.access_token;
    },
  });
}

/** supabase-js keeps these protected (not in its public types), hence the look at the runtime object. */
function functionsUrlOf(supabase: SupabaseLike): string {
  const s = supabase as unknown as { functionsUrl?: URL | string; supabaseUrl?: string };
  if (s.functionsUrl) return String(s.functionsUrl).replace(/\/+$/, '');
  if (typeof s.supabaseUrl === 'string') return `${s.supabaseUrl.replace(/\/+$/, '')}/functions/v1`;
  throw new TypeError('fromSupabase: cannot tell the project URL from this client; pass { baseUrl }');
}

/**
 * The sha256 the server announced for these bytes (`X-Checksum-Sha256`), after checking it where WebCrypto is
 * available (browsers on https or localhost, Deno, Node 20+); a mismatch is `checksum_mismatch`.
 */
async function checked(data: ArrayBuffer, response: Response): Promise<string | null> {
  const sha256 = response.headers.get('x-checksum-sha256');
  if (sha256 && globalThis.crypto?.subtle) {
    const got = hex(await globalThis.crypto.subtle.digest('SHA-256', data));
    if (got !== sha256.toLowerCase()) {
      throw new StorageApiError('checksum_mismatch', response.status, `the bytes' sha256 is ${got}, the server announced ${sha256}`, { response });
    }
  }
  return sha256;
}

/** The body as JSON when it is JSON, else as text ('' when unreadable). */
async function readBody(response: Response): Promise<unknown> {
  const text = await response.text().catch(() => '');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `filename*=UTF-8''…` (RFC 6266) or `filename="…"`. */
export function filenameOf(disposition: string | null): string | undefined {
  if (!disposition) return undefined;
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(disposition);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      /* falls back to filename= */
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/.exec(disposition);
  const name = plain?.[1]?.replace(/\\(.)/g, '$1') ?? plain?.[2];
  return name || undefined;
}

const hex = (buf: ArrayBuffer) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
