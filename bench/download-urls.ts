// Download URLs issued per second on one core: GET /{id}, which answers a generation with a freshly signed
// download_url, the call a client makes for every download.
//   node --import tsx bench/download-urls.ts [--quick] [--seconds 10]
// Two real servers (`npm start`'s scripts/serve.ts, embedded PGlite), each in a process of its own — one Node
// process is one core for our work: the event loop, and PGlite (WASM) on the same thread. Cloud off, the URL is our
// own signed token (verify the caller's JWT, read the row as the caller under RLS, sign an HS256 token). Cloud on,
// for an uploaded generation, Storage signs it: the same work plus one createSignedUrl call to the Storage stand-in
// (its own process, a realistic network: bench/lib/network.ts), so that rate is bound by the network, not by us.
// Each server is driven over loopback HTTP for N seconds one request at a time, then 16 at a time; the server's
// CPU time (from /proc) gives its URLs per CPU-second, the "one core" figure whatever the machine's load or the
// network's latency. The signer alone (no HTTP, no database) is measured in this process for scale.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createDownloadSigner, downloadKey } from '../functions/_shared/auth/download-token.ts';
import { JWT_SECRET, tempDir, userToken } from '../test/helpers/context.ts';
import { scratchDatabase } from '../test/helpers/scratch-db.ts';
import type { ServerProcess } from '../test/helpers/server-process.ts';
import { spawnStandIn } from '../test/storage-standin/process.ts';
import { httpGet, save, waitUploaded } from './lib/api.ts';
import { describeNetwork, REMOTE_STORAGE } from './lib/network.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { startServer, type Side } from './lib/servers.ts';
import { round, timings } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, seconds: { type: 'string' }, 'database-url': { type: 'string' } } });
const seconds = Number(values.seconds ?? (values.quick ? 0.3 : 10));
const CONCURRENCY = 16;

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux only; its clock ticks are 1/100 s). */
function cpuMs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    throw new Error(`[bench] reading another process's CPU time needs Linux's /proc: ${(err as Error).message}`);
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // after "pid (comm) ", the state is field 3
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime: fields 14 and 15
}

interface Run {
  urls: number;
  perSecond: number;
  p50: number;
  p99: number;
  cpuUsPerUrl: number;
}

