// Edge size: the largest save the edge entry handles within an Edge Function's limits (2 s CPU per request,
// 256 MB memory), and what the edge's default limits should be.
//   node --import tsx bench/edge-save.ts [--quick]        (needs PostgreSQL 15: scripts/pg-cluster.sh)
// For each size, a fresh `functions/generations` worker under Deno (after one small warm-up save) takes one save
// of generated Python source; Storage refuses uploads meanwhile, so the figure is the save alone: pack, the
// outbox INSERT, the local write. Then a fresh `storage-maintenance` worker drains that row (outbox read, upload,
// download back, sha256) with Storage working. CPU time is the worker's utime + stime from /proc across the call;
// peak memory its VmHWM (fresh workers, so each peak is that size's alone). The baseline in the same run is the
// same measurement for a 1-file save: what any request costs. The final line is the JSON of named figures.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase } from '../functions/_shared/db/database.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { JWT_SECRET, migrateAll, serviceToken, userToken } from '../test/helpers/context.ts';
import { startEntry } from '../test/helpers/deno-entry.ts';
import { startStorageStandIn } from '../test/storage-standin/server.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { round } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' } } });
const MB = 2 ** 20;
const SIZES_MB = values.quick ? [1, 8] : [1, 2, 4, 8, 12, 16, 24, 32];
/** The budget a save must fit with margin: half the platform's CPU limit, 200 of its 256 MB. */
const CPU_BUDGET_MS = 1000;
const RSS_BUDGET_MB = 200;

const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const cpuMs = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticks; // utime, stime
};
const peakMb = (pid: number) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

if (!existsPg()) {
  console.log('!!! bench/edge-save.ts SKIPPED: needs PostgreSQL 15 (apt-get install postgresql-15) !!!');
  console.log(JSON.stringify({ skipped: 'no PostgreSQL 15' }));
  process.exit(0);
}
function existsPg() {
  try {
    return readFileSync('/usr/lib/postgresql/15/bin/initdb').byteLength > 0;
  } catch {
    return false;
  }
}

