// Save latency, cloud enabled vs local-only, measured in the same run on the same data (ratios, not absolutes).
//   node --import tsx bench/save-latency.ts [--saves 500] [--quick]
// Two real servers (`npm start`'s scripts/serve.ts, embedded PGlite on disk), one with cloud storage on and one
// without, each in its own process, and the Storage stand-in in a third process behind a realistic network
// (50 ms latency, 100 Mbit/s), as the real Storage API runs elsewhere. Saves go one after another over loopback HTTP,
// as CodebeGen sends them, alternating between the servers (and which goes first) so the machine's noise falls on
// both alike. A typical generation: 50 files, ~300 KB. The cloud server uploads and verifies in the background.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { JWT_SECRET, tempDir, userToken } from '../test/helpers/context.ts';
import { spawnStandIn } from '../test/storage-standin/process.ts';
import { describeNetwork, REMOTE_STORAGE } from './lib/network.ts';
import { startServer } from './lib/servers.ts';
import { percentile as pct, sleep } from './lib/stats.ts';

const { values } = parseArgs({ options: { saves: { type: 'string' }, quick: { type: 'boolean' } } });
const saves = Number(values.saves ?? (values.quick ? 40 : 500));

function generation(seed: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 50; i++) files[`app/module_${i}/file_${i}.py`] = `# ${seed} ${i}\n${'x = "fastapi"\n'.repeat(400)}`;
  return files; // 50 files, ~300 KB
}

const dir = tempDir('bench-save-');
const standIn = await spawnStandIn({ jwtSecret: JWT_SECRET, ...REMOTE_STORAGE });
const [local, cloud] = await Promise.all([startServer(dir.path, 'local'), startServer(dir.path, 'cloud', standIn)]);
const servers = { local, cloud };
const auth = { authorization: `Bearer ${await userToken(randomUUID(), { expiresIn: '1d' })}` };

/** One save over HTTP, timed (ms). */
async function save(base: string, project: string, seed: string): Promise<number> {
  const body = JSON.stringify({ project_id: project, files: generation(seed) });
  const t0 = performance.now();
  const res = await fetch(base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 201) throw new Error(`save answered ${res.status}: ${text}`);
  return ms;
}

async function measure(n: number) {
  const projects = { local: randomUUID(), cloud: randomUUID() };
  const times = { local: [] as number[], cloud: [] as number[] };
  for (let i = 0; i < n; i++) {
    for (const side of i % 2 ? (['cloud', 'local'] as const) : (['local', 'cloud'] as const)) {
      times[side].push(await save(servers[side].base, projects[side], `${i}`));
    }
  }
  return { local: times.local.sort((a, b) => a - b), cloud: times.cloud.sort((a, b) => a - b), cloudProject: projects.cloud };
}

/** Waits until every generation of the project is uploaded (verified by the server); how long after the last save. */
async function uploadsDone(project: string, count: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    let uploaded = 0;
    for (let cursor: string | null = ''; cursor !== null; ) {
      const res = await fetch(`${servers.cloud.base}?project_id=${project}&limit=100${cursor ? `&cursor=${cursor}` : ''}`, { headers: auth });
      const page = (await res.json()) as { items: { storage: { status: string } }[]; next_cursor: string | null };
      uploaded += page.items.filter((g) => g.storage.status === 'uploaded').length;
      cursor = page.next_cursor;
    }
    if (uploaded === count) return performance.now() - t0;
    if (performance.now() - t0 > 120_000) throw new Error(`${count - uploaded} generations still not uploaded after 120 s`);
    await sleep(25);
  }
}

try {
  await measure(20); // warm-up of both servers, not counted
  const { local: l, cloud: c, cloudProject } = await measure(saves);
  const lag = await uploadsDone(cloudProject, saves);
  const figures = {
    saves,
    local_p50_ms: +pct(l, 50).toFixed(2),
    local_p99_ms: +pct(l, 99).toFixed(2),
    cloud_p50_ms: +pct(c, 50).toFixed(2),
    cloud_p99_ms: +pct(c, 99).toFixed(2),
    ratio_p50: +(pct(c, 50) / pct(l, 50)).toFixed(3),
    ratio_p99: +(pct(c, 99) / pct(l, 99)).toFixed(3),
    uploads_done_after_last_save_ms: Math.round(lag),
  };
  console.log(`save latency over ${saves} saves of 50 files / ~300 KB, real HTTP (Storage: own process, ${describeNetwork(REMOTE_STORAGE)})`);
  console.log(`            p50 ms    p99 ms`);
  console.log(`local     ${figures.local_p50_ms.toFixed(2).padStart(8)}  ${figures.local_p99_ms.toFixed(2).padStart(8)}`);
  console.log(`cloud     ${figures.cloud_p50_ms.toFixed(2).padStart(8)}  ${figures.cloud_p99_ms.toFixed(2).padStart(8)}`);
  console.log(`ratio     ${figures.ratio_p50.toFixed(3).padStart(8)}  ${figures.ratio_p99.toFixed(3).padStart(8)}   (targets: <= 1.10, <= 1.25)`);
  console.log(`every cloud save uploaded and verified ${figures.uploads_done_after_last_save_ms} ms after the last save answered`);
  console.log(JSON.stringify(figures));
} finally {
  await Promise.all([servers.local.kill('SIGTERM'), servers.cloud.kill('SIGTERM')]);
  await standIn.close();
  dir.remove();
}
