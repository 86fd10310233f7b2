// Migration: generations per second at --concurrency 8 vs 1, on the same tree, in the same run.
//   node --import tsx bench/migration.ts [--quick] [--generations 200] [--latency-ms 50]
// A STORAGE_PATH written by CodebeGen's own Python (test/helpers/codebegen-python.ts): N typical generations (50
// files, ~200 KB each), 10 versions per project. The migration runner (functions/_shared/migration/runner.ts, what
// `npm run migrate` runs) moves it all, with verification (upload, download back, compare), into the Storage
// stand-in in its own process behind a realistic network (bench/lib/network.ts), registering every generation in
// an embedded PGlite on disk in this process, as the CLI does. Each timed run starts from nothing — the tables
// emptied and a bucket of its own — so both runs do the same work; a small untimed run warms up first. Then the bare
// work of the same migration from libraries alone (see `bare`): the CPU figure is reported over it (cpu_over_bare).
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { StorageClient } from '@supabase/storage-js';
import { packTar } from 'modern-tar';
import { createLogger } from '../functions/_shared/log.ts';
import { emptyMapping } from '../functions/_shared/migration/owner-mapping.ts';
import { runMigration } from '../functions/_shared/migration/runner.ts';
import { SupabaseCloudStore } from '../functions/_shared/stores/cloud-store.ts';
import { openDatabase } from '../scripts/node-host.ts';
import { writePythonGenerations, type PyGeneration } from '../test/helpers/codebegen-python.ts';
import { JWT_SECRET, tempDir } from '../test/helpers/context.ts';
import { spawnStandIn } from '../test/storage-standin/process.ts';
import { describeNetwork, REMOTE_STORAGE } from './lib/network.ts';
import { seedPGlite } from './lib/pglite-template.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { round } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, generations: { type: 'string' }, 'latency-ms': { type: 'string' } } });
const count = Number(values.generations ?? (values.quick ? 16 : 200));
const network = { ...REMOTE_STORAGE, latencyMs: Number(values['latency-ms'] ?? REMOTE_STORAGE.latencyMs) };
const VERSIONS_PER_PROJECT = 10;
const LIMITS = { maxFiles: 5000, maxFileBytes: 10 * 1024 * 1024, maxGenerationBytes: 50 * 1024 * 1024, maxPathDepth: 32, maxFolders: 5000 };

const log = createLogger('warn', (line) => process.stderr.write(`${line}\n`));
const dir = tempDir('bench-migration-');
const storagePath = join(dir.path, 'projects');
// The embedded database on disk, opened as the CLI opens it (scripts/node-host.ts)
const [standIn, db] = await Promise.all([spawnStandIn({ jwtSecret: JWT_SECRET, ...network }), seedPGlite(join(dir.path, 'db')).then((path) => openDatabase({ pgliteDataDir: path }, log))]);
const owner = randomUUID();

/** One migration of the whole tree (or of `projects`) from nothing: tables emptied, a bucket of its own. */
async function migrate(concurrency: number, projects?: ReadonlySet<string>): Promise<{ seconds: number; cpuSeconds: number; uploaded: number; bytes: number }> {
  await db.asOwner((tx) => tx.exec('truncate codebegen_private.upload_outbox, public.generations, public.projects'));
  const cloud = new SupabaseCloudStore({ url: standIn.url, serviceKey: standIn.serviceKey, bucket: `bench-${randomUUID().slice(0, 8)}`, fileSizeLimit: LIMITS.maxGenerationBytes }, log);
  await cloud.ensureBucket();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const report = await runMigration(
    { db, cloud, log },
    { storagePath, dryRun: false, verify: true, concurrency, projectIds: projects, mapping: emptyMapping(), defaultOwner: owner, limits: LIMITS, cacheDir: join(dir.path, 'cache') },
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const expected = projects ? VERSIONS_PER_PROJECT * projects.size : count;
  if (report.counts.uploaded !== expected) {
    throw new Error(`expected ${expected} uploaded, got ${JSON.stringify(report.counts)}; first failure: ${report.generations.find((g) => g.outcome !== 'uploaded')?.reason}`);
  }
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, uploaded: report.counts.uploaded, bytes: report.bytes };
}

const gzipAsync = promisify(gzip);

/**
 * The yardstick, run beside the migration: what a verified migration of these generations needs at the least, from
 * libraries alone (so it is the same work whatever our code is) — each one's files read, tarred (modern-tar),
 * gzipped (node:zlib, level 6), hashed, uploaded and downloaded back and hashed (storage-js), `concurrency` at a
 * time; no database, no manifest, no checks. Its CPU time scales with the machine as ours does, so the CPU figure
 * is reported over it, like every other figure here over its baseline.
 */
