// Files, diffs and zips (issue 16): what GET /{id}/files, GET /{id}/files/{path} from the cache and a manifest diff
// cost next to the plain GET /{id} of the same generation, and zip vs tar.gz download throughput.
//   node --import tsx bench/files.ts [--quick] [--rounds 200] [--files 50] [--file-bytes 4096]
// Real HTTP on loopback to `npm start`'s server (scripts/serve.ts, cloud on, embedded PGlite) in a process of its
// own, the Storage stand-in in a third behind a realistic network. The stand-in refuses every upload, so the
// generations stay in the outbox: GET /{id} then signs our own URL (no Storage round trip inflates the baseline),
// and the file read comes from the cache once the first read has filled it (the local copy is removed first).
// Each round times one request of each kind in turn, so they share the machine's noise.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { JWT_SECRET, tempDir, userToken } from '../test/helpers/context.ts';
import { spawnStandIn } from '../test/storage-standin/process.ts';
import { httpGet, save, type Saved } from './lib/api.ts';
import { describeNetwork, REMOTE_STORAGE } from './lib/network.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { startServer } from './lib/servers.ts';
import { round, timings } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, rounds: { type: 'string' }, files: { type: 'string' }, 'file-bytes': { type: 'string' } } });
const quick = Boolean(values.quick);
const rounds = Number(values.rounds ?? (quick ? 20 : 200));
const fileCount = Number(values.files ?? 50); // a typical generation: ~50 files, ~200 KB
const fileBytes = Number(values['file-bytes'] ?? 4096);
const downloads = quick ? 3 : 20; // of each format
const bigFiles = quick ? 100 : 300; // the generation the throughput is measured on

const dir = tempDir('bench-files-');
const standIn = await spawnStandIn({ jwtSecret: JWT_SECRET, ...REMOTE_STORAGE });
const server = await startServer(dir.path, 'server', standIn, { UPLOAD_RETRY_SECONDS: '3600' });
const storagePath = join(dir.path, 'server', 'projects');
const auth = { authorization: `Bearer ${await userToken(randomUUID(), { expiresIn: '1d' })}` };

/** One GET, timed (ms) until its last byte; throws unless it answers `status`. */
async function timed(path: string, status = 200): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await httpGet(`${server.base}${path}`, auth);
  const ms = performance.now() - t0;
  if (res.status !== status) throw new Error(`GET ${path} answered ${res.status}: ${res.bytes.toString().slice(0, 200)}`);
  return { ms, bytes: res.bytes.byteLength };
}

/** The next version of `files`: a tenth of them edited, two added, one removed (what a regeneration looks like). */
function nextVersion(files: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  Object.entries(files).forEach(([path, content], i) => {
    if (i === 3) return;
    out[path] = i % 10 === 0 ? content.replace('router = APIRouter()', 'router = APIRouter(prefix="/v2")') : content;
  });
  out['app/added_a.py'] = '# added\n';
  out['app/added_b.py'] = '# added too\n';
  return out;
}

const mb = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

