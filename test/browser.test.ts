import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { build } from 'esbuild';
import { unzipSync } from 'fflate';
import { chromium, type Browser, type CDPSession, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Generation } from '../clients/typescript/src/index.ts';
import { unpackTree } from '../functions/_shared/archive/tar-gz.ts';
import type { Setup } from './browser/app.ts';
import { freePort, JWT_SECRET, sampleFiles, tempDir, userToken } from './helpers/context.ts';
import { ServerProcess } from './helpers/server-process.ts';

// The TypeScript client in a real browser: Debian's Chromium, driven by playwright-core, loads a page from one
// origin (a static server of ours) that calls the API on another (`npm start`'s server, CORS_ALLOWED_ORIGINS set to
// the page's origin). Every request carries `authorization`, so the browser sends real CORS preflights; the test
// watches them through the DevTools protocol. A screenshot of the page is left in .artifacts/browser/.

/** Debian's chromium package; CHROMIUM_PATH points elsewhere (e.g. to check what happens without one). */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT = '.artifacts/browser/client.png';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI !== 'true') {
  console.warn(`\n!!! ${CHROMIUM} is missing: the browser test SKIPS. Install Debian's chromium (apt-get install chromium). !!!\n`);
}

describe.runIf(!haveChromium && process.env.CI === 'true')('the browser test on CI', () => {
  it('has Chromium', () => {
    expect.fail(`${CHROMIUM} is missing: .ci/run installs Debian's chromium package; the browser test cannot run without it`);
  });
});

interface Preflight {
  url: string;
  requestHeaders: Record<string, string>;
  status?: number;
  responseHeaders?: Record<string, string>;
}

