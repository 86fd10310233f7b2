import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../functions/_shared/config.ts';
import { unpackLimitsFor } from '../../functions/_shared/limits.ts';
import { unpackGeneration } from '../../functions/_shared/archive/generation-archive.ts';
import { unpackTree } from '../../functions/_shared/archive/tar-gz.ts';
import { AppError } from '../../functions/_shared/errors.ts';
import { startNodeServer, type NodeServer } from '../../scripts/node-host.ts';
import { appContext, JWT_SECRET, memoryLogger, sampleFiles, tempDir, userToken, type AppContext } from '../helpers/context.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import { goodArchive, hostileArchives, MARKER } from './hostile-archives.ts';
import { findMarker, report, serverDatabase, sha256, treeDiff, treeSnapshot } from './support.ts';

// Reliability 2 — bad input. No endpoint accepts an uploaded archive (docs/API.md: saves are JSON), so hostile
// archives reach the service one way only: a cold read pulling the bucket's copy. Each one is registered as the
// generation's archive (its sha256 written into the row, as the service role), so the sha256 check passes and the
// unpacker is what must refuse it; the same corpus also goes through the unpackers directly (unpackTree, the
// in-memory one the cold read's checkGeneration runs, and unpackGeneration, the stream to disk). Hostile requests go to the real Node host over loopback
// HTTP, down to raw sockets. Every bad input gets a clear 4xx, nothing is written anywhere (a snapshot of the
// folder around the store, and a search for the entries' marker), and a good save and read work right after.

const BUCKET = 'codebegen-projects';
const LIMITS = { MAX_FILES: '50', MAX_FOLDERS: '50', MAX_FILE_BYTES: '65536', MAX_GENERATION_BYTES: '262144', MAX_METADATA_BYTES: '4096', MAX_REQUEST_BYTES: '524288' };
const MAX_FILES = Number(LIMITS.MAX_FILES);
/** What wiring.ts gives the cold-read unpacker for these limits. */
const UNPACK_LIMITS = unpackLimitsFor(loadConfig(LIMITS).limits);
const alice = randomUUID();
let A: string;

interface ErrorBody {
  error: { code: string; message: string };
}

beforeAll(async () => {
  A = await userToken(alice);
});