try {
  // Every upload refused: the generations stay in the outbox (see the heading).
  await standIn.faults({ failShare: [1, [503]] });
  const project = randomUUID();
  const v1Files = sourceFiles('files-v1', fileCount, fileBytes);
  const v1 = await save(server.base, auth, project, v1Files);
  const v2 = await save(server.base, auth, project, nextVersion(v1Files));
  const big = await save(server.base, auth, randomUUID(), sourceFiles('files-big', bigFiles, 10_000));
  const rawBig = Object.values(sourceFiles('files-big', bigFiles, 10_000)).reduce((n, s) => n + Buffer.byteLength(s), 0);
  // The cached generation: its local copy removed, its first file read fills the cache from the outbox.
  const folder = join(storagePath, v1.project_id, 'generations', `v${v1.version}__${v1.generation_id}`);
  rmSync(folder, { recursive: true, force: true });
  rmSync(`${folder}.tar.gz`, { force: true });
  const filePath = Object.keys(v1Files)[7]!;
  const fileUrl = `/${v1.generation_id}/files/${filePath}`;
  await timed(fileUrl);

  const kinds = {
    get: `/${v1.generation_id}`,
    list: `/${v1.generation_id}/files`,
    file: fileUrl,
    diff: `/${v2.generation_id}/diff?against=${v1.generation_id}`,
    diff_patch: `/${v2.generation_id}/diff?against=${v1.generation_id}&patch=true`,
  } as const;
  type Kind = keyof typeof kinds;
  const times = Object.fromEntries(Object.keys(kinds).map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
  for (let i = 0; i < 5; i++) for (const path of Object.values(kinds)) await timed(path); // warm-up
  for (let r = 0; r < rounds; r++) for (const [kind, path] of Object.entries(kinds) as [Kind, string][]) times[kind].push((await timed(path)).ms);
  const t = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, timings(v)])) as Record<Kind, ReturnType<typeof timings>>;

  const formats = { 'tar.gz': `/${big.generation_id}/download`, zip: `/${big.generation_id}/download?format=zip` };
  const dl: Record<string, number[]> = { 'tar.gz': [], zip: [] };
  const sizes: Record<string, number> = {};
  await timed(formats.zip);
  for (let i = 0; i < downloads; i++) {
    for (const [format, path] of Object.entries(formats)) {
      const { ms, bytes } = await timed(path);
      dl[format]!.push(ms);
      sizes[format] = bytes;
    }
  }
  const dt = { tgz: timings(dl['tar.gz']!), zip: timings(dl.zip!) };

  const figures = {
    get_p50_ms: round(t.get.p50),
    files_list_p50_ms: round(t.list.p50),
    file_cached_p50_ms: round(t.file.p50),
    diff_p50_ms: round(t.diff.p50),
    diff_patch_p50_ms: round(t.diff_patch.p50),
    files_list_over_get_p50: round(t.list.p50 / t.get.p50),
    file_cached_over_get_p50: round(t.file.p50 / t.get.p50),
    diff_over_get_p50: round(t.diff.p50 / t.get.p50),
    targz_mb_s: round(mb(rawBig * dt.tgz.count, dt.tgz.total), 1),
    zip_mb_s: round(mb(rawBig * dt.zip.count, dt.zip.total), 1),
    zip_over_targz_throughput: round(dt.tgz.total / dt.zip.total),
    zip_over_targz_bytes: round(sizes.zip! / sizes['tar.gz']!),
  };

  console.log(
    `a generation of ${fileCount} files of ~${fileBytes} bytes, real HTTP, one request at a time, ${rounds} rounds ` +
      `(Storage: own process, ${describeNetwork(REMOTE_STORAGE)}, refusing uploads)`,
  );
  console.log(
    formatTable([
      ['request', 'n', 'p50 ms', 'p99 ms', '× GET p50'],
      ...(Object.entries(t) as [Kind, ReturnType<typeof timings>][]).map(([k, v]) => [`${k} ${kinds[k].replace(/[0-9a-f-]{36}/g, '{id}')}`, String(v.count), v.p50.toFixed(2), v.p99.toFixed(2), (v.p50 / t.get.p50).toFixed(2)]),
    ]),
  );
  console.log(`downloads of ${bigFiles} files / ${(rawBig / 1e6).toFixed(1)} MB of source, ${downloads} of each format:`);
  console.log(
    formatTable([
      ['format', 'bytes', 'p50 ms', 'MB/s of source'],
      ['tar.gz (stored, sent as is)', String(sizes['tar.gz']), dt.tgz.p50.toFixed(1), figures.targz_mb_s.toFixed(1)],
      ['zip (made while sent)', String(sizes.zip), dt.zip.p50.toFixed(1), figures.zip_mb_s.toFixed(1)],
    ]),
  );
  console.log(JSON.stringify(figures));
} finally {
  await server.kill('SIGTERM');
  await standIn.close();
  dir.remove();
}
