import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackTree } from '../functions/_shared/archive/tar-gz.ts';
import { cloudAppContext } from './helpers/cloud-context.ts';
import { appContext, tempDir, userToken, type AppContext } from './helpers/context.ts';
import { dropCopies, errorOf, generationsClient, inProcess, sha256, type Saved } from './helpers/generations-client.ts';

// GET /generations/{id}/download?format=zip: unpacked by Debian's unzip and by Python's zipfile to exactly the
// tar.gz's tree; the same bytes every time, from every tier and in every time zone.

const FILES: Record<string, string> = {
  'app/main.py': 'from fastapi import FastAPI\n\napp = FastAPI()\n',
  'app/api/v1/routes/items.py': 'from fastapi import APIRouter\n',
  'README.md': '# ünïcödé ✓ 🚀\n',
  'docs/naïve café ✓.md': 'a name that needs UTF-8 in the zip\n',
  'windows.txt': 'one\r\ntwo\r\n',
  'empty.py': '',
  // over 256 KiB, so deflate sees it in several pieces
  'data/big.csv': Array.from({ length: 40_000 }, (_, i) => `${i},${(i * 7919) % 10007},row`).join('\n'),
};
const LIMITS = { maxEntries: 1000, maxFileBytes: 1e7, maxTotalBytes: 1e8 };
const scratch = tempDir('zip-test-');
afterAll(() => scratch.remove());

/** Every file under `dir`, by path relative to it, with its sha256; and every folder. */
function tree(dir: string): { files: Record<string, string>; dirs: string[] } {
  const files: Record<string, string> = {};
  const dirs: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        dirs.push(relative(dir, p));
        walk(p);
      } else files[relative(dir, p)] = sha256(readFileSync(p));
    }
  };
  walk(dir);
  return { files, dirs: dirs.sort() };
}

/** What the tar.gz download holds: files (sha256) and folders, by path. */
async function tarTree(tgz: Uint8Array) {
  const t = await unpackTree(tgz, LIMITS);
  return { files: Object.fromEntries(t.files.map((f) => [f.path, sha256(f.data)])), dirs: [...t.dirs].sort() };
}

const PY_READ = `
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
out = {}
for i in z.infolist():
    out[i.filename] = {"sha256": hashlib.sha256(z.read(i)).hexdigest(), "mode": i.external_attr >> 16, "dir": i.is_dir(), "time": list(i.date_time), "method": i.compress_type}
print(json.dumps(out))
`;

let ctx: AppContext;
let api: ReturnType<typeof generationsClient>;
let A: string;
let B: string;
let g: Saved;

beforeAll(async () => {
  ctx = await appContext();
  api = generationsClient(ctx);
  [A, B] = await Promise.all([userToken(randomUUID()), userToken(randomUUID())]);
  g = await api.save(A, { project_id: randomUUID(), files: FILES });
});
afterAll(() => ctx.close());

async function zipOf(path: string, token?: string): Promise<{ res: Response; bytes: Uint8Array; file: string }> {
  const { res, bytes } = await api.bytes(path, token);
  const file = join(scratch.path, `${randomUUID()}.zip`);
  writeFileSync(file, bytes);
  return { res, bytes, file };
}