describe('hostile archives', () => {
  let root: ReturnType<typeof tempDir>;
  let standIn: StandIn;
  let ctx: AppContext;

  beforeAll(async () => {
    root = tempDir('codebegen-rel-archives-');
    standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
    ctx = await appContext(
      {
        ...LIMITS,
        STORAGE_PATH: join(root.path, 'srv', 'data', 'projects'),
        CACHE_PATH: join(root.path, 'srv', 'cache'),
        USE_CLOUD_STORAGE: 'true',
        SUPABASE_URL: standIn.url,
        SUPABASE_SERVICE_KEY: standIn.serviceKey,
      },
      undefined,
      { cloudRetry: { retries: 1, minTimeoutMs: 5, maxTimeoutMs: 10 } },
    );
    await ctx.cloud!.ensureBucket();
  });
  afterAll(async () => {
    await ctx?.close();
    await standIn?.close();
    root?.remove();
  });

  const call = (path: string, init: RequestInit = {}) =>
    ctx.app.request(`http://storage.test/generations${path}`, { ...init, headers: { authorization: `Bearer ${A}`, ...init.headers } });

  /** A good generation, uploaded and verified, then gone from this server: only the bucket holds it. */
  async function coldGeneration() {
    const res = await call('', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(3) }) });
    expect(res.status).toBe(201);
    const g = (await res.json()) as { generation_id: string; project_id: string; version: number; storage: { local_path: string } };
    await ctx.uploads!.idle();
    const dir = join(ctx.storage, g.storage.local_path);
    const manifest = new Uint8Array(readFileSync(join(dir, 'manifest.json')));
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.tar.gz`, { force: true });
    const [row] = await ctx.db.asService((tx) => tx.query<{ upload_status: string; storage_key: string }>('select upload_status, storage_key from generations where id = $1::uuid', [g.generation_id]));
    expect(row!.upload_status).toBe('uploaded');
    return { ...g, manifest, key: row!.storage_key, root: `v${g.version}__${g.generation_id}` };
  }

  /** Puts `bytes` in the bucket as the generation's archive and records their sha256 as the service would. */
  async function register(g: { generation_id: string; key: string }, bytes: Uint8Array) {
    writeFileSync(standIn.objectPath(BUCKET, g.key), bytes);
    await ctx.db.asService((tx) =>
      tx.query('update generations set archive_sha256 = $2, archive_size_bytes = $3 where id = $1::uuid', [g.generation_id, sha256(bytes), Math.max(1, bytes.byteLength)]),
    );
  }

  const bucketReads = (key: string) => standIn.requests.filter((r) => r.method === 'GET' && r.path.endsWith(key)).length;

  /** A good save and a read of it: the service keeps serving. */
  async function goodRoundTrip() {
    const res = await call('', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(2) }) });
    expect(res.status).toBe(201);
    const g = (await res.json()) as { generation_id: string; sha256: string };
    const dl = await call(`/${g.generation_id}/download`);
    expect(dl.status).toBe(200);
    expect(sha256(new Uint8Array(await dl.arrayBuffer()))).toBe(g.sha256);
  }

  it('control: the hand-made layout without a hostile entry is pulled, checked, cached and served', async () => {
    const g = await coldGeneration();
    const bytes = goodArchive(g.root, g.manifest);
    await register(g, bytes);
    const res = await call(`/${g.generation_id}/download`);
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(bytes));
    expect(bucketReads(g.key)).toBeGreaterThan(0);
    // Cached now: a second read does not go to the bucket.
    const reads = bucketReads(g.key);
    expect((await call(`/${g.generation_id}/download`)).status).toBe(200);
    expect(bucketReads(g.key)).toBe(reads);
  });

  const corpus = hostileArchives(UNPACK_LIMITS.maxEntries);

  it(`refuses each of ${corpus.length} hostile archives on a cold read with a clear 4xx, writes nothing, keeps serving`, async () => {
    const outcomes: Record<string, string> = {};
    // One generation stands for them all: each hostile archive in turn becomes its bucket copy and recorded sha256.
    const g = await coldGeneration();
    for (const c of corpus) {
      const bytes = c.build(g.root, g.manifest);
      await register(g, bytes);
      await ctx.uploads!.idle();
      const readsBefore = bucketReads(g.key);
      const before = treeSnapshot(root.path);

      const res = await call(`/${g.generation_id}/download`);
      const body = (await res.json()) as ErrorBody;
      outcomes[c.name] = `${res.status} ${body.error?.code}`;
      expect(res.status, `${c.name}: ${JSON.stringify(body)}`).toBeGreaterThanOrEqual(400);
      expect(res.status, c.name).toBeLessThan(500);
      expect(['invalid_archive', 'archive_too_large'], c.name).toContain(body.error.code);
      expect(body.error.message, c.name).not.toContain(root.path); // no server paths in answers
      // It was really pulled from the bucket (so the unpacker, not an earlier check, refused it)...
      expect(bucketReads(g.key), c.name).toBe(readsBefore + 1);
      // ...and nothing was written: not in the store, not in the cache, not around them.
      expect(treeDiff(before, treeSnapshot(root.path)), c.name).toEqual({ added: [], removed: [], changed: [] });
      expect(findMarker(root.path, MARKER, [tmpdir(), process.cwd()]), c.name).toEqual([]);
      // Not cached, not served later either: a second read is refused the same way, from the bucket again.
      expect((await call(`/${g.generation_id}/download`)).status, c.name).toBe(res.status);
      expect(bucketReads(g.key), c.name).toBe(readsBefore + 2);
      await goodRoundTrip();
    }
    report('bad-input-archives', { route: 'cold read (GET /{id}/download, bucket -> sha256 -> unpack check)', archives_tried: corpus.length, outcomes, written_outside_store: 0, kept_serving: corpus.length });
  }, 180_000);

  it('refuses the same corpus in the unpackers directly: 4xx AppErrors, nothing left at the destination or around it', async () => {
    const ref = { projectId: randomUUID(), generationId: randomUUID(), version: 1 };
    const rootName = `v1__${ref.generationId}`;
    const manifest = new TextEncoder().encode(
      JSON.stringify({ generation_id: ref.generationId, project_id: ref.projectId, version: 1, created_at: '2026-01-01T00:00:00Z', file_count: 1, total_size_bytes: 14, files: ['app.py'], metadata: {} }),
    );
    const area = join(root.path, 'direct');
    mkdirSync(area, { recursive: true });
    // The control passes both: into memory, and onto disk (what the cold read does, into the cache's scratch folder).
    expect((await unpackTree(goodArchive(rootName, manifest), UNPACK_LIMITS)).files.map((f) => f.path)).toEqual([`${rootName}/manifest.json`, `${rootName}/source/app.py`]);
    await unpackGeneration([goodArchive(rootName, manifest)], ref, UNPACK_LIMITS, join(area, 'control'));
    expect(readFileSync(join(area, 'control', 'source', 'app.py'), 'utf8')).toBe('print("fine")\n');
    rmSync(join(area, 'control'), { recursive: true });

    const codes: Record<string, Record<string, number>> = { unpackTree: {}, unpackGeneration: {} };
    const refused = async (name: string, fn: string, work: Promise<unknown>) => {
      const err = await work.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `${fn}: ${name}`).toBeInstanceOf(AppError);
      const { status, code } = err as AppError;
      expect(status, `${fn}: ${name}`).toBeGreaterThanOrEqual(400);
      expect(status, `${fn}: ${name}`).toBeLessThan(500);
      codes[fn]![code] = (codes[fn]![code] ?? 0) + 1;
    };
    for (const c of corpus) {
      const bytes = c.build(rootName, manifest);
      // A plain tar reader knows nothing of the generation's layout: it must take exactly the layout cases.
      if (c.layout) expect((await unpackTree(bytes, UNPACK_LIMITS)).files.length, c.name).toBeGreaterThan(0);
      else await refused(c.name, 'unpackTree', unpackTree(bytes, UNPACK_LIMITS));
      const before = treeSnapshot(root.path);
      const dest = join(area, 'dest');
      // Fed in small chunks, as a download arrives.
      const chunks = Array.from({ length: Math.ceil(bytes.byteLength / 4096) }, (_, i) => bytes.subarray(i * 4096, (i + 1) * 4096));
      await refused(c.name, 'unpackGeneration', unpackGeneration(chunks, ref, UNPACK_LIMITS, dest));
      expect(existsSync(dest), `${c.name}: something left at the destination`).toBe(false);
      expect(treeDiff(before, treeSnapshot(root.path)), c.name).toEqual({ added: [], removed: [], changed: [] });
      expect(findMarker(root.path, MARKER, [tmpdir(), process.cwd()]), c.name).toEqual([]);
    }
    report('bad-input-unpackers', { archives_tried: corpus.length, codes, left_at_destination: 0, written_outside: 0 });
  });
});

describe('hostile requests to the Node host over HTTP', () => {
  let root: ReturnType<typeof tempDir>;
  let dbDir: ReturnType<typeof tempDir>;
  let database: Awaited<ReturnType<typeof serverDatabase>>;
  let server: NodeServer;
  let base: string;

  beforeAll(async () => {
    root = tempDir('codebegen-rel-requests-');
    dbDir = tempDir('codebegen-rel-requests-db-');
    database = await serverDatabase(join(dbDir.path, 'db'), 'cb_badinput');
    server = await startNodeServer(
      {
        ...LIMITS,
        ...database.env,
        PORT: '0',
        STORAGE_PATH: join(root.path, 'srv', 'data', 'projects'),
        CACHE_PATH: join(root.path, 'srv', 'cache'),
        SUPABASE_JWT_SECRET: JWT_SECRET,
      },
      { log: memoryLogger() },
    );
    base = `http://127.0.0.1:${server.port}/functions/v1/generations`;
    mkdirSync(join(root.path, 'srv', 'data', 'projects'), { recursive: true });
  }, 90_000);
  afterAll(async () => {
    await server?.close();
    await database?.drop();
    root?.remove();
    dbDir?.remove();
  });

  interface Answer {
    status: number;
    body: string;
  }

  const auth = () => ({ authorization: `Bearer ${A}` });
  /**
   * One request on a connection of its own (`Connection: close`), as a hostile client would send it: what one
   * bad request does to a pooled keep-alive connection is the separate test at the end.
   */
  const once = (path: string, init: { method?: string; headers?: Record<string, string>; body?: string; chunks?: string[] } = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      let answered = false;
      const req = httpRequest(`${base}${path}`, { method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', (err) => answered || reject(err)); // the server may close while a refused body is still going out
      if (init.chunks) {
        for (const c of init.chunks) req.write(c);
        req.end();
      } else req.end(init.body);
    });
  const post = (body: string | object, contentType: string | null = 'application/json', extra: Record<string, string> = {}) =>
    once('', {
      method: 'POST',
      headers: { ...auth(), ...(contentType === null ? {} : { 'content-type': contentType }), ...extra },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  /**
   * Bytes written straight to a socket (what no HTTP client would send); the answer as status and body. With
   * `keepOpen` the socket is not half-closed: the first complete answer is taken and the socket dropped.
   */
  const raw = (request: string, { keepOpen = false } = {}): Promise<Answer> =>
    new Promise((resolve) => {
      const socket = connect(server.port, '127.0.0.1', () => (keepOpen ? socket.write(request) : socket.end(request)));
      let text = '';
      const done = () => {
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
        resolve({ status, body: text.split('\r\n\r\n').slice(1).join('\r\n\r\n') });
      };
      socket.on('data', (d) => {
        text += d;
        const [head, ...rest] = text.split('\r\n\r\n');
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(head ?? '')?.[1] ?? NaN);
        if (keepOpen && Buffer.byteLength(rest.join('\r\n\r\n')) >= length) socket.destroy();
      });
      socket.on('close', done).on('error', () => {});
      socket.setTimeout(10_000, () => socket.destroy());
    });
  const P = '/functions/v1/generations';

  type Case = [name: string, project: string | null, send: (project: string) => Promise<Answer>, status: number, code: string];
  const save = (project: string, files: unknown, more: object = {}) => post({ project_id: project, files, ...more });
  const many = (n: number, size = 1) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}.py`, 'x'.repeat(size)]));
  const chunked = (text: string) =>
    once('', { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, chunks: text.match(/[\s\S]{1,65536}/g) ?? [] });
  const rawPost = (headers: string, body: string, opts?: { keepOpen?: boolean }) =>
    raw(`POST ${P} HTTP/1.1\r\nHost: x\r\nauthorization: Bearer ${A}\r\ncontent-type: application/json\r\n${headers}\r\n${body}`, opts);
  const get = (path: string) => once(path, { headers: auth() });

  const cases: Case[] = [
    // path traversal and unsafe names in `files`
    ['file name "../../x"', 'new', (p) => save(p, { [`../../${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['file name climbing out via "app/../../.."', 'new', (p) => save(p, { [`app/../../../${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['absolute file name', 'new', (p) => save(p, { [`/tmp/${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['backslash traversal', 'new', (p) => save(p, { [`..\\..\\${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['drive letter', 'new', (p) => save(p, { [`C:/${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['NUL in a file name', 'new', (p) => save(p, { [`a\u0000${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['control character in a file name', 'new', (p) => save(p, { [`a\u001b[2J${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['a name of 300 bytes', 'new', (p) => save(p, { [`${'a'.repeat(300)}.py`]: 'x' }), 400, 'invalid_path'],
    ['a path of 1200 characters', 'new', (p) => save(p, { [`${'d/'.repeat(600)}${MARKER}.py`]: 'x' }), 400, 'invalid_path'],
    ['a folder as a file name', 'new', (p) => save(p, { 'app/': 'x' }), 400, 'invalid_path'],
    ['a file named __proto__', 'new', (p) => post(`{"project_id":"${p}","files":{"__proto__":"x","a.py":"y"}}`), 400, 'invalid_path'],
    ['names differing only in case', 'new', (p) => save(p, { 'A.py': 'x', 'a.py': 'y' }), 400, 'invalid_path'],
    // too much
    ['too many files', 'new', (p) => save(p, many(MAX_FILES + 1)), 413, 'payload_too_large'],
    ['a file over MAX_FILE_BYTES', 'new', (p) => save(p, { 'big.py': 'x'.repeat(65_537) }), 413, 'payload_too_large'],
    ['files over MAX_GENERATION_BYTES in all', 'new', (p) => save(p, many(5, 60_000)), 413, 'payload_too_large'],
    ['metadata over MAX_METADATA_BYTES', 'new', (p) => save(p, { 'a.py': 'x' }, { metadata: { m: 'x'.repeat(5000) } }), 413, 'payload_too_large'],
    ['a body over MAX_REQUEST_BYTES', 'new', (p) => save(p, { 'a.py': 'x'.repeat(600_000) }), 413, 'payload_too_large'],
    ['a 20 MB body', null, () => post('x'.repeat(20_000_000)), 413, 'payload_too_large'],
    ['a chunked body over MAX_REQUEST_BYTES (no Content-Length)', 'new', (p) => chunked(JSON.stringify({ project_id: p, files: { 'a.py': 'x'.repeat(600_000) } })), 413, 'payload_too_large'],
    ['Content-Length announcing 20 MB, no body sent', null, () => rawPost('content-length: 20000000\r\n', '', { keepOpen: true }), 413, 'payload_too_large'],
    // wrong types
    ['files as a list', 'new', (p) => save(p, ['a.py']), 400, 'invalid_request'],
    ['files as a string', 'new', (p) => save(p, 'a.py'), 400, 'invalid_request'],
    ['files null', 'new', (p) => save(p, null), 400, 'invalid_request'],
    ['a file content that is a number', 'new', (p) => save(p, { 'a.py': 1 }), 400, 'invalid_request'],
    ['a file content that is an object', 'new', (p) => save(p, { 'a.py': { x: 1 } }), 400, 'invalid_request'],
    ['version as a string', 'new', (p) => save(p, { 'a.py': 'x' }, { version: '1' }), 400, 'invalid_request'],
    ['version negative', 'new', (p) => save(p, { 'a.py': 'x' }, { version: -1 }), 400, 'invalid_request'],
    ['version 1e400', 'new', (p) => post(`{"project_id":"${p}","version":1e400,"files":{"a.py":"x"}}`), 400, 'invalid_request'],
    ['metadata as a list', 'new', (p) => save(p, { 'a.py': 'x' }, { metadata: [1] }), 400, 'invalid_request'],
    ['metadata with a NUL', 'new', (p) => save(p, { 'a.py': 'x' }, { metadata: { a: 'x\u0000' } }), 400, 'invalid_request'],
    ['metadata nested 10000 deep', 'new', (p) => post(`{"project_id":"${p}","files":{"a.py":"x"},"metadata":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`), 400, 'invalid_request'],
    ['content with an unpaired surrogate', 'new', (p) => save(p, { 'a.py': 'x\ud800' }), 400, 'invalid_request'],
    ['project_id as a number', null, () => post({ project_id: 42, files: { 'a.py': 'x' } }), 400, 'invalid_request'],
    ['a JSON array body', null, () => post('[]'), 400, 'invalid_request'],
    ['a JSON null body', null, () => post('null'), 400, 'invalid_request'],
    ['a JSON string body', null, () => post('"files"'), 400, 'invalid_request'],
    ['an unknown field', 'new', (p) => save(p, { 'a.py': 'x' }, { path: '../../etc' }), 400, 'invalid_request'],
    ['owner_id from a user', 'new', (p) => save(p, { 'a.py': 'x' }, { owner_id: randomUUID() }), 403, 'forbidden'],
    // invalid UUIDs
    ['project_id not a UUID', null, () => post({ project_id: 'not-a-uuid', files: { 'a.py': 'x' } }), 400, 'invalid_request'],
    ['project_id "../../etc"', null, () => post({ project_id: '../../etc', files: { 'a.py': 'x' } }), 400, 'invalid_request'],
    ['project_id with a newline', null, () => post({ project_id: `${randomUUID()}\n`, files: { 'a.py': 'x' } }), 400, 'invalid_request'],
    ['generation_id "../x"', 'new', (p) => save(p, { 'a.py': 'x' }, { generation_id: `../${MARKER}` }), 400, 'invalid_request'],
    ['GET /not-a-uuid', null, () => get('/not-a-uuid'), 400, 'invalid_request'],
    ['GET an id with %00', null, () => get(`/${randomUUID()}%00`), 400, 'invalid_request'],
    ['GET an encoded "../../etc/passwd" id', null, () => get('/..%2F..%2Fetc%2Fpasswd'), 400, 'invalid_request'],
    ['GET an id of 10000 characters', null, () => get(`/${'a'.repeat(10_000)}`), 400, 'invalid_request'],
    ['DELETE /not-a-uuid', null, () => once('/not-a-uuid', { method: 'DELETE', headers: auth() }), 400, 'invalid_request'],
    ['download of /not-a-uuid', null, () => get('/not-a-uuid/download'), 400, 'invalid_request'],
    ['download with a garbage token', null, () => once(`/${randomUUID()}/download?token=${'x'.repeat(500)}`), 401, 'invalid_download_token'],
    ['list without project_id', null, () => get(''), 400, 'invalid_request'],
    ['list with project_id not a UUID', null, () => get('?project_id=../../etc'), 400, 'invalid_request'],
    ['list with limit=-1', null, () => get(`?project_id=${randomUUID()}&limit=-1`), 400, 'invalid_request'],
    ['list with limit=1e9', null, () => get(`?project_id=${randomUUID()}&limit=1000000000`), 400, 'invalid_request'],
    ['list with a forged cursor', null, () => get(`?project_id=${randomUUID()}&cursor=${btoa("v:1' or 1=1")}`), 400, 'invalid_request'],
    ['a raw "/download/../../x" path', null, () => raw(`GET ${P}/${randomUUID()}/download/../../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), 400, 'invalid_request'],
    // not JSON, wrong content types
    ['non-JSON', null, () => post('{"project_id": '), 400, 'invalid_json'],
    ['an empty body', null, () => post(''), 400, 'invalid_json'],
    ['JSON with single quotes', null, () => post("{'project_id': 1}"), 400, 'invalid_json'],
    ['a gzip-encoded body (not decoded)', null, () => post('\u001f\u008b\u0008garbage', 'application/json', { 'content-encoding': 'gzip' }), 400, 'invalid_json'],
    ['content-type text/plain', null, () => post(JSON.stringify({ project_id: randomUUID(), files: { 'a.py': 'x' } }), 'text/plain'), 415, 'unsupported_media_type'],
    ['no content-type', null, () => post(JSON.stringify({ project_id: randomUUID(), files: { 'a.py': 'x' } }), null), 415, 'unsupported_media_type'],
    ['content-type multipart/form-data', null, () => post('--x\r\n\r\n--x--', 'multipart/form-data; boundary=x'), 415, 'unsupported_media_type'],
    ['content-type application/x-www-form-urlencoded', null, () => post('project_id=1&files=2', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type'],
    ['content-type application/jsonp', null, () => post('{}', 'application/jsonp'), 415, 'unsupported_media_type'],
    // what the HTTP parser refuses before any route runs
    ['headers over 16 KB', null, () => once('/health', { headers: { 'x-padding': 'a'.repeat(20_000) } }), 431, 'headers_too_large'],
    ['700 headers', null, () => raw(`GET ${P}/health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 700 }, (_, i) => `x-h${i}: ${'v'.repeat(20)}\r\n`).join('')}\r\n`), 431, 'headers_too_large'],
    ['a URL over 16 KB', null, () => raw(`GET ${P}/${'a'.repeat(17_000)} HTTP/1.1\r\nHost: x\r\n\r\n`), 431, 'headers_too_large'],
    ['a bearer token of 15 KB', null, () => once(`/${randomUUID()}`, { headers: { authorization: `Bearer ${'a'.repeat(15_000)}` } }), 401, 'unauthorized'],
    ['a broken request line', null, () => raw('NOT A REQUEST\r\n\r\n'), 400, 'invalid_request'],
    ['an unknown method', null, () => raw(`BREW ${P} HTTP/1.1\r\nHost: x\r\n\r\n`), 400, 'invalid_request'],
    ['an HTTP/2 preface', null, () => raw('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 400, 'invalid_request'],
    ['a header name with a space', null, () => raw(`GET ${P}/health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n`), 400, 'invalid_request'],
    ['a NUL in a header value', null, () => raw(`GET ${P}/health HTTP/1.1\r\nHost: x\r\nx-a: a\u0000b\r\n\r\n`), 400, 'invalid_request'],
    [
      'Content-Length with Transfer-Encoding (smuggling)',
      'new',
      (p) => {
        const json = JSON.stringify({ project_id: p, files: { 'a.py': 'x' } });
        return rawPost('content-length: 5\r\ntransfer-encoding: chunked\r\n', `${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`);
      },
      400,
      'invalid_request',
    ],
    ['two different Content-Lengths', null, () => rawPost('content-length: 5\r\ncontent-length: 6\r\n', '{}    '), 400, 'invalid_request'],
    ['a bad chunk size', null, () => rawPost('transfer-encoding: chunked\r\n', 'zz\r\nhello\r\n0\r\n\r\n'), 400, 'invalid_request'],
    ['a client hanging up mid-body', 'new', (p) => rawPost('content-length: 1000\r\n', `{"project_id":"${p}","files":{"${MARKER}.py":`), 400, 'invalid_request'],
    ['GET * (a target that is not a path)', null, () => raw(`GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), 400, 'invalid_request'],
    ['an absolute-form target', null, () => raw(`GET http://evil.example/functions/v1/generations/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), 400, 'invalid_request'],
    ['Expect: x (not 100-continue)', null, () => raw(`GET ${P}/health HTTP/1.1\r\nHost: x\r\nExpect: x\r\nConnection: close\r\n\r\n`), 417, 'invalid_request'],
    ['CONNECT', null, () => raw(`CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`), 405, 'method_not_allowed'],
  ];

  it(`answers each of ${cases.length} hostile requests with a clear 4xx, writes nothing, keeps serving`, async () => {
    const outcomes: Record<string, number> = {};
    for (const [name, project, sendIt, status, code] of cases) {
      const p = project === 'new' ? randomUUID() : '';
      const before = treeSnapshot(root.path);
      const answer = await sendIt(p);
      outcomes[name] = answer.status;
      expect(answer.status, `${name}: ${answer.body.slice(0, 300)}`).toBe(status);
      let body: ErrorBody;
      try {
        body = JSON.parse(answer.body) as ErrorBody;
      } catch {
        throw new Error(`${name}: the answer is not one JSON error body: ${JSON.stringify(answer.body.slice(0, 400))}`);
      }
      expect(body.error.code, name).toBe(code);
      expect(typeof body.error.message, name).toBe('string');
      expect(answer.body, name).not.toContain(root.path);
      expect(treeDiff(before, treeSnapshot(root.path)), name).toEqual({ added: [], removed: [], changed: [] });
      // No row either: the project the request named does not exist.
      if (p) expect((await get(`?project_id=${p}`)).status, name).toBe(404);
      // Keeps serving: a good save and its download, right after, through a pooled client (fetch).
      const good = await fetch(base, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(2, name) }) });
      expect(good.status, name).toBe(201);
      const g = (await good.json()) as { generation_id: string; sha256: string };
      const dl = await fetch(`${base}/${g.generation_id}/download`, { headers: auth() });
      expect(dl.status, name).toBe(200);
      expect(sha256(new Uint8Array(await dl.arrayBuffer())), name).toBe(g.sha256);
    }
    expect(findMarker(root.path, MARKER, [tmpdir(), process.cwd()])).toEqual([]);
    report('bad-input-requests', {
      host: `Node (startNodeServer) on ${database.kind}`,
      requests_tried: cases.length,
      by_status: Object.values(outcomes).reduce<Record<string, number>>((a, s) => ((a[s] = (a[s] ?? 0) + 1), a), {}),
      written_outside_store: 0,
      kept_serving: cases.length,
    });
  }, 180_000);

  // Found by this suite (fixed): the host's clientError handler used to write a second, unsolicited
  // "400 malformed HTTP request" after the 413 when the client then half-closed.
  it('a request announcing 20 MB and then half-closing gets exactly one answer (its 413)', async () => {
    const answer = await rawPost('content-length: 20000000\r\n', '');
    expect(answer.status).toBe(413);
    expect(answer.body, 'everything after the 413 head').toBe(JSON.stringify({ error: { code: 'payload_too_large', message: 'request body over 524288 bytes' } }));
  });

  // Found by this suite (fixed): a POST answered before its body was read (401, 415, 413 over MAX_REQUEST_BYTES)
  // said `Connection: keep-alive`, and ~500 ms later @hono/node-server gave up draining the unread body and dropped
  // the socket, losing a pooled client's next request ("SocketError: other side closed"). Such answers now say
  // `Connection: close`; the test accepts that or an answered next request.
  const big = () => JSON.stringify({ project_id: randomUUID(), files: { 'a.py': 'x'.repeat(300_000) } });
  it.each([
    ['401, no token', false, 'application/json', big],
    ['415, text/plain', true, 'text/plain', big],
    ['413, over MAX_REQUEST_BYTES', true, 'application/json', () => JSON.stringify({ project_id: randomUUID(), files: { 'a.py': 'x'.repeat(600_000) } })],
  ])('after a %s answered before a 300+ KB body was read, the keep-alive connection still answers the next request', async (label, withToken, type, body) => {
    const text = body();
    const headers = withToken ? `authorization: Bearer ${A}\r\n` : '';
    const first = { head: '' };
    const next = await new Promise<string>((resolve) => {
      const socket = connect(server.port, '127.0.0.1', () =>
        socket.write(`POST ${P} HTTP/1.1\r\nHost: x\r\n${headers}content-type: ${type}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`),
      );
      let got = '';
      socket.on('data', (d) => {
        got += d;
        if (!first.head && got.includes('}}')) {
          first.head = got.split('\r\n\r\n')[0]!;
          got = '';
          if (/\r\nconnection: close/i.test(first.head)) return socket.end(); // the client will not reuse it: fine
          socket.write(`GET ${P}/health HTTP/1.1\r\nHost: x\r\n\r\n`);
        } else if (first.head && got.includes('"status"')) socket.end();
      });
      socket.on('close', () => resolve(got.split('\r\n')[0] ?? '')).on('error', () => {});
      socket.setTimeout(5_000, () => socket.destroy());
    });
    expect(first.head, label).toMatch(/^HTTP\/1\.1 4\d\d /);
    if (/\r\nconnection: close/i.test(first.head)) return;
    expect(next, `${label}: the first answer said "${/connection: [\w-]+/i.exec(first.head)?.[0]}", then the next request on that connection got`).toMatch(/^HTTP\/1\.1 200 /);
  });
});