describe.runIf(haveChromium)('the TypeScript client in Chromium, from another origin', () => {
  let dir: ReturnType<typeof tempDir>;
  const alice = randomUUID();
  const bob = randomUUID();
  const projectId = randomUUID();
  const files1 = {
    ...sampleFiles(5),
    'src/App.tsx': 'export const App = () => <h1>Todo</h1>;\n',
    'assets/logo.svg': '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    'docs/notes été.md': '# Grüße\n\nünïcödé ✓\n',
  };
  const files2 = { ...files1, 'src/App.tsx': 'export const App = () => <h1>Todo, with tags</h1>;\n', 'src/tags.ts': 'export const tags: string[] = [];\n' };
  delete (files2 as Record<string, string>)['assets/logo.svg'];

  let api: ServerProcess;
  let pages: Server;
  let pageOrigin: string;
  let browser: Browser;
  let page: Page;
  let cdp: CDPSession;
  const preflights = new Map<string, Preflight>();
  const consoleLines: string[] = [];
  let saved: { v1: Generation; v2: Generation };

  beforeAll(async () => {
    dir = tempDir();
    // The page and its module, bundled from TypeScript for the browser (platform "browser": a Node built-in in
    // the client would fail this build).
    const bundle = await build({
      entryPoints: ['test/browser/app.ts'],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      sourcemap: 'inline',
      logLevel: 'silent',
    });
    const js = bundle.outputFiles[0]!.text;
    const html = readFileSync('test/browser/index.html', 'utf8');
    pages = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
      else if (path === '/app.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
      else res.writeHead(404).end();
    });
    const pagePort = await freePort();
    await new Promise<void>((resolve) => pages.listen(pagePort, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${pagePort}`;

    const apiPort = await freePort();
    api = await new ServerProcess({
      PATH: process.env.PATH,
      PORT: String(apiPort),
      PUBLIC_URL: `http://127.0.0.1:${apiPort}`,
      STORAGE_PATH: join(dir.path, 'projects'),
      PGLITE_DATA_DIR: join(dir.path, 'db'),
      CACHE_PATH: join(dir.path, 'cache'),
      SUPABASE_JWT_SECRET: JWT_SECRET,
      CORS_ALLOWED_ORIGINS: pageOrigin,
      LOG_LEVEL: 'warn',
    }).start();

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
    // Preflights are not page requests: the DevTools protocol is where the browser shows them.
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.requestWillBeSent', (e) => {
      if (e.type === 'Preflight' || e.request.method === 'OPTIONS') preflights.set(e.requestId, { url: e.request.url, requestHeaders: lower(e.request.headers) });
    });
    cdp.on('Network.responseReceived', (e) => {
      const p = preflights.get(e.requestId);
      if (p) Object.assign(p, { status: e.response.status, responseHeaders: lower(e.response.headers) });
    });
    await page.goto(`${pageOrigin}/`);
    await page.waitForFunction(() => 'steps' in window);
  }, 120_000);

  afterAll(async () => {
    if (page) {
      mkdirSync('.artifacts/browser', { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch(() => {});
    }
    await browser?.close();
    await api?.kill();
    await new Promise((r) => (pages ? pages.close(r) : r(undefined)));
    dir?.remove();
  });

  /** One step of test/browser/app.ts, in the page. */
  const run = <K extends keyof Window['steps']>(name: K, ...args: Parameters<Window['steps'][K]>) =>
    page.evaluate(([n, a]) => (window.steps[n] as (...x: unknown[]) => Promise<unknown>)(...a), [name, args] as const) as ReturnType<Window['steps'][K]>;

  it('signs in from the page with a Supabase session holding a user token', async () => {
    const setup: Setup = { baseUrl: api.base, aliceToken: await userToken(alice), bobToken: await userToken(bob), projectId };
    expect(await run('setup', setup)).toEqual({ baseUrl: api.base, origin: pageOrigin });
    expect(pageOrigin).not.toBe(new URL(api.base).origin);
    expect(await run('health')).toMatchObject({ status: 'ok' });
  });

  it('saves two versions, each with a preflight that asks for authorization and content-type', async () => {
    const r = await run('save', files1, files2);
    saved = r;
    expect(r.v1).toMatchObject({ project_id: projectId, version: 1, file_count: Object.keys(files1).length });
    expect(r.v2).toMatchObject({ project_id: projectId, version: 2, file_count: Object.keys(files2).length });
    // The replay is answered 201 again, and the browser may read Idempotent-Replayed: CORS exposes it.
    expect(r).toMatchObject({ replayStatus: 201, replayed: 'true', replayId: r.v1.generation_id });

    const post = [...preflights.values()].find((p) => p.url.replace(/\/$/, '') === api.base && p.requestHeaders['access-control-request-method'] === 'POST');
    expect(post, `no POST preflight seen; preflights: ${JSON.stringify([...preflights.values()])}`).toBeDefined();
    expect(post!.requestHeaders.origin).toBe(pageOrigin);
    expect(post!.requestHeaders['access-control-request-headers']?.split(',').map((h) => h.trim()).sort()).toEqual(['authorization', 'content-type']);
    expect(post!.status).toBe(204);
    expect(post!.responseHeaders?.['access-control-allow-origin']).toBe(pageOrigin);
    expect(post!.responseHeaders?.['access-control-allow-methods']).toMatch(/\bPOST\b/);
  });

  it('lists every version across pages, newest first', async () => {
    expect(await run('list')).toEqual({ versions: [2, 1], firstPage: [2], nextCursor: expect.any(String) });
    const get = [...preflights.values()].find((p) => p.requestHeaders['access-control-request-method'] === 'GET');
    expect(get?.requestHeaders['access-control-request-headers']).toBe('authorization');
    expect(get?.responseHeaders?.['access-control-allow-origin']).toBe(pageOrigin);
  });

  it('gets a generation with a fresh signed URL', async () => {
    const g = await run('get');
    expect(g).toMatchObject({ generation_id: saved.v2.generation_id, version: 2, storage: { status: 'local' } });
    expect(g.download_url).toMatch(new RegExp(`^${api.base.replace(/[.]/g, '\\.')}/${g.generation_id}/download\\?token=`));
  });

  it('downloads the tar.gz through the signed URL: the exposed name and checksum, and the saved files', async () => {
    const d = await run('downloadTarGz');
    const name = `v1__${saved.v1.generation_id}.tar.gz`;
    expect(d).toMatchObject({ filename: name, sha256: saved.v1.sha256, contentType: 'application/gzip', size: saved.v1.archive_size_bytes });
    // What the page's own fetch may read: CORS exposes both headers to the page's origin.
    expect(d.visible).toMatchObject({ status: 200, disposition: `attachment; filename="${name}"`, checksum: saved.v1.sha256 });
    const bytes = Buffer.from(d.bytes, 'base64');
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(saved.v1.sha256);
    const tree = await unpackTree(new Uint8Array(bytes), { maxEntries: 100, maxFileBytes: 1e6, maxTotalBytes: 1e7 });
    const root = `v1__${saved.v1.generation_id}/source/`;
    expect(Object.fromEntries(tree.files.filter((f) => f.path.startsWith(root)).map((f) => [f.path.slice(root.length), new TextDecoder().decode(f.data)]))).toEqual(files1);
  });

  it('browses the files of a generation: paths, sizes, sha256s and media types from the manifest', async () => {
    const r = await run('files');
    expect(r).toMatchObject({ generation_id: saved.v2.generation_id, version: 2, file_count: Object.keys(files2).length });
    expect(Object.fromEntries(r.files.map((f) => [f.path, { size_bytes: f.size_bytes, sha256: f.sha256 }]))).toEqual(
      Object.fromEntries(Object.entries(files2).map(([p, text]) => [p, { size_bytes: Buffer.byteLength(text), sha256: sha256(text) }])),
    );
    expect(r.files.every((f) => typeof f.media_type === 'string' && f.media_type.length > 0)).toBe(true);
  });

  it('opens one file (a non-ASCII name, UTF-8 content) as text and as bytes, checked against its sha256', async () => {
    const path = 'docs/notes été.md';
    const r = await run('file', path);
    expect(r).toMatchObject({ text: files2[path], sha256: sha256(files2[path]!), size: Buffer.byteLength(files2[path]!) });
    expect(r.contentType).toMatch(/charset=utf-8/i);
    expect(Buffer.from(r.bytes, 'base64').toString('utf8')).toBe(files2[path]);
  });

  it('diffs v2 against v1: exactly the added, removed and modified files, and a patch', async () => {
    const { plain, withPatches } = await run('diff');
    const before = files1 as Record<string, string>;
    const after = files2 as Record<string, string>;
    const added = Object.keys(after).filter((p) => !(p in before));
    const removed = Object.keys(before).filter((p) => !(p in after));
    const modified = Object.keys(after).filter((p) => p in before && before[p] !== after[p]);
    const unchanged = Object.keys(after).filter((p) => before[p] === after[p]).length;
    expect(plain).toMatchObject({ generation_id: saved.v2.generation_id, version: 2, against: { generation_id: saved.v1.generation_id, version: 1 }, unchanged_count: unchanged });
    expect(plain.added.map((f) => f.path).sort()).toEqual(added.sort());
    expect(plain.removed.map((f) => f.path).sort()).toEqual(removed.sort());
    expect(plain.modified.map((f) => [f.path, f.from.sha256, f.to.sha256])).toEqual(modified.map((p) => [p, sha256(before[p]!), sha256(after[p]!)]));
    expect(plain.modified.every((f) => f.patch === undefined)).toBe(true);
    const patch = withPatches.modified.find((f) => f.path === 'src/App.tsx')?.patch;
    expect(patch).toContain('-export const App = () => <h1>Todo</h1>;');
    expect(patch).toContain('+export const App = () => <h1>Todo, with tags</h1>;');
  });

  it('downloads the zip through the signed URL: the exposed name, the saved files, the same bytes twice', async () => {
    const d = await run('downloadZip');
    const name = `v1__${saved.v1.generation_id}.zip`;
    expect(d).toMatchObject({ filename: name, bearerName: name, sameAgain: true });
    expect(d.contentType).toMatch(/^application\/zip/);
    expect(d.visible).toMatchObject({ status: 200, disposition: `attachment; filename="${name}"` });
    const entries = unzipSync(new Uint8Array(Buffer.from(d.bytes, 'base64')));
    const root = `v1__${saved.v1.generation_id}/source/`;
    const got = Object.fromEntries(Object.entries(entries).filter(([p]) => p.startsWith(root) && !p.endsWith('/')).map(([p, b]) => [p.slice(root.length), Buffer.from(b).toString('utf8')]));
    expect(got).toEqual(files1);
  });

  it('restores v1 as v3 (idempotent by generation_id) and pins it, with a preflight for PATCH', async () => {
    const r = await run('restore');
    expect(r.v3).toMatchObject({ project_id: projectId, version: 3, restored_from: { generation_id: saved.v1.generation_id, version: 1 } });
    expect(r).toMatchObject({ againId: r.v3.generation_id, pinned: true, unpinned: false, repinned: true });
    expect(r.files.sort()).toEqual(Object.keys(files1).sort());
    const patch = [...preflights.values()].find((p) => p.requestHeaders['access-control-request-method'] === 'PATCH');
    expect(patch, 'no PATCH preflight seen').toBeDefined();
    expect(patch!.responseHeaders?.['access-control-allow-methods']).toMatch(/\bPATCH\b/);
    expect(patch!.responseHeaders?.['access-control-allow-origin']).toBe(pageOrigin);
  });

  it("sees another user's project and generation answer 404 with the typed error code", async () => {
    const r = await run('otherUser');
    const notFound = (code: string) => ({ threw: true, isStorageApiError: true, name: 'StorageApiError', code, status: 404 });
    expect(r).toEqual({ list: notFound('project_not_found'), get: notFound('generation_not_found'), download: notFound('generation_not_found'), delete: notFound('generation_not_found') });
  });

  it("sees another user's files, diff, zip, restore and pin answer 404 too", async () => {
    const r = await run('otherUserFiles');
    const notFound = { threw: true, isStorageApiError: true, name: 'StorageApiError', code: 'generation_not_found', status: 404 };
    expect(r).toEqual({ files: notFound, file: notFound, diff: notFound, zip: notFound, restore: notFound, pin: notFound });
  });

  it('refuses preflights from origins CORS_ALLOWED_ORIGINS does not name', async () => {
    const res = await fetch(api.base, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('deletes a generation: gone for its owner at once', async () => {
    // The browser may reuse the preflight of the GET of the same URL (cached, max-age): it allowed DELETE.
    expect([...preflights.values()].some((p) => /\bDELETE\b/.test(p.responseHeaders?.['access-control-allow-methods'] ?? ''))).toBe(true);
    expect(await run('delete')).toEqual({ goneAfter: true });
  });

  it('logged nothing unexpected in the page', () => {
    // Chromium logs failed fetches (the 404s above are expected) as console errors; anything else is a bug.
    expect(consoleLines.filter((l) => !/status of 404|Failed to load resource/.test(l))).toEqual([]);
  });
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const lower = (h: Record<string, unknown>) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), String(v)]));
