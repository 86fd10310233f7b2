import { ERRORS } from './errors.ts';
import type { Reply } from './routes.ts';
import type { Store, StoredObject } from './store.ts';

// The real server's renderers (src/storage/renderer/*.ts) over the file backend (src/storage/backend/file.ts).

type Headers = Record<string, string | undefined>;

/** Anything with `text/html` is served as text/plain, so a bucket cannot host pages. */
const contentType = (mime: string) => (mime.includes('text/html') ? 'text/plain' : mime);

/** The headers every object answer shares (asset and head renderers). */
function baseHeaders(o: StoredObject, contentLength: number): Record<string, string> {
  return {
    'accept-ranges': 'bytes',
    'content-type': contentType(o.metadata.mimetype),
    etag: o.metadata.eTag,
    'x-robots-tag': 'none',
    'last-modified': new Date(o.updated_at).toUTCString(),
    'content-length': String(contentLength),
  };
}

/** Cache-Control, extended when the client revalidates with a stale ETag. */
function cacheControl(o: StoredObject, headers: Headers, onStale: string): string {
  const etag = headers['if-none-match'];
  return etag && etag !== o.metadata.eTag ? `${o.metadata.cacheControl}, ${onStale}` : o.metadata.cacheControl;
}

/** `download` -> Content-Disposition exactly as the real server writes it. */
function disposition(download: string | null | undefined): Record<string, string> {
  if (download === null || download === undefined) return {};
  if (download === '') return { 'content-disposition': 'attachment;' };
  const name = encodeURIComponent(download);
  return { 'content-disposition': `attachment; filename=${name}; filename*=UTF-8''${name}` };
}

/** `Range: bytes=a-b | a- | -n` against the object's size; anything else (or an empty object) is a 416. */
export function parseRange(range: string, size: number): { from: number; to: number } {
  const match = /^bytes=(\d*)-(\d*)$/.exec(range);
  if (!match || size <= 0 || (!match[1] && !match[2])) throw ERRORS.invalidRange();
  if (!match[1]) {
    const suffix = Number(match[2]);
    if (!Number.isSafeInteger(suffix) || suffix <= 0) throw ERRORS.invalidRange();
    return { from: Math.max(size - suffix, 0), to: size - 1 };
  }
  const from = Number(match[1]);
  const to = match[2] ? Number(match[2]) : size - 1;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < from || from >= size) throw ERRORS.invalidRange();
  return { from, to: Math.min(to, size - 1) };
}

/**
 * GET: the bytes. A matching `If-None-Match` is a 304 without a body, `Range` a 206 with `Content-Range`; signed
 * URLs send `Expires` (the token's expiry) instead of `Cache-Control`.
 */
export async function renderAsset(store: Store, o: StoredObject, headers: Headers, opts: { download?: string | null; expires?: string }): Promise<Reply> {
  const cache: Record<string, string> = opts.expires ? { expires: opts.expires } : { 'cache-control': cacheControl(o, headers, 'stale-while-revalidate=30') };
  if (headers['if-none-match'] && headers['if-none-match'] === o.metadata.eTag) {
    return { status: 304, headers: { ...baseHeaders(o, 0), ...cache, ...disposition(opts.download) }, body: null };
  }
  const bytes = await store.read(o.bucket_id, o.name);
  if (!headers.range) return { headers: { ...baseHeaders(o, bytes.byteLength), ...cache, ...disposition(opts.download) }, body: bytes };
  const { from, to } = parseRange(headers.range, bytes.byteLength);
  return {
    status: 206,
    headers: { ...baseHeaders(o, to - from + 1), ...cache, 'content-range': `bytes ${from}-${to}/${bytes.byteLength}`, ...disposition(opts.download) },
    body: bytes.subarray(from, to + 1),
  };
}

/** HEAD: the asset's headers from the object's row, no body (no 304 and no ranges here). */
export function renderHead(o: StoredObject, headers: Headers): Reply {
  return { headers: { ...baseHeaders(o, o.metadata.contentLength), 'cache-control': cacheControl(o, headers, 'must-revalidate') }, body: null };
}

/** GET info: the row as JSON; `metadata` is the user metadata (`{}` unless the upload sent some). */
export function renderInfo(o: StoredObject): Reply {
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
