// Reads: downloading a generation from the local copy, from the cache, and cold from Storage; and how many cloud
// requests 100 concurrent reads of one uncached generation cost (single-flight: the target is 1).
//   node --import tsx bench/reads.ts [--quick] [--rounds 30] [--files 300] [--file-bytes 10000]
// Real HTTP on loopback to `npm start`'s server (scripts/serve.ts, cloud on, embedded PGlite) in a process of its
// own, and the Storage stand-in in a third process behind a realistic network (bench/lib/network.ts), as the real
// Storage API runs elsewhere. Downloads go through GET /{id}/download with the owner's bearer token (node:http,
// kept-alive connections), one after another, timed until the last byte. Each round drops the cache (the local
// copy is already gone) and reads the generation cold, which fills the cache, then reads it from the cache and
// reads a twin generation (same files) from its local copy: the three kinds of read share the run's noise.
// "Uncached" is what test/cloud-mode.test.ts does: the folder and archive removed from STORAGE_PATH and CACHE_PATH.
// Each round also downloads the same object straight from the stand-in (one Storage request: its round trip and
// the transfer at its bandwidth), the floor of a cold read: cold_over_floor_p50 is the cold p50 over it (target <= 1.5).
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { JWT_SECRET, tempDir, userToken } from '../test/helpers/context.ts';
import { spawnStandIn } from '../test/storage-standin/process.ts';
import { httpGet, save, waitUploaded, type Saved } from './lib/api.ts';
import { describeNetwork, REMOTE_STORAGE } from './lib/network.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { startServer } from './lib/servers.ts';
import { round, sleep, timings } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, rounds: { type: 'string' }, files: { type: 'string' }, 'file-bytes': { type: 'string' } } });
const quick = Boolean(values.quick);
const rounds = Number(values.rounds ?? (quick ? 3 : 30));
const perRound = quick ? 4 : 10; // cache and local reads per round
const bursts = quick ? 1 : 5; // of 100 concurrent reads, each of its own uncached generation
const fileCount = Number(values.files ?? (quick ? 100 : 300));
const fileBytes = Number(values['file-bytes'] ?? 10_000);

const dir = tempDir('bench-reads-');
const standIn = await spawnStandIn({ jwtSecret: JWT_SECRET, ...REMOTE_STORAGE });
const server = await startServer(dir.path, 'server', standIn);
const storagePath = join(dir.path, 'server', 'projects');
const cachePath = join(dir.path, 'server', 'cache');
const auth = { authorization: `Bearer ${await userToken(randomUUID(), { expiresIn: '1d' })}` };

/**
 * Removes the generation's folder and archive from the cache, and from STORAGE_PATH too when `local`. A cold read
 * answers before its cache fill ends, and readers arriving meanwhile share its bytes; so after a cold read (`filling`)
 * it first waits for that fill to land (its archive in the cache), else the next "cold" read would be that shared read.
 */
async function drop(g: Saved, { local, filling = false }: { local: boolean; filling?: boolean }): Promise<void> {
  const cached = join(cachePath, g.project_id, 'generations', `v${g.version}__${g.generation_id}.tar.gz`);
  for (const t0 = performance.now(); filling && !existsSync(cached); await sleep(5)) {
    if (performance.now() - t0 > 10_000) throw new Error(`the cache fill of ${g.generation_id} did not land within 10 s`);
  }
  for (const root of local ? [storagePath, cachePath] : [cachePath]) {
    const folder = join(root, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
    rmSync(folder, { recursive: true, force: true });
    rmSync(`${folder}.tar.gz`, { force: true });
  }
}

/** One download, timed (ms) until its last byte; throws unless it is the whole archive. */
async function download(g: Saved): Promise<number> {
  const t0 = performance.now();
  const res = await httpGet(`${server.base}/${g.generation_id}/download`, auth);
  const ms = performance.now() - t0;
  const bytes = res.bytes;
  if (res.status !== 200 || bytes.byteLength !== g.archive_size_bytes || res.headers['x-checksum-sha256'] !== g.sha256) {
    throw new Error(`download of ${g.generation_id} answered ${res.status} with ${bytes.byteLength} bytes`);
  }
  return ms;
}

/** 100 reads at once of a generation neither on disk nor cached: the Storage requests they caused, and how long. */
async function burst(g: Saved): Promise<{ requests: number; downloads: number; ms: number }> {
  await drop(g, { local: true });
  await standIn.clearRequests();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 100 }, () => download(g)));
  const ms = performance.now() - t0;
  const { requests } = await standIn.requests();
  return { requests: requests.length, downloads: requests.filter((r) => r.method === 'GET' && r.path === objectPath(g)).length, ms };
}

const mb = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const objectPath = (g: Saved) => `/storage/v1/object/codebegen-projects/${g.project_id}/generations/v${g.version}__${g.generation_id}.tar.gz`;