async function bare(gens: readonly PyGeneration[], concurrency: number): Promise<number> {
  const storage = new StorageClient(`${standIn.url}/storage/v1`, { apikey: standIn.serviceKey, Authorization: `Bearer ${standIn.serviceKey}` });
  const bucket = `bare-${randomUUID().slice(0, 8)}`;
  const created = await storage.createBucket(bucket, { public: false });
  if (created.error) throw created.error;
  const hash = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  const cpu0 = process.cpuUsage();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < gens.length) {
        const g = gens[next++]!;
        const root = `v${g.version}__${g.generation_id}`;
        const dir = join(storagePath, g.project_id, 'generations', root);
        const names = ['manifest.json', ...Object.keys(g.files).map((f) => `source/${f}`)];
        const tar = await packTar(
          names.map((name) => {
            const body = new Uint8Array(readFileSync(join(dir, name)));
            return { header: { name: `${root}/${name}`, size: body.byteLength, mtime: new Date(0) }, body };
          }),
        );
        const gz = new Uint8Array(await gzipAsync(tar, { level: 6 }));
        const sha = hash(gz);
        const key = `${g.project_id}/generations/${root}.tar.gz`;
        const up = await storage.from(bucket).upload(key, gz, { contentType: 'application/gzip' });
        if (up.error) throw up.error;
        const down = await storage.from(bucket).download(key);
        if (down.error || hash(new Uint8Array(await down.data.arrayBuffer())) !== sha) throw new Error(`bare: ${key} did not come back`);
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / 1e6;
}

try {
  const gens: PyGeneration[] = [];
  const projects: string[] = [];
  for (let i = 0; i < count; i++) {
    if (i % VERSIONS_PER_PROJECT === 0) projects.push(randomUUID());
    gens.push({
      project_id: projects.at(-1)!,
      generation_id: randomUUID(),
      version: (i % VERSIONS_PER_PROJECT) + 1,
      files: sourceFiles(`migration-${i}`, 50, 4000),
      metadata: { prompt: `build service ${i}`, model: 'bench' },
    });
  }
  writePythonGenerations(storagePath, gens);

  await migrate(4, new Set(projects.slice(0, 1))); // warm-up, not counted
  const one = await migrate(1);
  const eight = await migrate(8);
  const bareCpuSeconds = await bare(gens, 8);

  const figures = {
    generations: count,
    archive_mb: round(one.bytes / 1e6, 2),
    c1_gen_per_s: round(one.uploaded / one.seconds, 1),
    c8_gen_per_s: round(eight.uploaded / eight.seconds, 1),
    ratio: round(one.seconds / eight.seconds, 2),
    c1_seconds: round(one.seconds, 2),
    c8_seconds: round(eight.seconds, 2),
    // this process's CPU (runner, PGlite, HTTP client) per generation: what caps the rate once the network is hidden
    cpu_ms_per_generation: round((eight.cpuSeconds / eight.uploaded) * 1000, 1),
    bare_cpu_ms_per_generation: round((bareCpuSeconds / count) * 1000, 1),
    // the CPU figure over its yardstick, measured in this run: what carries from one machine to another
    cpu_over_bare: round(eight.cpuSeconds / bareCpuSeconds, 2),
  };
  console.log(
    `migration of ${count} generations (50 files / ~200 KB each, ${figures.archive_mb} MB of archives), verified, ` +
      `runner in process on PGlite (Storage: own process, ${describeNetwork(network)})`,
  );
  console.log(
    formatTable([
      ['concurrency', 'seconds', 'generations/s', 'MB/s', 'CPU ms/generation'],
      ['1', figures.c1_seconds.toFixed(2), figures.c1_gen_per_s.toFixed(1), (one.bytes / 1e6 / one.seconds).toFixed(2), ((one.cpuSeconds / one.uploaded) * 1000).toFixed(1)],
      ['8', figures.c8_seconds.toFixed(2), figures.c8_gen_per_s.toFixed(1), (eight.bytes / 1e6 / eight.seconds).toFixed(2), figures.cpu_ms_per_generation.toFixed(1)],
    ]),
  );
  console.log(`8 / 1: ${figures.ratio}× (target: >= 4)`);
  console.log(
    `CPU per generation at 8: ${figures.cpu_ms_per_generation} ms; the bare work from libraries (read, tar, gzip, hash, upload, download, hash; no database) ` +
      `${figures.bare_cpu_ms_per_generation} ms: ${figures.cpu_over_bare}× it`,
  );
  console.log(JSON.stringify(figures));
} finally {
  await db.close();
  await standIn.close();
  dir.remove();
}
