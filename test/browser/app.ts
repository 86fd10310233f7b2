// The page of test/browser.test.ts: what a CodebeGen frontend does with @codebegen/storage-client, one step per
// function on `window.steps`, each called by the test through Playwright and shown on the page (the screenshot).
// Bundled for the browser by esbuild at test time; it runs on another origin than the API.
import { createStorageClient, fromSupabase, isStorageApiError, StorageApiError, type Generation, type StorageClient } from '../../clients/typescript/src/index.ts';

export interface Setup {
  baseUrl: string;
  aliceToken: string;
  bobToken: string;
  projectId: string;
}

let cfg: Setup;
let alice: StorageClient;
let bob: StorageClient;
let v1: Generation;
let v2: Generation;

const list = document.getElementById('steps')!;

/** Runs one step, shows it on the page, and rethrows a failure with its code so the test's message names it. */
function step<A extends unknown[], R>(name: string, run: (...args: A) => Promise<R>) {
  return async (...args: A): Promise<R> => {
    const li = document.createElement('li');
    li.textContent = `${name}…`;
    list.append(li);
    try {
      const result = await run(...args);
      li.className = 'ok';
      li.textContent = name;
      return result;
    } catch (err) {
      const e = err as StorageApiError;
      const text = isStorageApiError(err) ? `StorageApiError ${e.code} (${e.status}): ${e.message}` : `${(err as Error)?.name}: ${(err as Error)?.message ?? String(err)}`;
      li.className = 'failed';
      li.textContent = `${name}: ${text}`;
      throw new Error(text);
    }
  };
}