/** The object downloaded straight from Storage with the service key, timed (ms): the floor of a cold read. */
async function direct(g: Saved): Promise<number> {
  const t0 = performance.now();
  const res = await httpGet(`${standIn.url}${objectPath(g)}`, { authorization: `Bearer ${standIn.serviceKey}`, apikey: standIn.serviceKey });
  const ms = performance.now() - t0;
  if (res.status !== 200 || res.bytes.byteLength !== g.archive_size_bytes) throw new Error(`direct download answered ${res.status}`);
  return ms;
}

try {
  const files = sourceFiles('reads', fileCount, fileBytes);
  const rawBytes = Object.values(files).reduce((n, s) => n + Buffer.byteLength(s), 0);
  const project = randomUUID();
  const pulled = await save(server.base, auth, project, files); // read cold, then from the cache
  const kept = await save(server.base, auth, project, files); // its twin, read from the local copy it keeps
  const burstGens: Saved[] = [];
  for (let i = 0; i < bursts; i++) burstGens.push(await save(server.base, auth, project, sourceFiles(`burst-${i}`, fileCount, fileBytes)));
  await waitUploaded(server.base, auth, [pulled, kept, ...burstGens].map((g) => g.generation_id));
  await drop(pulled, { local: true });

  for (let i = 0; i < 3; i++) await download(kept); // warm-up, not counted
  const times = { local: [] as number[], cached: [] as number[], cold: [] as number[], direct: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    times.direct.push(await direct(pulled));
    await drop(pulled, { local: false, filling: r > 0 });
    times.cold.push(await download(pulled));
    for (let i = 0; i < perRound; i++) {
      times.cached.push(await download(pulled));
      times.local.push(await download(kept));
    }
  }
  const singleFlight = [];
  for (const g of burstGens) singleFlight.push(await burst(g));

  const t = { local: timings(times.local), cached: timings(times.cached), cold: timings(times.cold), direct: timings(times.direct) };
  const archive = pulled.archive_size_bytes;
  const figures = {
    archive_bytes: archive,
    local_p50_ms: round(t.local.p50),
    local_p99_ms: round(t.local.p99),
    local_mb_s: round(mb(archive * t.local.count, t.local.total), 1),
    cached_p50_ms: round(t.cached.p50),
    cached_p99_ms: round(t.cached.p99),
    cached_mb_s: round(mb(archive * t.cached.count, t.cached.total), 1),
    cold_p50_ms: round(t.cold.p50),
    cold_p99_ms: round(t.cold.p99),
    cold_mb_s: round(mb(archive * t.cold.count, t.cold.total), 1),
    cold_over_cached_p50: round(t.cold.p50 / t.cached.p50, 1),
    direct_p50_ms: round(t.direct.p50),
    cold_over_floor_p50: round(t.cold.p50 / t.direct.p50, 3),
    // the worst burst: every request the stand-in saw while 100 reads of one uncached generation were answered
    cloud_requests_100_concurrent: Math.max(...singleFlight.map((b) => b.requests)),
    cloud_downloads_100_concurrent: Math.max(...singleFlight.map((b) => b.downloads)),
    burst_100_ms: Math.round(Math.max(...singleFlight.map((b) => b.ms))),
  };

  console.log(
    `reads of a generation of ${fileCount} files / ${(rawBytes / 1e6).toFixed(1)} MB (archive ${(archive / 1e6).toFixed(2)} MB), ` +
      `real HTTP, one download at a time (Storage: own process, ${describeNetwork(REMOTE_STORAGE)})`,
  );
  console.log(
    formatTable([
      ['read from', 'n', 'p50 ms', 'p99 ms', 'MB/s'],
      ['local copy', String(t.local.count), figures.local_p50_ms.toFixed(2), figures.local_p99_ms.toFixed(2), figures.local_mb_s.toFixed(1)],
      ['cache (local copy gone)', String(t.cached.count), figures.cached_p50_ms.toFixed(2), figures.cached_p99_ms.toFixed(2), figures.cached_mb_s.toFixed(1)],
      ['cold (pulled from Storage)', String(t.cold.count), figures.cold_p50_ms.toFixed(2), figures.cold_p99_ms.toFixed(2), figures.cold_mb_s.toFixed(1)],
      ['floor: Storage directly', String(t.direct.count), figures.direct_p50_ms.toFixed(2), round(t.direct.p99).toFixed(2), round(mb(archive * t.direct.count, t.direct.total), 1).toFixed(1)],
    ]),
  );
  console.log(`cold / cache at p50: ${figures.cold_over_cached_p50}×; cold / floor at p50: ${figures.cold_over_floor_p50}× (target <= 1.5)`);
  console.log(
    `100 concurrent reads of an uncached generation (worst of ${bursts}): ${figures.cloud_requests_100_concurrent} Storage request(s), ` +
      `${figures.cloud_downloads_100_concurrent} download(s) (target: 1); all answered in ${figures.burst_100_ms} ms`,
  );
  console.log(JSON.stringify(figures));
} finally {
  await server.kill('SIGTERM');
  await standIn.close();
  dir.remove();
}
