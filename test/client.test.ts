import { describe, expect, it } from 'vitest';
import { createStorageClient, filenameOf, fromSupabase, isStorageApiError, StorageApiError, type Generation } from '../clients/typescript/src/index.ts';
import { backoffMs, DEFAULT_RETRY } from '../clients/typescript/src/retry.ts';

// The TypeScript client against a scripted fetch: which calls are retried, on what, and what is thrown.
// test/browser.test.ts runs it against the real server from a real browser.

const base = 'https://ref.supabase.co/functions/v1/generations';
const id = '0b0f0a44-3c39-4d63-9f3c-8d1a6f9c2b11';
const project = '6f1c6a9e-0b8e-4a53-a5f5-3b2f7f3f2d10';
const generation = {
  generation_id: id,
  project_id: project,
  version: 1,
  file_count: 1,
  total_size_bytes: 2,
  sha256: 'ab',
  archive_size_bytes: 3,
  created_at: '2026-01-01T00:00:00.000Z',
  pinned: false,
  download_url: `${base}/${id}/download?token=t`,
  zip_url: `${base}/${id}/download?format=zip&token=t`,
  expires_in: 3600,
  storage: { local_path: 'x', cloud_enabled: false, uploaded: false, status: 'local' },
} as Generation;

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
const apiError = (status: number, code: string, message = code) => json(status, { error: { code, message } });

/** A fetch that answers from `script` in turn (a function throws to simulate a network failure) and records requests. */
function scripted(...script: (Response | (() => never))[]) {
  const requests: Request[] = [];
  const fetch = async (r: Request) => {
    requests.push(r);
    const next = script.shift();
    if (!next) throw new Error(`unexpected request ${r.method} ${r.url}`);
    return typeof next === 'function' ? next() : next;
  };
  return { fetch, requests };
}
const offline = () => {
  throw new TypeError('fetch failed');
};
const fast = { minDelayMs: 1, maxDelayMs: 2 };