/** Bytes as base64, to hand them to the test. */
function base64(buf: ArrayBuffer): string {
  const bytes = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** How a call failed, for the test to compare. */
async function caught(p: Promise<unknown>) {
  try {
    await p;
    return { threw: false };
  } catch (err) {
    const e = err as StorageApiError;
    return { threw: true, isStorageApiError: err instanceof StorageApiError, name: e.name, code: e.code, status: e.status };
  }
}

/** What a cross-origin script can read of an answer's headers: only those CORS exposes (and the safelisted ones). */
async function visibleHeaders(url: string) {
  const res = await fetch(url);
  await res.arrayBuffer();
  return { status: res.status, disposition: res.headers.get('content-disposition'), checksum: res.headers.get('x-checksum-sha256'), etag: res.headers.get('etag') };
}

const steps = {
  /** "Signs in": a supabase-js-shaped client whose session holds the minted user token, passed to fromSupabase. */
  setup: step('sign in with a Supabase session (fromSupabase)', async (c: Setup) => {
    cfg = c;
    const session = { access_token: c.aliceToken };
    const supabase = {
      functionsUrl: new URL(c.baseUrl.replace(/\/generations\/?$/, '')),
      auth: { getSession: async () => ({ data: { session }, error: null }) },
    };
    alice = fromSupabase(supabase);
    bob = createStorageClient({ baseUrl: c.baseUrl, getAccessToken: () => c.bobToken });
    document.getElementById('origins')!.textContent = `page ${location.origin} → API ${new URL(alice.baseUrl).origin}`;
    return { baseUrl: alice.baseUrl, origin: location.origin };
  }),

  health: step('health', async () => alice.health()),

  save: step('save v1 and v2 (and replay v1)', async (files1: Record<string, string>, files2: Record<string, string>) => {
    const first = { project_id: cfg.projectId, generation_id: crypto.randomUUID(), files: files1, metadata: { prompt: 'a todo app' } };
    v1 = await alice.save(first);
    v2 = await alice.save({ project_id: cfg.projectId, generation_id: crypto.randomUUID(), files: files2, metadata: { prompt: 'a todo app, with tags' } });
    // The same save again, through the typed openapi-fetch client underneath: a replay, said by an exposed header.
    const replay = await alice.raw.POST('/', { body: first });
    return { v1, v2, replayStatus: replay.response.status, replayed: replay.response.headers.get('idempotent-replayed'), replayId: replay.data?.generation_id };
  }),

  list: step('list every version (one per page)', async () => {
    const versions: number[] = [];
    for await (const g of alice.list(cfg.projectId, { limit: 1 })) versions.push(g.version);
    const page = await alice.listPage(cfg.projectId, { limit: 1 });
    return { versions, firstPage: page.items.map((g) => g.version), nextCursor: page.next_cursor };
  }),

  get: step('get v2', async () => alice.get(v2.generation_id)),

  downloadTarGz: step('download v1 as tar.gz through its signed URL', async () => {
    const d = await alice.download(v1, { as: 'arraybuffer' });
    return { filename: d.filename, sha256: d.sha256, size: d.size, contentType: d.contentType, bytes: base64(d.data), visible: await visibleHeaders(v1.download_url) };
  }),

  otherUser: step("another user's project answers 404", async () => {
    return {
      list: await caught(bob.listPage(cfg.projectId)),
      get: await caught(bob.get(v1.generation_id)),
      download: await caught(bob.download(v1.generation_id)),
      delete: await caught(bob.delete(v1.generation_id)),
    };
  }),

  otherUserFiles: step("another user's files, diffs, zip, restore and pin answer 404", async () => ({
    files: await caught(bob.files(v1.generation_id)),
    file: await caught(bob.file(v1.generation_id, 'app/main.py')),
    diff: await caught(bob.diff(v2.generation_id, v1.generation_id)),
    zip: await caught(bob.download(v1.generation_id, { format: 'zip' })),
    restore: await caught(bob.restore(v1.generation_id)),
    pin: await caught(bob.pin(v1.generation_id)),
  })),

  files: step('browse the files of v2', async () => alice.files(v2.generation_id)),

  file: step('open one file of v2', async (path: string) => {
    const text = await alice.file(v2.generation_id, path);
    const bytes = await alice.file(v2.generation_id, path, { as: 'arraybuffer' });
    return { text: text.data, contentType: text.contentType, sha256: text.sha256, size: bytes.size, bytes: base64(bytes.data) };
  }),

  diff: step('diff v2 against v1 (with patches)', async () => {
    const plain = await alice.diff(v2.generation_id, v1.generation_id);
    const withPatches = await alice.diff(v2.generation_id, v1.generation_id, { patch: true });
    return { plain, withPatches };
  }),

  downloadZip: step('download v1 as a zip through its signed URL', async () => {
    const d = await alice.download(v1, { format: 'zip' });
    const bytes = await d.data.arrayBuffer();
    const again = await alice.download(v1.generation_id, { format: 'zip', as: 'arraybuffer' });
    return { filename: d.filename, contentType: d.contentType, size: d.size, bytes: base64(bytes), sameAgain: base64(again.data) === base64(bytes), bearerName: again.filename, visible: await visibleHeaders(v1.zip_url) };
  }),

  restore: step('restore v1 as v3, and pin it', async () => {
    const id = crypto.randomUUID();
    const v3 = await alice.restore(v1.generation_id, { generation_id: id });
    const again = await alice.restore(v1.generation_id, { generation_id: id });
    const pinned = await alice.pin(v3.generation_id);
    const unpinned = await alice.unpin(v3.generation_id);
    const repinned = await alice.pin(v3.generation_id);
    return { v3, againId: again.generation_id, pinned: pinned.pinned, unpinned: unpinned.pinned, repinned: repinned.pinned, files: (await alice.files(v3.generation_id)).files.map((f) => f.path) };
  }),

  delete: step('delete v2', async () => {
    await alice.delete(v2.generation_id);
    try {
      await alice.get(v2.generation_id);
      return { goneAfter: false };
    } catch (err) {
      return { goneAfter: isStorageApiError(err, 'generation_not_found') };
    }
  }),
};

declare global {
  interface Window {
    steps: typeof steps;
  }
}
window.steps = steps;
document.getElementById('origins')!.textContent = `page ${location.origin}: ready`;