describe('GET /generations/{id}/download?format=zip', () => {
  it('answers a zip named v{n}__{id}.zip, which Debian unzip unpacks to the same tree as the tar.gz', async () => {
    const { res, file } = await zipOf(`/${g.generation_id}/download?format=zip`, A);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/zip');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="v1__${g.generation_id}.zip"`);
    expect(res.headers.get('etag')).toBe(`W/"${g.sha256}.zip"`);
    execFileSync('unzip', ['-tq', file]);
    const out = join(scratch.path, randomUUID());
    mkdirSync(out);
    execFileSync('unzip', ['-q', file, '-d', out]);
    const tgz = (await api.bytes(`/${g.generation_id}/download`, A)).bytes;
    expect(tree(out)).toEqual(await tarTree(tgz));
    const root = join(out, `v1__${g.generation_id}`);
    for (const [path, content] of Object.entries(FILES)) expect(readFileSync(join(root, 'source', path), 'utf8'), path).toBe(content);
    expect(readdirSync(join(root, 'artifacts'))).toEqual([]);
    // unzip applied the zip's Unix modes
    expect(statSync(join(root, 'source/app/main.py')).mode & 0o777).toBe(0o644);
    expect(statSync(join(root, 'source')).mode & 0o777).toBe(0o755);
  });

  it("is read by Python's zipfile (CRCs checked) to the same files, with fixed modes and the manifest's time", async () => {
    const { file } = await zipOf(`/${g.generation_id}/download?format=zip`, A);
    const entries = JSON.parse(execFileSync('python3', ['-c', PY_READ, file], { encoding: 'utf8' })) as Record<string, { sha256: string; mode: number; dir: boolean; time: number[]; method: number }>;
    const tar = await tarTree((await api.bytes(`/${g.generation_id}/download`, A)).bytes);
    const files = Object.fromEntries(Object.entries(entries).filter(([, e]) => !e.dir).map(([p, e]) => [p, e.sha256]));
    const dirs = Object.entries(entries).filter(([, e]) => e.dir).map(([p]) => p.replace(/\/$/, '')).sort();
    expect({ files, dirs }).toEqual(tar);
    expect(dirs).toContain(`v1__${g.generation_id}`);
    const created = new Date((await api.get(`/${g.generation_id}`, A)).created_at as string);
    const when = [created.getUTCFullYear(), created.getUTCMonth() + 1, created.getUTCDate(), created.getUTCHours(), created.getUTCMinutes(), created.getUTCSeconds() - (created.getUTCSeconds() % 2)];
    for (const [path, e] of Object.entries(entries)) {
      expect(e.mode, path).toBe(e.dir ? 0o040755 : 0o100644);
      expect(e.time, path).toEqual(when);
      if (!e.dir) expect(e.method, path).toBe(8); // deflated
    }
  });

  it('is the same bytes every time, by bearer or by the signed zip_url of save and get', async () => {
    const first = await zipOf(`/${g.generation_id}/download?format=zip`, A);
    const second = await zipOf(`/${g.generation_id}/download?format=zip`, A);
    expect(sha256(second.bytes)).toBe(sha256(first.bytes));
    expect(g.zip_url).toMatch(new RegExp(`^http://storage\\.test/functions/v1/generations/${g.generation_id}/download\\?format=zip&token=`));
    const got = await api.get<Saved>(`/${g.generation_id}`, A);
    for (const url of [g.zip_url, got.zip_url]) {
      const res = await ctx.app.request(inProcess(url));
      expect(res.status).toBe(200);
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(first.bytes));
    }
    // the token is not tied to a format: the tar.gz link's token works for the zip too, and the other way round
    const token = new URL(g.download_url).searchParams.get('token')!;
    expect((await api.bytes(`/${g.generation_id}/download?token=${encodeURIComponent(token)}&format=zip`)).bytes).toEqual(first.bytes);
    const zipToken = new URL(g.zip_url).searchParams.get('token')!;
    const tgz = await api.bytes(`/${g.generation_id}/download?token=${encodeURIComponent(zipToken)}`);
    expect(sha256(tgz.bytes)).toBe(g.sha256);
    // the listing carries no URL at all
    const list = await api.get<{ items: Record<string, unknown>[] }>(`?project_id=${g.project_id}`, A);
    expect(list.items[0]).not.toHaveProperty('zip_url');
    expect(list.items[0]).not.toHaveProperty('download_url');
  });

  it('answers 304 for its ETag, and refuses what the tar.gz download refuses', async () => {
    const etag = `W/"${g.sha256}.zip"`;
    expect((await api.req(`/${g.generation_id}/download?format=zip`, { token: A, headers: { 'if-none-match': etag } })).status).toBe(304);
    const notFound = await api.req(`/${g.generation_id}/download?format=zip`, { token: B });
    expect(notFound.status).toBe(404);
    expect((await errorOf(notFound)).code).toBe('generation_not_found');
    expect((await api.req(`/${randomUUID()}/download?format=zip`, { token: A })).status).toBe(404);
    expect((await api.req(`/${g.generation_id}/download?format=zip`)).status).toBe(401);
    const token = new URL(g.zip_url).searchParams.get('token')!;
    const tampered = await api.req(`/${g.generation_id}/download?format=zip&token=${encodeURIComponent(token.slice(0, -2) + 'xx')}`);
    expect(tampered.status).toBe(401);
    const other = await api.save(A, { project_id: g.project_id, files: { 'x.py': '1\n' } });
    expect((await api.req(`/${other.generation_id}/download?format=zip&token=${encodeURIComponent(token)}`)).status).toBe(401);
    for (const format of ['tar', 'ZIP', '', 'zip,tar.gz']) {
      const res = await api.req(`/${g.generation_id}/download?format=${format}`, { token: A });
      expect(res.status, format).toBe(400);
      expect((await errorOf(res)).message).toMatch(/format/);
    }
    expect((await api.req(`/${g.generation_id}/download?format=tar.gz`, { token: A })).headers.get('content-type')).toBe('application/gzip');
  });

  it('writes the same bytes in any time zone of the host', async () => {
    const tgz = (await api.bytes(`/${g.generation_id}/download`, A)).bytes;
    const tgzFile = join(scratch.path, 'tz.tar.gz');
    writeFileSync(tgzFile, tgz);
    const script = `
      import { readFileSync } from 'node:fs';
      import { createHash } from 'node:crypto';
      import { zipFromTarGz } from './functions/_shared/archive/zip-stream.ts';
      const chunks = [];
      for await (const c of zipFromTarGz([readFileSync(${JSON.stringify(tgzFile)})], ${JSON.stringify(LIMITS)}, new Date(${JSON.stringify((await api.get(`/${g.generation_id}`, A)).created_at)}))) chunks.push(c);
      console.log(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));`;
    const digests = ['UTC', 'America/New_York', 'Pacific/Chatham', 'Asia/Kolkata'].map((TZ) =>
      execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, TZ }, encoding: 'utf8' }).trim(),
    );
    expect(new Set(digests).size).toBe(1);
    expect(digests[0]).toBe(sha256((await api.bytes(`/${g.generation_id}/download?format=zip`, A)).bytes));
  });

  it('stops making the zip when the reader goes away', async () => {
    const res = await api.req(`/${g.generation_id}/download?format=zip`, { token: A });
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    await reader.cancel();
    expect((await api.req(`/${g.generation_id}/download?format=zip`, { token: A })).status).toBe(200);
  });
});