/** Asks `server` for the generation's download URL, `concurrency` at a time, for `seconds`. */
async function drive(server: ServerProcess, auth: Record<string, string>, id: string, isUrl: (url: string) => boolean, concurrency: number, forSeconds = seconds): Promise<Run> {
  const url = `${server.base}/${id}`;
  const latencies: number[] = [];
  const cpu0 = cpuMs(server.child.pid!);
  const t0 = performance.now();
  const end = t0 + forSeconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const started = performance.now();
      const res = await httpGet(url, auth);
      latencies.push(performance.now() - started);
      const body = JSON.parse(res.bytes.toString('utf8')) as { download_url?: string };
      if (res.status !== 200 || !body.download_url || !isUrl(body.download_url)) throw new Error(`GET /${id} answered ${res.status}: ${res.bytes.toString('utf8').slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = performance.now() - t0;
  const cpu = Math.max(10, cpuMs(server.child.pid!) - cpu0); // at least one tick
  const t = timings(latencies);
  return { urls: t.count, perSecond: t.count / (elapsed / 1000), p50: t.p50, p99: t.p99, cpuUsPerUrl: (cpu * 1000) / t.count };
}

/** The signer alone, in this process: tokens per second. */
async function signerRate(): Promise<number> {
  const signer = createDownloadSigner(downloadKey({ jwtSecret: JWT_SECRET }), 3600);
  const grant = { generationId: randomUUID(), ownerId: randomUUID(), archiveSha256: 'a'.repeat(64) };
  for (let i = 0; i < 2000; i++) await signer.sign(grant); // warm-up
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) await signer.sign(grant);
    n += 100;
  }
  return n / ((performance.now() - t0) / 1000);
}

const dir = tempDir('bench-urls-');
const adminUrl = values['database-url'] ?? process.env.BENCH_DATABASE_URL;
const databases = adminUrl ? await Promise.all([scratchDatabase(adminUrl, 'cb_bench'), scratchDatabase(adminUrl, 'cb_bench')]) : [];
const dbEnv = (i: number): Record<string, string> => (databases[i] ? { DATABASE_URL: databases[i]!.url } : {});
const standInStarted = spawnStandIn({ jwtSecret: JWT_SECRET, ...REMOTE_STORAGE });
const [local, [standIn, cloud]] = await Promise.all([
  startServer(dir.path, 'local', undefined, dbEnv(0)),
  standInStarted.then(async (s) => [s, await startServer(dir.path, 'cloud', s, dbEnv(1))] as const),
]);
const servers: Record<Side, ServerProcess> = { local, cloud };
const auth = { authorization: `Bearer ${await userToken(randomUUID(), { expiresIn: '1d' })}` };

try {
  const files = sourceFiles('download-urls', 50, 4000); // a typical generation: 50 files, ~200 KB
  const ids = {
    local: (await save(local.base, auth, randomUUID(), files)).generation_id,
    cloud: (await save(cloud.base, auth, randomUUID(), files)).generation_id,
  };
  await waitUploaded(cloud.base, auth, [ids.cloud]);
  // Cloud off: our own link (PUBLIC_URL, then the path); cloud on: Storage's signed URL.
  const isUrl: Record<Side, (url: string) => boolean> = {
    local: (url) => url.includes(`/functions/v1/generations/${ids.local}/download?token=`),
    cloud: (url) => url.startsWith(`${standIn.url}/storage/v1/object/sign/`),
  };

  for (const side of ['local', 'cloud'] as const) await drive(servers[side], auth, ids[side], isUrl[side], 4, Math.min(seconds, 2)); // warm-up
  const runs = {} as Record<`${Side}_${1 | 16}`, Run>;
  // Alternating sides, so the machine's noise falls on both.
  for (const c of [1, CONCURRENCY] as const) {
    for (const side of ['local', 'cloud'] as const) runs[`${side}_${c}`] = await drive(servers[side], auth, ids[side], isUrl[side], c);
  }
  const signer = await signerRate();

  const perCore = (r: Run) => 1e6 / r.cpuUsPerUrl;
  const figures = {
    seconds,
    local_c1_per_s: Math.round(runs.local_1.perSecond),
    local_c1_p50_ms: round(runs.local_1.p50),
    local_c1_p99_ms: round(runs.local_1.p99),
    local_c16_per_s: Math.round(runs.local_16.perSecond),
    local_c16_p99_ms: round(runs.local_16.p99),
    local_cpu_us_per_url: Math.round(runs.local_16.cpuUsPerUrl),
    local_per_core_s: Math.round(perCore(runs.local_16)),
    cloud_c1_per_s: Math.round(runs.cloud_1.perSecond),
    cloud_c1_p50_ms: round(runs.cloud_1.p50),
    cloud_c1_p99_ms: round(runs.cloud_1.p99),
    cloud_c16_per_s: Math.round(runs.cloud_16.perSecond),
    cloud_c16_p99_ms: round(runs.cloud_16.p99),
    cloud_cpu_us_per_url: Math.round(runs.cloud_16.cpuUsPerUrl),
    cloud_per_core_s: Math.round(perCore(runs.cloud_16)),
    signer_only_per_s: Math.round(signer),
  };

  const database = adminUrl ? 'PostgreSQL in its own process (its CPU is not counted)' : 'embedded PGlite, in the server process (counted)';
  console.log(`download URLs issued by GET /{id}, real HTTP, ${seconds} s per row; each server in its own process, database: ${database}; Storage: own process, ${describeNetwork(REMOTE_STORAGE)}`);
  const row = (name: string, c: number, r: Run) => [name, String(c), String(Math.round(r.perSecond)), r.p50.toFixed(2), r.p99.toFixed(2), String(Math.round(r.cpuUsPerUrl)), String(Math.round(perCore(r)))];
  console.log(
    formatTable([
      ['who signs', 'at once', 'URLs/s', 'p50 ms', 'p99 ms', 'server CPU µs/URL', 'URLs per CPU-s'],
      row('we do (cloud off)', 1, runs.local_1),
      row('we do (cloud off)', CONCURRENCY, runs.local_16),
      row('Storage (cloud on)', 1, runs.cloud_1),
      row('Storage (cloud on)', CONCURRENCY, runs.cloud_16),
    ]),
  );
  console.log(`one core: ${figures.local_per_core_s} URLs/s signed by us, ${figures.cloud_per_core_s} URLs/s signed by Storage (our share of the work; the network sets the wall-clock rate)`);
  console.log(`the signer alone (HS256, no HTTP or database): ${figures.signer_only_per_s} tokens/s`);
  console.log(JSON.stringify(figures));
} finally {
  await Promise.all([local.kill('SIGTERM'), cloud.kill('SIGTERM')]);
  await standIn.close();
  for (const d of databases) await d.drop();
  dir.remove();
}