describe('the TypeScript client', () => {
  it('sends the token, and throws one typed error carrying the API code, status and message', async () => {
    const { fetch, requests } = scripted(apiError(404, 'generation_not_found', 'generation not found'));
    const client = createStorageClient({ baseUrl: `${base}/`, accessToken: 'tok', fetch });
    const err = await client.get(id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageApiError);
    expect(err).toMatchObject({ name: 'StorageApiError', code: 'generation_not_found', status: 404, message: 'generation not found', attempts: 1 });
    expect(isStorageApiError(err, 'generation_not_found')).toBe(true);
    expect(isStorageApiError(err, 'unauthorized')).toBe(false);
    expect(requests[0]!.url).toBe(`${base}/${id}`);
    expect(requests[0]!.headers.get('authorization')).toBe('Bearer tok');
  });

  it('retries GETs on 5xx and network failures with a fresh token each time, never on 4xx', async () => {
    let n = 0;
    const { fetch, requests } = scripted(apiError(503, 'storage_unavailable'), offline, json(200, generation));
    const client = createStorageClient({ baseUrl: base, getAccessToken: () => `t${++n}`, fetch, retry: fast });
    expect(await client.get(id)).toEqual(generation);
    expect(requests.map((r) => r.headers.get('authorization'))).toEqual(['Bearer t1', 'Bearer t2', 'Bearer t3']);

    const once = scripted(apiError(401, 'unauthorized'));
    await expect(createStorageClient({ baseUrl: base, fetch: once.fetch, retry: fast }).get(id)).rejects.toMatchObject({ code: 'unauthorized', attempts: 1 });
    expect(once.requests).toHaveLength(1);
  });

  it('gives up after the retries with the last error, or network_error when no answer ever came', async () => {
    const down = scripted(...Array.from({ length: 4 }, () => apiError(500, 'internal_error')));
    await expect(createStorageClient({ baseUrl: base, fetch: down.fetch, retry: fast }).get(id)).rejects.toMatchObject({ code: 'internal_error', status: 500, attempts: 4 });
    const gone = scripted(offline, offline);
    await expect(createStorageClient({ baseUrl: base, fetch: gone.fetch, retry: { ...fast, retries: 1 } }).get(id)).rejects.toMatchObject({ code: 'network_error', status: 0, attempts: 2 });
    const corrupt = scripted(apiError(502, 'cloud_corrupt'));
    await expect(createStorageClient({ baseUrl: base, fetch: corrupt.fetch, retry: fast }).get(id)).rejects.toMatchObject({ code: 'cloud_corrupt', attempts: 1 });
  });

  it('retries a save only when it carries a generation_id (then a repeat is a replay)', async () => {
    const files = { 'a.txt': 'a' };
    const anonymous = scripted(apiError(503, 'storage_unavailable'));
    const c1 = createStorageClient({ baseUrl: base, fetch: anonymous.fetch, retry: fast });
    await expect(c1.save({ project_id: project, files })).rejects.toMatchObject({ code: 'storage_unavailable', attempts: 1 });

    const named = scripted(apiError(503, 'storage_unavailable'), offline, json(201, generation, { 'idempotent-replayed': 'true' }));
    const c2 = createStorageClient({ baseUrl: base, fetch: named.fetch, retry: fast });
    expect(await c2.save({ project_id: project, generation_id: id, files })).toEqual(generation);
    expect(named.requests).toHaveLength(3);
    for (const r of named.requests) {
      expect(r.method).toBe('POST');
      expect(await r.json()).toEqual({ project_id: project, generation_id: id, files });
    }
  });

  it('treats a delete retry that finds the generation gone as done, but not a first 404', async () => {
    const lost = scripted(offline, apiError(404, 'generation_not_found'));
    await expect(createStorageClient({ baseUrl: base, fetch: lost.fetch, retry: fast }).delete(id)).resolves.toBeUndefined();
    expect(lost.requests.map((r) => r.method)).toEqual(['DELETE', 'DELETE']);
    const never = scripted(apiError(404, 'generation_not_found'));
    await expect(createStorageClient({ baseUrl: base, fetch: never.fetch }).delete(id)).rejects.toMatchObject({ code: 'generation_not_found' });
  });

  it('iterates over every page of a project', async () => {
    const item = (version: number) => ({ ...generation, version, download_url: undefined, expires_in: undefined });
    const { fetch, requests } = scripted(json(200, { items: [item(3), item(2)], next_cursor: 'djox' }), json(200, { items: [item(1)], next_cursor: null }));
    const client = createStorageClient({ baseUrl: base, fetch });
    const versions: number[] = [];
    for await (const g of client.list(project, { limit: 2 })) versions.push(g.version);
    expect(versions).toEqual([3, 2, 1]);
    expect(requests.map((r) => new URL(r.url).search)).toEqual([`?project_id=${project}&limit=2`, `?project_id=${project}&limit=2&cursor=djox`]);
  });

  it('downloads through the signed URL without the bearer token, with the name from content-disposition', async () => {
    const bytes = new TextEncoder().encode('archive');
    const sha = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
    const ok = () => new Response(bytes, { headers: { 'content-type': 'application/gzip', 'content-disposition': `attachment; filename="v1__${id}.tar.gz"`, 'x-checksum-sha256': sha } });
    const { fetch, requests } = scripted(ok(), ok());
    const client = createStorageClient({ baseUrl: base, accessToken: 'tok', fetch });
    const got = await client.download(generation, { as: 'arraybuffer' });
    expect(got).toMatchObject({ filename: `v1__${id}.tar.gz`, size: 7, sha256: sha, contentType: 'application/gzip' });
    expect(new Uint8Array(got.data)).toEqual(bytes);
    expect(requests[0]!.url).toBe(generation.download_url);
    expect(requests[0]!.headers.get('authorization')).toBeNull();
    const blob = await client.download(id);
    expect(blob.data).toBeInstanceOf(Blob);
    expect(requests[1]!.url).toBe(`${base}/${id}/download`);
    expect(requests[1]!.headers.get('authorization')).toBe('Bearer tok');

    // An expired link: once more through the authenticated route.
    const expired = scripted(apiError(401, 'download_token_expired'), ok());
    const c2 = createStorageClient({ baseUrl: base, accessToken: 'tok', fetch: expired.fetch });
    expect((await c2.download(generation)).filename).toBe(`v1__${id}.tar.gz`);
    expect(expired.requests.map((r) => [r.url, r.headers.get('authorization')])).toEqual([
      [generation.download_url, null],
      [`${base}/${id}/download`, 'Bearer tok'],
    ]);

    const bad = scripted(new Response(bytes, { headers: { 'x-checksum-sha256': '00'.repeat(32) } }));
    await expect(createStorageClient({ baseUrl: base, fetch: bad.fetch }).download(id)).rejects.toMatchObject({ code: 'checksum_mismatch' });
  });

  it('opens one file by its path, each segment encoded, as text by default, checked against its sha256', async () => {
    const text = 'Grüße ✓\n';
    const bytes = new TextEncoder().encode(text);
    const sha = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
    const ok = () => new Response(bytes, { headers: { 'content-type': 'text/markdown; charset=utf-8', etag: `"${sha}"`, 'x-checksum-sha256': sha } });
    const { fetch, requests } = scripted(ok(), ok(), new Response(bytes, { headers: { 'x-checksum-sha256': '0'.repeat(64) } }));
    const client = createStorageClient({ baseUrl: base, accessToken: 'tok', fetch });
    expect(await client.file(id, 'docs/notes été #1?.md')).toEqual({ path: 'docs/notes été #1?.md', data: text, contentType: 'text/markdown; charset=utf-8', size: bytes.length, sha256: sha });
    expect(requests[0]!.url).toBe(`${base}/${id}/files/docs/notes%20%C3%A9t%C3%A9%20%231%3F.md`);
    expect(requests[0]!.headers.get('authorization')).toBe('Bearer tok');
    expect(new Uint8Array((await client.file(id, 'a.md', { as: 'arraybuffer' })).data)).toEqual(bytes);
    await expect(client.file(id, 'a.md')).rejects.toMatchObject({ code: 'checksum_mismatch' });
  });

  it('diffs with the query the API takes, and pins with PATCH', async () => {
    const other = '7a1c6a9e-0b8e-4a53-a5f5-3b2f7f3f2d10';
    const diff = { generation_id: id, project_id: project, version: 2, against: { generation_id: other, version: 1 }, added: [], removed: [], modified: [], unchanged_count: 3 };
    const { fetch, requests } = scripted(json(200, diff), json(200, diff), json(200, { ...generation, pinned: true }), json(200, { ...generation, pinned: false }));
    const client = createStorageClient({ baseUrl: base, fetch });
    expect(await client.diff(id, other)).toEqual(diff);
    await client.diff(id, other, { patch: true });
    expect(requests.map((r) => r.url)).toEqual([`${base}/${id}/diff?against=${other}`, `${base}/${id}/diff?against=${other}&patch=true`]);
    expect((await client.pin(id)).pinned).toBe(true);
    expect((await client.unpin(id)).pinned).toBe(false);
    expect(await Promise.all(requests.slice(2).map(async (r) => [r.method, r.url, await r.json()]))).toEqual([
      ['PATCH', `${base}/${id}`, { pinned: true }],
      ['PATCH', `${base}/${id}`, { pinned: false }],
    ]);
  });

  it('retries a restore only when it names the new generation_id', async () => {
    const restored = { ...generation, version: 2, restored_from: { generation_id: id, version: 1 } };
    const anonymous = scripted(apiError(503, 'storage_unavailable'));
    await expect(createStorageClient({ baseUrl: base, fetch: anonymous.fetch, retry: fast }).restore(id)).rejects.toMatchObject({ attempts: 1 });
    expect(await anonymous.requests[0]!.json()).toEqual({});
    const named = scripted(offline, json(201, restored));
    expect(await createStorageClient({ baseUrl: base, fetch: named.fetch, retry: fast }).restore(id, { generation_id: project })).toEqual(restored);
    expect(named.requests.map((r) => r.url)).toEqual([`${base}/${id}/restore`, `${base}/${id}/restore`]);
    expect(await named.requests[1]!.json()).toEqual({ generation_id: project });
  });

  it('answers the health report for 200 and 503 alike, and names a body that is not the API\'s', async () => {
    const report = { status: 'degraded', db: { ok: false }, storage: { ok: true }, cloud: { enabled: false, ok: null }, outbox: null };
    const { fetch } = scripted(json(503, report), new Response('<html>bad gateway</html>', { status: 502 }));
    const client = createStorageClient({ baseUrl: base, fetch });
    expect(await client.health()).toEqual(report);
    await expect(client.health()).rejects.toMatchObject({ code: 'invalid_response', status: 502 });
  });

  it('fromSupabase: the session token on every request, the project URL as the default base', async () => {
    const { fetch, requests } = scripted(json(200, generation), apiError(401, 'unauthorized'));
    let session: { access_token: string } | null = { access_token: 'user-jwt' };
    const supabase = { functionsUrl: new URL('https://ref.supabase.co/functions/v1'), auth: { getSession: async () => ({ data: { session }, error: null }) } };
    const client = fromSupabase(supabase, { fetch });
    expect(client.baseUrl).toBe(base);
    await client.get(id);
    expect(requests[0]!.headers.get('authorization')).toBe('Bearer user-jwt');
    session = null;
    await expect(client.get(id)).rejects.toMatchObject({ code: 'unauthorized' });
    expect(requests[1]!.headers.get('authorization')).toBeNull();
    expect(fromSupabase({ supabaseUrl: 'http://127.0.0.1:54321/', auth: supabase.auth } as never).baseUrl).toBe('http://127.0.0.1:54321/functions/v1/generations');
  });

  it('reads file names from content-disposition, and backs off exponentially within bounds', () => {
    expect(filenameOf('attachment; filename="v2__x.zip"')).toBe('v2__x.zip');
    expect(filenameOf("attachment; filename=\"a.zip\"; filename*=UTF-8''%C3%A9t%C3%A9.zip")).toBe('été.zip');
    expect(filenameOf('inline')).toBeUndefined();
    expect(backoffMs(1, DEFAULT_RETRY, null, () => 0)).toBe(125);
    expect(backoffMs(3, DEFAULT_RETRY, null, () => 1)).toBe(1000);
    expect(backoffMs(10, DEFAULT_RETRY, null, () => 1)).toBe(5000);
    expect(backoffMs(1, DEFAULT_RETRY, '2')).toBe(2000);
  });
});