const pgDir = mkdtempSync(join(tmpdir(), 'codebegen-bench-pg.'));
const tmp = mkdtempSync(join(tmpdir(), 'codebegen-bench-edge.'));
const url = execFileSync('bash', ['scripts/pg-cluster.sh', 'start', pgDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
const standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET, fileSizeLimit: 64 * MB });
try {
  const db = createDatabase(openPostgres(url));
  await migrateAll(db);
  await db.close();
  await fetch(`${standIn.url}/storage/v1/bucket`, {
    method: 'POST',
    headers: { authorization: `Bearer ${standIn.serviceKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'codebegen-projects', name: 'codebegen-projects', public: false }),
  });
  const env = (worker: string) => ({
    SUPABASE_URL: standIn.url,
    SUPABASE_DB_URL: url,
    SUPABASE_SERVICE_ROLE_KEY: standIn.serviceKey,
    JWT_SECRET,
    USE_CLOUD_STORAGE: 'true',
    STORAGE_PATH: join(tmp, worker, 'projects'),
    CACHE_PATH: join(tmp, worker, 'cache'),
    // room to probe past the defaults this benchmark is here to choose
    MAX_GENERATION_BYTES: String(64 * MB),
    STORAGE_UPLOAD_LIMIT_BYTES: String(64 * MB),
    MAX_REQUEST_BYTES: String(96 * MB),
    LOG_LEVEL: 'error',
  });
  const user = { authorization: `Bearer ${await userToken(randomUUID())}`, 'content-type': 'application/json' };
  const S = { authorization: `Bearer ${await serviceToken()}` };

  const measure = async (files: Record<string, string>, label: string) => {
    const fn = await startEntry('functions/generations/index.ts', env(`gen-${label}`));
    const pid = fn.child.pid!;
    try {
      const warm = await fetch(`${fn.base}/generations`, { method: 'POST', headers: user, body: JSON.stringify({ project_id: randomUUID(), files: { 'a.py': 'x = 1\n' } }) });
      if (warm.status !== 201) throw new Error(`warm-up save: ${warm.status} ${await warm.text()}`);
      standIn.faults.failShare(1, [503]);
      const body = JSON.stringify({ project_id: randomUUID(), files });
      const [cpu0, t0] = [cpuMs(pid), performance.now()];
      const res = await fetch(`${fn.base}/generations`, { method: 'POST', headers: user, body });
      const answer = (await res.json()) as { generation_id: string; archive_size_bytes?: number; size_bytes?: number };
      const [cpu1, t1] = [cpuMs(pid), performance.now()];
      if (res.status !== 201) throw new Error(`save of ${label}: ${res.status} ${JSON.stringify(answer)}\n${fn.output()}`);
      const save = { cpuMs: cpu1 - cpu0, wallMs: t1 - t0, peakMb: peakMb(pid), requestMb: body.length / MB };
      fn.child.kill('SIGKILL');
      standIn.faults.clear();

      const sql = (await import('postgres')).default(url, { max: 1, onnotice: () => {} });
      const [row] = await sql`select octet_length(archive)::int as bytes from codebegen_private.upload_outbox where generation_id = ${answer.generation_id}`;
      await sql`update codebegen_private.upload_outbox set next_attempt_at = now(), lease_expires_at = null where generation_id = ${answer.generation_id}`;
      await sql.end();
      const m = await startEntry('functions/storage-maintenance/index.ts', env(`drain-${label}`));
      try {
        const [c0, w0] = [cpuMs(m.child.pid!), performance.now()];
        const drained = (await (await fetch(`${m.base}/storage-maintenance/drain`, { method: 'POST', headers: S })).json()) as { uploaded: number };
        const [c1, w1] = [cpuMs(m.child.pid!), performance.now()];
        if (drained.uploaded < 1) {
          const sql2 = (await import('postgres')).default(url, { max: 1, onnotice: () => {} });
          const errs = await sql2`select last_error from codebegen_private.upload_outbox`;
          await sql2.end();
          throw new Error(`drain of ${label}: ${JSON.stringify(drained)} ${JSON.stringify(errs)}\n${m.output()}`);
        }
        return { id: answer.generation_id, save, drain: { cpuMs: c1 - c0, wallMs: w1 - w0, peakMb: peakMb(m.child.pid!) }, archiveMb: Number(row!.bytes) / MB };
      } finally {
        m.child.kill('SIGKILL');
      }
    } finally {
      fn.child.kill('SIGKILL');
    }
  };

  /** A cold read on a fresh worker (empty /tmp: the bytes come from the bucket), after a warm-up cold read of `warm`. */
  const coldRead = async (id: string, warm: string) => {
    const fn = await startEntry('functions/generations/index.ts', env(`read-${id}`));
    const pid = fn.child.pid!;
    try {
      const get = (g: string) => fetch(`${fn.base}/generations/${g}/download`, { headers: user });
      await (await get(warm)).arrayBuffer();
      const [cpu0, t0] = [cpuMs(pid), performance.now()];
      const res = await get(id);
      const bytes = (await res.arrayBuffer()).byteLength;
      const [cpu1, t1] = [cpuMs(pid), performance.now()];
      if (res.status !== 200) throw new Error(`cold read: ${res.status}\n${fn.output()}`);
      return { cpuMs: cpu1 - cpu0, wallMs: t1 - t0, bytes };
    } finally {
      fn.child.kill('SIGKILL');
    }
  };

  const baseline = await measure({ 'app/main.py': 'print(1)\n' }, 'baseline');
  // A typical generation (50 Python files, ~300 KB), saved, and read cold from the bucket by a fresh worker.
  const typical = await measure(sourceFiles('edge-typical', 50, 6_000), 'typical');
  const cold = await coldRead(typical.id, baseline.id);
  console.log(
    `typical generation (50 files, ~300 KB) under Deno: save ${round(typical.save.cpuMs, 0)} ms CPU (${round(typical.save.wallMs, 0)} ms wall), ` +
      `cold read from the bucket ${round(cold.cpuMs, 0)} ms CPU (${round(cold.wallMs, 0)} ms wall), of the 2 000 ms CPU an Edge Function may use per request`,
  );
  const rows: (string | number)[][] = [];
  const results: { mb: number; fits: boolean; saveCpu: number; drainCpu: number; peak: number }[] = [];
  for (const mb of SIZES_MB) {
    const each = 64 * 1024;
    const r = await measure(sourceFiles(`edge-${mb}`, Math.round((mb * MB) / each), each), `${mb}mb`);
    const peak = Math.max(r.save.peakMb, r.drain.peakMb);
    const fits = r.save.cpuMs <= CPU_BUDGET_MS && r.drain.cpuMs <= CPU_BUDGET_MS && peak <= RSS_BUDGET_MB;
    results.push({ mb, fits, saveCpu: r.save.cpuMs, drainCpu: r.drain.cpuMs, peak });
    rows.push([`${mb} MB`, round(r.archiveMb, 2), round(r.save.cpuMs, 0), round(r.save.wallMs, 0), round(r.save.peakMb, 0), round(r.drain.cpuMs, 0), round(r.drain.wallMs, 0), round(r.drain.peakMb, 0), fits ? 'yes' : 'no']);
  }
  const table = [
    ['files', 'archive MB', 'save CPU ms', 'save wall ms', 'save peak MB', 'drain CPU ms', 'drain wall ms', 'drain peak MB', 'fits'],
    ['1 file (baseline)', round(baseline.archiveMb, 3), round(baseline.save.cpuMs, 0), round(baseline.save.wallMs, 0), round(baseline.save.peakMb, 0), round(baseline.drain.cpuMs, 0), round(baseline.drain.wallMs, 0), round(baseline.drain.peakMb, 0), '-'],
    ...rows,
  ];
  console.log(formatTable(table.map((r) => r.map(String))));
  const largest = [...results].reverse().find((r) => r.fits && results.filter((x) => x.mb <= r.mb).every((x) => x.fits));
  console.log(`budget: ${CPU_BUDGET_MS} ms CPU per call (of 2 000), ${RSS_BUDGET_MB} MB peak (of 256); largest fitting save: ${largest ? `${largest.mb} MB of files` : 'none'}`);
  console.log(JSON.stringify({
    baseline_save_cpu_ms: round(baseline.save.cpuMs, 0),
    baseline_peak_mb: round(baseline.save.peakMb, 0),
    typical_save_cpu_ms: round(typical.save.cpuMs, 0),
    typical_cold_read_cpu_ms: round(cold.cpuMs, 0),
    largest_fitting_mb: largest?.mb ?? 0,
    ...Object.fromEntries(results.flatMap((r) => [[`save_cpu_ms_${r.mb}mb`, round(r.saveCpu, 0)], [`drain_cpu_ms_${r.mb}mb`, round(r.drainCpu, 0)], [`peak_mb_${r.mb}mb`, round(r.peak, 0)]])),
  }));
} finally {
  await standIn.close();
  execFileSync('bash', ['scripts/pg-cluster.sh', 'stop', pgDir], { stdio: 'ignore' });
  rmSync(tmp, { recursive: true, force: true });
}