describe('zip downloads with cloud storage on', () => {
  it('are the same bytes from the local copy and from the bucket (a cold generation), by bearer and by zip_url', async () => {
    const cloud = await cloudAppContext();
    try {
      const c = generationsClient(cloud.ctx);
      const saved = await c.save(A, { project_id: randomUUID(), files: FILES });
      await cloud.ctx.uploads!.idle();
      const local = (await c.bytes(`/${saved.generation_id}/download?format=zip`, A)).bytes;
      dropCopies(cloud.ctx, saved, { local: true, cache: true });
      const got = await c.get<Saved>(`/${saved.generation_id}`, A);
      // once uploaded, download_url is the bucket's own signed URL; zip_url is still ours
      expect(got.download_url.startsWith(cloud.standIn.url)).toBe(true);
      expect(got.zip_url).toMatch(/^http:\/\/storage\.test\/functions\/v1\/generations\/.+format=zip&token=/);
      const res = await cloud.ctx.app.request(inProcess(got.zip_url));
      expect(res.status).toBe(200);
      const cold = new Uint8Array(await res.arrayBuffer());
      expect(sha256(cold)).toBe(sha256(local));
      const file = join(scratch.path, 'cold.zip');
      writeFileSync(file, cold);
      execFileSync('unzip', ['-tq', file]);
    } finally {
      await cloud.close();
    }
  });
});
