import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, JWT_SECRET, tempDir, userToken } from '../helpers/context.ts';
import { ServerProcess } from '../helpers/server-process.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import { percentiles, report, serverDatabase, sha256, sleep, sourceFiles } from './support.ts';

// Reliability 5 — load. The real Node server in its own process (on the suite's PostgreSQL server when there is
// one, PGlite otherwise), cloud storage on; hundreds of saves fired at
// once over loopback HTTP, each followed at once by two downloads of it (the signed link, and with the bearer
// token) while the other saves are still coming in. Zero errors; every download's bytes have the sha256 the save
// answered with and the files that were sent; versions stay distinct; then every upload is verified in the bucket.

const SAVES = 300;
const PROJECTS = 10;
const BUCKET = 'codebegen-projects';

let dir: ReturnType<typeof tempDir>;
let standIn: StandIn;
let server: ServerProcess;
let database: Awaited<ReturnType<typeof serverDatabase>> | undefined;
let startMs = 0;

beforeAll(async () => {
  dir = tempDir('codebegen-rel-load-');
  const t0 = performance.now();
  database = await serverDatabase(join(dir.path, 'db'), 'cb_load');
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  server = await new ServerProcess({
    PATH: process.env.PATH,
    PORT: String(await freePort()),
    STORAGE_PATH: join(dir.path, 'projects'),
    ...database.env,
    CACHE_PATH: join(dir.path, 'cache'),
    SUPABASE_JWT_SECRET: JWT_SECRET,
    USE_CLOUD_STORAGE: 'true',
    SUPABASE_URL: standIn.url,
    SUPABASE_SERVICE_KEY: standIn.serviceKey,
    LOG_LEVEL: 'warn',
  }).start();
  startMs = performance.now() - t0;
}, 90_000);

afterAll(async () => {
  await server?.kill();
  await standIn?.close();
  await database?.drop();
  dir?.remove();
});

describe('hundreds of concurrent saves and downloads on loopback', () => {
  it('answers every one, and every archive verifies', async () => {
    const user = randomUUID();
    const auth = { authorization: `Bearer ${await userToken(user, { expiresIn: '1h' })}` };
    const projects = Array.from({ length: PROJECTS }, () => randomUUID());
    const errors: string[] = [];
    const saveMs: number[] = [];
    const downloadMs: number[] = [];
    let bytesDown = 0;
    const results: { project: string; id: string; version: number; sha: string; files: Record<string, string> }[] = [];

    const started = performance.now();
    await Promise.all(
      Array.from({ length: SAVES }, async (_, i) => {
        const project = projects[i % PROJECTS]!;
        const files: Record<string, string> = { 'README.md': `# load ${i}\n` };
        for (let f = 0; f < 8; f++) files[`app/mod_${f}.py`] = `# ${i}/${f}\n${randomBytes(600).toString('base64')}\n`;
        let t0 = performance.now();
        const res = await fetch(server.base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files }) }).catch((e: Error) => e);
        if (res instanceof Error) return void errors.push(`save ${i}: ${res.message}`);
        if (res.status !== 201) return void errors.push(`save ${i}: ${res.status} ${await res.text()}`);
        const g = (await res.json()) as { generation_id: string; version: number; sha256: string; download_url: string };
        saveMs.push(performance.now() - t0);
        results.push({ project, id: g.generation_id, version: g.version, sha: g.sha256, files });
        // Two downloads right away, while other saves are still arriving: the signed link and the bearer token.
        // (The link is ours while the upload is pending, or the bucket's signed URL once it is verified.)
        for (const [url, headers] of [[g.download_url.replace('localhost', '127.0.0.1'), {}], [`${server.base}/${g.generation_id}/download`, auth]] as const) {
          t0 = performance.now();
          const dl = await fetch(url, { headers }).catch((e: Error) => e);
          if (dl instanceof Error) return void errors.push(`download ${g.generation_id}: ${dl.message}`);
          if (dl.status !== 200) return void errors.push(`download ${g.generation_id}: ${dl.status} ${await dl.text()}`);
          const bytes = new Uint8Array(await dl.arrayBuffer());
          downloadMs.push(performance.now() - t0);
          bytesDown += bytes.byteLength;
          const header = dl.headers.get('x-checksum-sha256');
          if (sha256(bytes) !== g.sha256 || (header !== null && header !== g.sha256)) errors.push(`download ${g.generation_id}: checksum mismatch`);
        }
      }),
    );
    const wallMs = performance.now() - started;
    expect(errors).toEqual([]);
    expect(results).toHaveLength(SAVES);

    // Each project got versions 1..30, each once: concurrent saves never shared or skipped a version.
    for (const p of projects) {
      expect(results.filter((r) => r.project === p).map((r) => r.version).sort((a, b) => a - b)).toEqual(Array.from({ length: SAVES / PROJECTS }, (_, i) => i + 1));
    }
    // The archives hold what was sent (a sample: unpacking is the test's cost, not the server's).
    for (const r of results.filter((_, i) => i % 10 === 0)) {
      const bytes = new Uint8Array(await (await fetch(`${server.base}/${r.id}/download`, { headers: auth })).arrayBuffer());
      expect(await sourceFiles(bytes)).toEqual(r.files);
    }

    // Then the background uploads catch up; every bucket copy is the answered archive.
    const uploadStarted = performance.now();
    const key = (r: (typeof results)[number]) => `${r.project}/generations/v${r.version}__${r.id}.tar.gz`;
    let uploaded = 0;
    for (let waited = 0; waited < 120_000; waited += 250) {
      uploaded = 0;
      for (const p of projects) {
        for (let cursor: string | null = ''; cursor !== null; ) {
          const page = (await (await fetch(`${server.base}?project_id=${p}&limit=100${cursor ? `&cursor=${cursor}` : ''}`, { headers: auth })).json()) as {
            items: { storage: { status: string } }[];
            next_cursor: string | null;
          };
          uploaded += page.items.filter((g) => g.storage.status === 'uploaded').length;
          cursor = page.next_cursor;
        }
      }
      if (uploaded === SAVES) break;
      await sleep(250);
    }
    expect(uploaded).toBe(SAVES);
    for (const r of results) expect(sha256(readFileSync(standIn.objectPath(BUCKET, key(r)))), r.id).toBe(r.sha);

    report('load', {
      database: database!.kind,
      server_start_ms: Math.round(startMs),
      saves: SAVES,
      downloads: downloadMs.length,
      concurrency: SAVES,
      projects: PROJECTS,
      errors: errors.length,
      checksums_verified: downloadMs.length,
      save_ms: percentiles(saveMs),
      download_ms: percentiles(downloadMs),
      requests_per_s: Math.round(((SAVES + downloadMs.length) / wallMs) * 1000),
      mb_down: Math.round(bytesDown / 1e5) / 10,
      wall_ms: Math.round(wallMs),
      uploads_verified: uploaded,
      uploads_caught_up_ms: Math.round(performance.now() - uploadStarted),
      lost: SAVES - uploaded,
    });
  }, 180_000);
});
