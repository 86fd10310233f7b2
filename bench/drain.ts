// Outbox drain throughput: generations per second moved from the upload outbox (Postgres) to the bucket and verified,
// against the least that work can cost, measured in the same run.
//   node --import tsx bench/drain.ts [--generations 200] [--quick]
// N typical generations are saved while Storage refuses uploads, so all N wait in the outbox; then one drainer
// (`UploadQueue.drain`, what storage-maintenance/drain and the Node retry timer run) moves them, UPLOAD_CONCURRENCY
// (4) at a time: claim under a lease, read the bytes, upload, download back and hash, commit. The baseline is the
// same archives uploaded and downloaded back by the same CloudStore at the same concurrency with no database at
// all. The Storage stand-in runs in its own process, 50 ms latency and 100 Mbit/s as in the other benchmarks; the
// database is PGlite (real Postgres, one connection). The final line is the JSON of named figures.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../functions/_shared/config.ts';
import { sha256Hex } from '../functions/_shared/archive/manifest.ts';
import { SupabaseCloudStore } from '../functions/_shared/stores/cloud-store.ts';
import { buildApps } from '../functions/_shared/wiring.ts';
import { JWT_SECRET, memoryLogger, migratedPGlite, tempDir, userToken } from '../test/helpers/context.ts';
import { spawnStandIn } from '../test/storage-standin/process.ts';
import { describeNetwork, REMOTE_STORAGE } from './lib/network.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { round } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values } = parseArgs({ options: { generations: { type: 'string' }, quick: { type: 'boolean' } } });
const N = Number(values.generations ?? (values.quick ? 24 : 200));
const CONCURRENCY = 4;

const dir = tempDir('bench-drain-');
const standIn = await spawnStandIn({ jwtSecret: JWT_SECRET, ...REMOTE_STORAGE });
const db = await migratedPGlite();
const clock = { offset: 0 };
try {
  const config = loadConfig({
    STORAGE_PATH: join(dir.path, 'projects'),
    CACHE_PATH: join(dir.path, 'cache'),
    SUPABASE_JWT_SECRET: JWT_SECRET,
    USE_CLOUD_STORAGE: 'true',
    SUPABASE_URL: standIn.url,
    SUPABASE_SERVICE_KEY: standIn.serviceKey,
    UPLOAD_CONCURRENCY: String(CONCURRENCY),
    LOG_LEVEL: 'silent',
  });
  const built = buildApps(config, db, memoryLogger(), { now: () => Date.now() + clock.offset, cloudRetry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 } });
  await built.cloud!.ensureBucket();
  const auth = { authorization: `Bearer ${await userToken(randomUUID(), { expiresIn: '1d' })}`, 'content-type': 'application/json' };

  // N saves while Storage refuses: each fast-path upload fails once, and every archive waits in the outbox.
  await standIn.faults({ failShare: [1, [503]] });
  const project = randomUUID();
  for (let i = 0; i < N; i++) {
    const res = await built.app.request('http://bench/generations', { method: 'POST', headers: auth, body: JSON.stringify({ project_id: project, files: sourceFiles(`drain-${i}`, 50, 6000) }) });
    if (res.status !== 201) throw new Error(`save ${i}: ${res.status} ${await res.text()}`);
  }
  await built.uploads!.idle();
  await standIn.faults({ clear: true });
  const staged = await built.uploads!.backlog();
  if (staged.rows !== N) throw new Error(`expected ${N} rows in the outbox, found ${staged.rows}`);
  const archives = await db.asService((tx) => tx.query<{ archive: Uint8Array }>('select archive from codebegen_private.upload_outbox'));

  // Baseline: the same bytes, the same client and concurrency, no database: upload, download back, hash.
  const raw = new SupabaseCloudStore({ url: standIn.url, serviceKey: standIn.serviceKey, bucket: config.supabase.bucket, fileSizeLimit: config.supabase.uploadLimitBytes }, memoryLogger());
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < archives.length) {
        const bytes = new Uint8Array(archives[next]!.archive);
        const key = `${randomUUID()}/generations/v1__${randomUUID()}.tar.gz`;
        next++;
        await raw.upload(key, bytes);
        if (sha256Hex(await raw.download(key)) !== sha256Hex(bytes)) throw new Error('baseline: bytes differ');
      }
    }),
  );
  const baselineMs = performance.now() - t0;

  // The drain, past the backoff of the failed attempts.
  clock.offset += 10 * 60_000;
  const t1 = performance.now();
  let calls = 0;
  let uploaded = 0;
  for (;;) {
    const r = await built.uploads!.drain({ maxMs: 60_000, maxBytes: 64 * 1024 * 1024, maxRows: 50 });
    calls++;
    uploaded += r.uploaded;
    if (r.failed) throw new Error(`drain: ${r.failed} failed`);
    if (r.backlog.rows === 0) break;
  }
  const drainMs = performance.now() - t1;
  if (uploaded !== N) throw new Error(`drained ${uploaded} of ${N}`);

  const bytes = archives.reduce((n, a) => n + a.archive.byteLength, 0);
  const figures = {
    generations: N,
    archive_kb_mean: round(bytes / N / 1024, 1),
    drain_per_s: round(N / (drainMs / 1000), 1),
    baseline_per_s: round(N / (baselineMs / 1000), 1),
    ratio: round(baselineMs / drainMs, 3),
    drain_calls: calls,
  };
  console.log(`outbox drain of ${N} generations (~${figures.archive_kb_mean} KB archives), ${CONCURRENCY} at a time; Storage: own process, ${describeNetwork(REMOTE_STORAGE)}`);
  console.log(formatTable([
    ['', 'generations/s', 'ms'],
    ['drain (claim, read, upload, verify, commit)', String(figures.drain_per_s), String(Math.round(drainMs))],
    ['baseline (upload, verify; no database)', String(figures.baseline_per_s), String(Math.round(baselineMs))],
    ['ratio drain / baseline', String(figures.ratio), ''],
  ]));
  console.log(JSON.stringify(figures));
  await built.uploads!.stop();
} finally {
  await db.close();
  await standIn.close();
  dir.remove();
}
