// Save latency, cloud enabled vs local-only, measured in the same run on the same data (ratios, not absolutes).
//   npx tsx bench/save-latency.ts [--saves 500] [--quick]
// A typical generation: ~50 files, ~300 KB. The Storage stand-in adds 50 ms to every request.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { appContext, JWT_SECRET, userToken, type AppContext } from '../test/helpers/context.ts';
import { startStorageStandIn } from '../test/storage-standin/server.ts';

const { values } = parseArgs({ options: { saves: { type: 'string' }, quick: { type: 'boolean' } } });
const saves = Number(values.saves ?? (values.quick ? 40 : 500));

function generation(seed: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 50; i++) files[`app/module_${i}/file_${i}.py`] = `# ${seed} ${i}\n${'x = "fastapi"\n'.repeat(400)}`;
  return files; // ~50 files, ~300 KB
}

async function measure(ctx: AppContext, token: string): Promise<number[]> {
  const project = randomUUID();
  const times: number[] = [];
  for (let i = 0; i < saves; i++) {
    const body = JSON.stringify({ project_id: project, files: generation(`${i}`) });
    const t0 = performance.now();
    const res = await ctx.app.request('http://bench/generations', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
    times.push(performance.now() - t0);
    if (res.status !== 201) throw new Error(`save answered ${res.status}: ${await res.text()}`);
  }
  return times.sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const token = await userToken(randomUUID());
const standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
const local = await appContext({ LOG_LEVEL: 'silent' });
const cloud = await appContext({ USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey });
await cloud.cloud!.ensureBucket();
standIn.faults.delayNext(1_000_000, 50);
try {
  await measure(local, token); // warm-up of both paths, not counted
  const l = await measure(local, token);
  const c = await measure(cloud, token);
  await cloud.uploads!.idle();
  const figures = {
    saves,
    local_p50_ms: +pct(l, 50).toFixed(2),
    local_p99_ms: +pct(l, 99).toFixed(2),
    cloud_p50_ms: +pct(c, 50).toFixed(2),
    cloud_p99_ms: +pct(c, 99).toFixed(2),
    ratio_p50: +(pct(c, 50) / pct(l, 50)).toFixed(3),
    ratio_p99: +(pct(c, 99) / pct(l, 99)).toFixed(3),
  };
  console.log(`save latency over ${saves} saves of ~50 files / ~300 KB (stand-in adds 50 ms per request)`);
  console.log(`            p50 ms    p99 ms`);
  console.log(`local     ${figures.local_p50_ms.toFixed(2).padStart(8)}  ${figures.local_p99_ms.toFixed(2).padStart(8)}`);
  console.log(`cloud     ${figures.cloud_p50_ms.toFixed(2).padStart(8)}  ${figures.cloud_p99_ms.toFixed(2).padStart(8)}`);
  console.log(`ratio     ${figures.ratio_p50.toFixed(3).padStart(8)}  ${figures.ratio_p99.toFixed(3).padStart(8)}   (targets: <= 1.10, <= 1.25)`);
  console.log(JSON.stringify(figures));
} finally {
  await local.close();
  await cloud.close();
  await standIn.close();
}
