import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { storageKey } from '../functions/_shared/archive/generation-archive.ts';
import { contentDigest, parseManifest, sha256Hex } from '../functions/_shared/archive/manifest.ts';
import { unpackTree, type TreeFile } from '../functions/_shared/archive/tar-gz.ts';
import type { Database } from '../functions/_shared/db/database.ts';
import * as repo from '../functions/_shared/db/generations-repo.ts';
import { parseCliArgs } from '../functions/_shared/migration/cli-args.ts';
import { emptyMapping, parseMapping, type OwnerMapping } from '../functions/_shared/migration/owner-mapping.ts';
import type { MigrationReport } from '../functions/_shared/migration/report.ts';
import { runMigration, type MigrationDeps, type MigrationOptions } from '../functions/_shared/migration/runner.ts';
import { SupabaseCloudStore, type CloudStore } from '../functions/_shared/stores/cloud-store.ts';
import { appContext, JWT_SECRET, memoryLogger, migratedPGlite, tempDir, userToken } from './helpers/context.ts';
import { writePythonGenerations, type PyGeneration } from './helpers/codebegen-python.ts';
import { archiveGeneration, buildOddTree, buildSampleTree, genFiles, snapshotTree } from './helpers/migration-tree.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// The migration CLI (issue 5): every layout CodebeGen left on disk, broken generations, dry run, real run
// against the Storage stand-in and real Postgres (PGlite), re-runs, faults and interruptions, and the CLI itself.

const execFileP = promisify(execFile);
const BUCKET = 'codebegen-projects';
const FAST_RETRY = { retries: 2, minTimeoutMs: 5, maxTimeoutMs: 20 };
const LIMITS = { maxFiles: 5000, maxFileBytes: 10 * 1024 * 1024, maxGenerationBytes: 50 * 1024 * 1024, maxPathDepth: 32, maxFolders: 5000 };
const UNPACK = { maxEntries: 20_000, maxFileBytes: 50 * 1024 * 1024, maxTotalBytes: 200 * 1024 * 1024 };

let standIn: StandIn;
let db: Database;
let cloud: CloudStore;
let tmp: ReturnType<typeof tempDir>;

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  db = await migratedPGlite();
  cloud = new SupabaseCloudStore({ url: standIn.url, serviceKey: standIn.serviceKey, bucket: BUCKET, fileSizeLimit: LIMITS.maxGenerationBytes }, memoryLogger(), FAST_RETRY);
  await cloud.ensureBucket();
});
afterAll(async () => {
  await db?.close();
  await standIn?.close();
});
beforeEach(() => {
  standIn.faults.clear();
  tmp = tempDir('codebegen-migrate-');
  return () => tmp.remove();
});

const storageDir = () => join(tmp.path, 'projects');
const cacheDir = () => join(tmp.path, 'cache');

function run(storage: string, opts: Partial<MigrationOptions> = {}, deps: Partial<MigrationDeps> = {}): Promise<MigrationReport> {
  return runMigration(
    { db, cloud, log: memoryLogger(), ...deps },
    { storagePath: storage, dryRun: false, verify: true, concurrency: 4, mapping: emptyMapping(), limits: LIMITS, cacheDir: cacheDir(), ...opts },
  );
}

const mappingFor = (projects: string[], owner: string, flat: { generation_id: string; project_id: string; version: number }[] = []): OwnerMapping => {
  const m = emptyMapping();
  for (const p of projects) m.projects.set(p, owner);
  for (const f of flat) m.generations.set(f.generation_id, { projectId: f.project_id, version: f.version });
  return m;
};

async function rowCounts() {
  const [r] = await db.asService((tx) => tx.query<{ g: number; p: number }>('select (select count(*) from generations)::int as g, (select count(*) from projects)::int as p'));
  return r!;
}

/** Every regular file under `dir` (relative path -> bytes): an independent read of what is on disk. */
function readDisk(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs)) {
      const st = lstatSync(join(abs, name));
      const r = rel ? `${rel}/${name}` : name;
      if (st.isDirectory()) walk(join(abs, name), r);
      else if (st.isFile()) out.set(r, readFileSync(join(abs, name)).toString('base64'));
    }
  };
  walk(dir, '');
  return out;
}

const asMap = (files: TreeFile[]) => new Map(files.map((f) => [f.path, Buffer.from(f.data).toString('base64')]));
const byId = (r: MigrationReport) => new Map(r.generations.map((g) => [g.generation_id, g]));

describe('a storage folder with every layout and broken generations', () => {
  let storage: string;
  let outside: string;
  let tree: ReturnType<typeof buildSampleTree>;
  let owner: string;
  let mapping: OwnerMapping;

  beforeAll(() => {
    // Shared by the tests of this block (dry run, real run, re-run), in a folder of its own.
    const dir = tempDir('codebegen-migrate-tree-');
    storage = join(dir.path, 'projects');
    outside = join(dir.path, 'outside');
    tree = buildSampleTree(storage, outside);
    owner = randomUUID();
    mapping = mappingFor(tree.projects, owner, [tree.flat[0]!]);
    return () => dir.remove();
  });

  it('dry run: finds every generation, tells what would happen, and writes nothing anywhere', async () => {
    const before = { tree: snapshotTree(storage), rows: await rowCounts(), requests: standIn.requests.length };
    const report = await run(storage, { dryRun: true, mapping });
    expect(snapshotTree(storage)).toEqual(before.tree);
    expect(await rowCounts()).toEqual(before.rows);
    expect(standIn.requests.length).toBe(before.requests);
    expect(existsSync(cacheDir())).toBe(false);

    // The report accounts for every generation folder on disk, and for nothing else.
    const expectedIds = [...tree.good, ...tree.flat].map((g) => g.generation_id).concat([...tree.invalid.keys()]);
    expect(report.generations.map((g) => g.generation_id).sort()).toEqual(expectedIds.sort());
    expect(report.counts).toMatchObject({ found: 15, would_upload: tree.good.length + 1, needs_mapping: 1, needs_attention: 0, invalid: 5, failed: 0, uploaded: 0, already_uploaded: 0 });
    const ids = byId(report);
    for (const [id, why] of tree.invalid) expect(ids.get(id)).toMatchObject({ outcome: 'invalid', reason: expect.stringContaining(why) });
    expect(ids.get(tree.flat[1]!.generation_id)).toMatchObject({ outcome: 'needs_mapping', layout: 'flat' });
    expect(ids.get(tree.flat[0]!.generation_id)).toMatchObject({ outcome: 'would_upload', layout: 'flat', project_id: tree.flat[0]!.project_id, version: 10 });
    expect(ids.get(tree.good[0]!.generation_id)).toMatchObject({ layout: 'archive', manifest: 'disk' });
    expect(ids.get(tree.good[5]!.generation_id)).toMatchObject({ manifest: 'synthesised', notes: [expect.stringContaining('does not parse')] });
    expect(ids.get(tree.good[6]!.generation_id)).toMatchObject({ manifest: 'synthesised', notes: [expect.stringContaining('no manifest.json')] });
    for (const g of report.generations.filter((e) => e.outcome === 'would_upload')) {
      expect(g.archive_bytes).toBeGreaterThan(0);
      expect(g.storage_key).toBe(storageKey({ projectId: g.project_id!, generationId: g.generation_id!, version: g.version! }));
    }
    expect(report.bytes).toBe(report.generations.reduce((n, g) => n + (g.outcome === 'would_upload' ? g.archive_bytes! : 0), 0));
    const ignored = report.ignored.map((i) => i.path);
    expect(ignored.sort()).toEqual([...tree.ignored].sort());
    expect(ignored.some((p) => p.includes('.codebegen-tmp') || p.endsWith('/active') || p.endsWith('.zip'))).toBe(false);
  });

  it('real run: uploads, verifies and registers every placeable generation exactly as the API would; local files untouched', async () => {
    const before = snapshotTree(storage);
    const progress: number[] = [];
    const report = await run(storage, { mapping, onProgress: (p) => progress.push(p.done) });
    expect(snapshotTree(storage)).toEqual(before);
    expect(existsSync(cacheDir()) ? readdirSync(cacheDir()) : []).toEqual([]);
    expect(progress).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(report.counts).toMatchObject({ found: 15, uploaded: tree.good.length + 1, needs_mapping: 1, invalid: 5, failed: 0 });

    for (const entry of report.generations.filter((g) => g.outcome === 'uploaded')) {
      const ref = { projectId: entry.project_id!, generationId: entry.generation_id!, version: entry.version! };
      const object = await cloud.download(storageKey(ref));
      const row = (await db.asService((tx) => repo.findGeneration(tx, entry.generation_id!)))!;
      // The archive unpacks to byte-identical files, and to the manifest on disk when there was one that fits.
      const unpacked = await unpackTree(object, UNPACK);
      const root = `v${ref.version}__${ref.generationId}/`;
      const source = unpacked.files.filter((f) => f.path.startsWith(`${root}source/`)).map((f) => ({ path: f.path.slice(`${root}source/`.length), data: f.data }));
      const folder = join(storage, entry.path);
      expect(asMap(source)).toEqual(readDisk(entry.layout === 'flat' ? folder : join(folder, 'source')));
      expect(unpacked.files.map((f) => f.path).every((p) => p.startsWith(root))).toBe(true);
      expect(unpacked.dirs).toContain(`${root}artifacts`);
      const manifest = parseManifest(unpacked.files.find((f) => f.path === `${root}manifest.json`)!.data)!;
      if (entry.manifest === 'disk') expect(manifest).toEqual(parseManifest(readFileSync(join(folder, 'manifest.json'))));
      expect(manifest).toMatchObject({ generation_id: ref.generationId, project_id: ref.projectId, version: ref.version, file_count: source.length });
      expect(Buffer.from(object).includes(Buffer.from(tree.secret))).toBe(false);
      expect(row).toMatchObject({
        projectId: ref.projectId,
        ownerId: owner,
        version: ref.version,
        fileCount: source.length,
        totalSizeBytes: source.reduce((n, f) => n + f.data.byteLength, 0),
        archiveSizeBytes: object.byteLength,
        archiveSha256: sha256Hex(object),
        contentSha256: contentDigest(source, manifest.metadata),
        storageKey: storageKey(ref),
        uploadStatus: 'uploaded',
        uploadError: null,
      });
      expect(row.manifest).toEqual(manifest);
      expect(entry).toMatchObject({ verified: true, archive_sha256: sha256Hex(object) });
    }
    // Invalid and unplaced generations left no row.
    for (const id of [...tree.invalid.keys(), tree.flat[1]!.generation_id]) expect(await db.asService((tx) => repo.findGeneration(tx, id))).toBeUndefined();
  });

  it('the owner sees every migrated generation through the API at once; nobody else does', async () => {
    const ctx = await appContext({}, db);
    const list = async (project: string, user: string) =>
      ctx.app.request(`http://storage.test/generations?project_id=${project}&limit=100`, { headers: { authorization: `Bearer ${await userToken(user)}` } });
    const [p1] = tree.projects;
    const res = await list(p1!, owner);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items?: { generation_id: string }[]; generations?: { generation_id: string }[] };
    const items = body.items ?? body.generations ?? [];
    const expected = [...tree.good.filter((g) => g.project_id === p1).map((g) => g.generation_id), tree.flat[0]!.generation_id];
    expect(items.map((i) => i.generation_id).sort()).toEqual(expected.sort());
    expect((await list(p1!, randomUUID())).status).toBe(404);
  });

  it('refuses a cache folder inside STORAGE_PATH, directly or through a symlink, before touching anything', async () => {
    const storage = storageDir();
    simpleTree(storage, 1, 1);
    const before = await rowCounts();
    await expect(run(storage, { cacheDir: join(storage, 'cache') })).rejects.toThrow(/must not be inside STORAGE_PATH/);
    symlinkSync(storage, join(tmp.path, 'link'));
    await expect(run(storage, { cacheDir: join(tmp.path, 'link', 'not-yet', 'cache') })).rejects.toThrow(/must not be inside STORAGE_PATH/);
    expect(readdirSync(storage)).not.toContain('not-yet');
    expect(await rowCounts()).toEqual(before);
  });

  it('re-run: uploads nothing, every placed generation is already uploaded', async () => {
    const before = standIn.requests.length;
    const report = await run(storage, { mapping });
    expect(report.counts).toMatchObject({ uploaded: 0, already_uploaded: tree.good.length + 1, invalid: 5, needs_mapping: 1, failed: 0 });
    expect(standIn.requests.slice(before)).toEqual([]);
  });
});

/** `count` good generations over `projects` projects, written by Python; returns them. */
function simpleTree(storage: string, projects: number, perProject: number): PyGeneration[] {
  const gens: PyGeneration[] = [];
  for (let p = 0; p < projects; p++) {
    const project_id = randomUUID();
    for (let v = 1; v <= perProject; v++) gens.push({ project_id, generation_id: randomUUID(), version: v, files: genFiles(`${p}-${v}`, 5), metadata: { v } });
  }
  mkdirSync(storage, { recursive: true });
  writePythonGenerations(storage, gens);
  return gens;
}

async function expectAllUploaded(gens: PyGeneration[]) {
  for (const g of gens) {
    const row = await db.asService((tx) => repo.findGeneration(tx, g.generation_id));
    expect(row?.uploadStatus, g.generation_id).toBe('uploaded');
    const object = await cloud.download(row!.storageKey);
    expect(sha256Hex(object)).toBe(row!.archiveSha256);
    expect(object.byteLength).toBe(row!.archiveSizeBytes);
  }
}

describe('selection, resumption and failures', () => {
  it('--project-id: only those projects; the others are excluded, not touched', async () => {
    const gens = simpleTree(storageDir(), 3, 2);
    const [a, , c] = [gens[0]!.project_id, gens[2]!.project_id, gens[4]!.project_id];
    const before = standIn.requests.length;
    const report = await run(storageDir(), { projectIds: new Set([a, c]), defaultOwner: randomUUID() });
    expect(report.counts).toMatchObject({ found: 6, uploaded: 4, excluded: 2 });
    for (const g of gens) {
      const row = await db.asService((tx) => repo.findGeneration(tx, g.generation_id));
      expect(Boolean(row)).toBe(g.project_id !== gens[2]!.project_id);
    }
    expect(standIn.requests.slice(before).filter((r) => r.method === 'POST')).toHaveLength(4);
  });

  it('faults injected mid-run fail some generations (reported, rows marked failed); the next run completes them', async () => {
    const gens = simpleTree(storageDir(), 2, 6);
    const first = await run(storageDir(), {
      concurrency: 2,
      defaultOwner: randomUUID(),
      onProgress: (p) => p.done === 4 && standIn.faults.failNext(10_000, 503),
    });
    standIn.faults.clear();
    expect(first.counts.uploaded).toBeGreaterThanOrEqual(4);
    expect(first.counts.failed).toBeGreaterThan(0);
    expect(first.counts.uploaded + first.counts.failed).toBe(12);
    const failed = first.generations.filter((g) => g.outcome === 'failed');
    for (const f of failed) {
      expect(f.reason).toMatch(/cloud|503|LockTimeout|unavailable/i);
      expect((await db.asService((tx) => repo.findGeneration(tx, f.generation_id!)))?.uploadStatus).toBe('failed');
    }
    // A dropped connection and a 503 once each are absorbed by the retries.
    standIn.faults.dropNext(1);
    const second = await run(storageDir(), { concurrency: 3, defaultOwner: first.generations[0]!.owner_id });
    expect(second.counts).toMatchObject({ uploaded: failed.length, already_uploaded: 12 - failed.length, failed: 0 });
    await expectAllUploaded(gens);
  });

  it('an AbortSignal stops starting generations; those under way finish; the next run continues', async () => {
    const gens = simpleTree(storageDir(), 1, 10);
    const owner = randomUUID();
    const abort = new AbortController();
    const first = await run(storageDir(), { concurrency: 2, defaultOwner: owner, signal: abort.signal, onProgress: (p) => p.done === 3 && abort.abort() });
    expect(first.interrupted).toBe(true);
    expect(first.counts.uploaded).toBeGreaterThanOrEqual(3);
    expect(first.counts.uploaded).toBeLessThanOrEqual(4);
    expect(first.counts.not_attempted).toBe(10 - first.counts.uploaded);
    const second = await run(storageDir(), { defaultOwner: owner });
    expect(second.counts).toMatchObject({ uploaded: first.counts.not_attempted, already_uploaded: first.counts.uploaded, failed: 0, not_attempted: 0 });
    await expectAllUploaded(gens);
  });

  it('a row left pending by a crash (registered, never uploaded) is uploaded by the next run', async () => {
    const gens = simpleTree(storageDir(), 1, 2);
    const owner = randomUUID();
    // A crash between registering and uploading: every upload fails and retries run out; the rows stay behind.
    standIn.faults.failNext(10_000, 500);
    const first = await run(storageDir(), { defaultOwner: owner });
    expect(first.counts.failed).toBe(2);
    standIn.faults.clear();
    await db.asService((tx) => tx.query(`update generations set upload_status = 'pending' where id = $1::uuid`, [gens[0]!.generation_id]));
    const second = await run(storageDir(), { defaultOwner: owner });
    expect(second.counts.uploaded).toBe(2);
    await expectAllUploaded(gens);
  });

  it('verification: a bucket copy that differs is a failure; --no-verify skips the download', async () => {
    const gens = simpleTree(storageDir(), 1, 2);
    const owner = randomUUID();
    const lying: CloudStore = Object.assign(Object.create(cloud) as CloudStore, {
      download: async (key: string) => {
        const bytes = await cloud.download(key);
        bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
        return bytes;
      },
    });
    const bad = await run(storageDir(), { defaultOwner: owner }, { cloud: lying });
    expect(bad.counts.failed).toBe(2);
    expect(bad.generations[0]!.reason).toMatch(/verification failed/);
    expect((await db.asService((tx) => repo.findGeneration(tx, gens[0]!.generation_id)))?.uploadStatus).toBe('failed');

    const before = standIn.requests.length;
    const unverified = await run(storageDir(), { defaultOwner: owner, verify: false });
    expect(unverified.counts.uploaded).toBe(2);
    expect(unverified.generations.every((g) => g.verified === false)).toBe(true);
    expect(standIn.requests.slice(before).filter((r) => r.method === 'GET')).toEqual([]);
  });

  it('conflicts are reported: same id with other content, a project of another owner (failed); a version taken (needs attention)', async () => {
    const owner = randomUUID();
    const [g] = simpleTree(storageDir(), 1, 1);
    expect((await run(storageDir(), { defaultOwner: owner })).counts.uploaded).toBe(1);
    // Another copy of the storage folder where that generation has other files.
    const other = join(tmp.path, 'other');
    writePythonGenerations(other, [{ ...g!, files: { 'x.py': 'changed\n' } }]);
    const r1 = await run(other, { defaultOwner: owner });
    expect(r1.generations[0]).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/already registered with .*other files/) });
    // Another owner for the same project; and another generation at a version already taken.
    const third = join(tmp.path, 'third');
    writePythonGenerations(third, [{ ...g!, generation_id: randomUUID(), version: 2 }]);
    expect((await run(third, { defaultOwner: randomUUID() })).generations[0]!.reason).toMatch(/belongs to another owner/);
    const fourth = join(tmp.path, 'fourth');
    writePythonGenerations(fourth, [{ ...g!, generation_id: randomUUID() }]);
    expect((await run(fourth, { defaultOwner: owner })).generations[0]).toMatchObject({ outcome: 'needs_attention', reason: expect.stringMatching(new RegExp(`version 1 .* already another generation in the database \\(${g!.generation_id}\\)`)) });
    // The row of the original is untouched.
    expect((await db.asService((tx) => repo.findGeneration(tx, g!.generation_id)))?.uploadStatus).toBe('uploaded');
  });

  it('needing mapping: nothing is guessed; the mapping (CSV or JSON) places flat folders and owners', async () => {
    const gens = simpleTree(storageDir(), 1, 1);
    const flatId = randomUUID();
    mkdirSync(join(storageDir(), flatId, 'app'), { recursive: true });
    writeFileSync(join(storageDir(), flatId, 'app', 'main.py'), 'print(1)\n');
    const unplaced = await run(storageDir());
    expect(unplaced.counts).toMatchObject({ found: 2, needs_mapping: 2, uploaded: 0 });
    expect(unplaced.generations.map((g) => g.reason).join('\n')).toMatch(/no owner for project .*\n?.*|flat folder/);

    const owner = randomUUID();
    const project = gens[0]!.project_id;
    const csv = parseMapping(`project_id,owner_id,generation_id,version\n${project},${owner},,\n${project},,${flatId},7\n`, 'csv');
    const json = parseMapping(JSON.stringify({ projects: { [project]: owner }, generations: { [flatId]: { project_id: project, version: 7 } } }), 'json');
    expect(json).toEqual(csv);
    expect(() => parseMapping('project_id,owner\n', 'csv')).toThrow(/header/);
    expect(() => parseMapping(`project_id,owner_id\n${project},nope\n`, 'csv')).toThrow(/line 2: owner_id "nope" is not a uuid/);
    const placed = await run(storageDir(), { mapping: csv });
    expect(placed.counts).toMatchObject({ uploaded: 2, needs_mapping: 0 });
    const flat = placed.generations.find((g) => g.generation_id === flatId)!;
    expect(flat).toMatchObject({ layout: 'flat', project_id: project, version: 7, owner_id: owner, manifest: 'synthesised' });
    const row = (await db.asService((tx) => repo.findGeneration(tx, flatId)))!;
    expect(row.manifest.files).toEqual(['app/main.py']);
    // No manifest on disk: created_at is the folder's mtime.
    expect(row.manifest.created_at).toBe(lstatSync(join(storageDir(), flatId)).mtime.toISOString());
    expect(row.createdAt.toISOString()).toBe(row.manifest.created_at);
  });

  it('parses the command line; bad arguments are reported', () => {
    expect(parseCliArgs([])).toEqual({ options: { dryRun: false, concurrency: 4, verify: true, help: false, projectIds: undefined, mapping: undefined, defaultOwner: undefined, report: undefined } });
    const id = randomUUID();
    expect(parseCliArgs(['--dry-run', '--project-id', id, '--project-id', id.toUpperCase(), '--no-verify', '--concurrency', '8'])).toMatchObject({
      options: { dryRun: true, projectIds: new Set([id]), verify: false, concurrency: 8 },
    });
    expect(parseCliArgs(['--concurrency', '0'])).toMatchObject({ error: expect.stringMatching(/--concurrency/) });
    expect(parseCliArgs(['--project-id', 'abc'])).toMatchObject({ error: expect.stringMatching(/not a uuid/) });
    expect(parseCliArgs(['--mapping', 'owners.txt'])).toMatchObject({ error: expect.stringMatching(/\.csv or \.json/) });
    expect(parseCliArgs(['--bogus'])).toMatchObject({ error: expect.stringMatching(/bogus/) });
  });
});

/** A generation written by Python at `version` (0 included) and moved to `{project}/archive/`, as the old cleanup did. */
function archivedAt(storage: string, project_id: string, version: number): PyGeneration {
  const g = { project_id, generation_id: randomUUID(), version, files: genFiles(`archived-v${version}`), metadata: { archived: true } };
  writePythonGenerations(storage, [g]);
  archiveGeneration(storage, g);
  return g;
}

const rowOf = (id: string) => db.asService((tx) => repo.findGeneration(tx, id));

describe('odd versions and version clashes need attention, in the dry run as in the real one', () => {
  it('an archived v0 generation with a valid manifest needs attention (never "not a generation"); the rest migrates', async () => {
    const gens = simpleTree(storageDir(), 1, 2);
    const v0 = archivedAt(storageDir(), gens[0]!.project_id, 0);
    const expected = { outcome: 'needs_attention', layout: 'archive', generation_id: v0.generation_id, project_id: v0.project_id, version: 0, reason: expect.stringContaining('version 0 is not a version') };
    const owner = randomUUID();
    for (const dryRun of [true, false]) {
      const report = await run(storageDir(), { dryRun, defaultOwner: owner });
      expect(report.counts).toMatchObject({ found: 3, [dryRun ? 'would_upload' : 'uploaded']: 2, needs_attention: 1, failed: 0 });
      expect(byId(report).get(v0.generation_id)).toMatchObject(expected);
      expect(report.ignored).toEqual([]);
    }
    expect(await rowOf(v0.generation_id)).toBeUndefined();
    await expectAllUploaded(gens);
  });

  it('every other oddity needs attention too (leading zeros, a huge version, an upper-case id, a symlink, a stray manifest, an odd project folder, one id twice); gaps are fine', async () => {
    const tree = buildOddTree(storageDir(), join(tmp.path, 'outside'));
    const owner = randomUUID();
    for (const dryRun of [true, false]) {
      const report = await run(storageDir(), { dryRun, defaultOwner: owner });
      expect(report.counts).toMatchObject({ found: tree.good.length + tree.attention.size, [dryRun ? 'would_upload' : 'uploaded']: tree.good.length, needs_attention: tree.attention.size, failed: 0 });
      const attention = new Map(report.generations.filter((g) => g.outcome === 'needs_attention').map((g) => [g.path, g.reason]));
      expect([...attention.keys()].sort()).toEqual([...tree.attention.keys()].sort());
      for (const [path, why] of tree.attention) expect(attention.get(path), path).toContain(why);
      expect(report.ignored).toEqual([{ path: tree.duplicate, reason: expect.stringContaining('duplicate of generation') }]);
    }
    await expectAllUploaded(tree.good);
  });

  it('two generations of one run at one project and version: the dry run reports them as the real run ends them, and registers neither', async () => {
    const owner = randomUUID();
    const [a, b] = simpleTree(storageDir(), 1, 2);
    const project = a!.project_id;
    const archivedTwin = archivedAt(storageDir(), project, 2); // generations/v2__b and archive/v2__twin
    const flatId = randomUUID(); // a flat folder the mapping puts at v1, where generations/v1__a already is
    mkdirSync(join(storageDir(), flatId));
    writeFileSync(join(storageDir(), flatId, 'main.py'), 'print(1)\n');
    const good = archivedAt(storageDir(), project, 3);
    const mapping = mappingFor([project], owner, [{ generation_id: flatId, project_id: project, version: 1 }]);
    const clashing = new Map([
      [a!.generation_id, `version 1 of project ${project} is claimed by 2 generations in this run (also ${flatId})`],
      [flatId, `(also ${project}/generations/v1__${a!.generation_id})`],
      [b!.generation_id, `version 2 of project ${project} is claimed by 2 generations in this run (also ${project}/archive/v2__${archivedTwin.generation_id})`],
      [archivedTwin.generation_id, `(also ${project}/generations/v2__${b!.generation_id})`],
    ]);
    const outcomes = async (dryRun: boolean) => {
      const rows = await rowCounts();
      const report = await run(storageDir(), { dryRun, mapping });
      if (dryRun) expect(await rowCounts()).toEqual(rows);
      expect(report.counts).toMatchObject({ found: 5, needs_attention: 4, failed: 0, [dryRun ? 'would_upload' : 'uploaded']: 1 });
      for (const [id, why] of clashing) expect(byId(report).get(id), id).toMatchObject({ outcome: 'needs_attention', reason: expect.stringContaining(why) });
      return report.generations.map((g) => [g.generation_id, g.outcome, g.reason]);
    };
    const dry = await outcomes(true);
    const real = await outcomes(false);
    expect(real.map(([id, outcome, reason]) => [id, outcome === 'uploaded' ? 'would_upload' : outcome, reason])).toEqual(dry);
    for (const id of clashing.keys()) expect(await rowOf(id)).toBeUndefined();
    expect((await rowOf(good.generation_id))?.uploadStatus).toBe('uploaded');
  });

  it('a generation at a project and version the database already holds: the dry run says so as the real run does; the holder itself goes on', async () => {
    const owner = randomUUID();
    const [held] = simpleTree(storageDir(), 1, 1);
    expect((await run(storageDir(), { defaultOwner: owner })).counts.uploaded).toBe(1);
    // Another folder (a later copy of the storage folder) with another generation at that version.
    const other = join(tmp.path, 'other');
    const rival = { ...held!, generation_id: randomUUID(), files: genFiles('rival') };
    writePythonGenerations(other, [rival]);
    const why = `version 1 of project ${held!.project_id} is already another generation in the database (${held!.generation_id})`;
    for (const dryRun of [true, false]) {
      const rows = await rowCounts();
      const report = await run(other, { dryRun, defaultOwner: owner });
      expect(report.generations).toEqual([expect.objectContaining({ generation_id: rival.generation_id, outcome: 'needs_attention', reason: why })]);
      expect(report.counts).toMatchObject({ needs_attention: 1, failed: 0 });
      expect(await rowCounts()).toEqual(rows);
    }
    // Both folders in one run: the registered one is already uploaded, its rival clashes with its row.
    writePythonGenerations(storageDir(), [rival]);
    for (const dryRun of [true, false]) {
      const report = await run(storageDir(), { dryRun, defaultOwner: owner });
      expect(byId(report).get(held!.generation_id)).toMatchObject({ outcome: 'already_uploaded' });
      expect(byId(report).get(rival.generation_id)).toMatchObject({ outcome: 'needs_attention', reason: why });
    }
    expect(await rowOf(rival.generation_id)).toBeUndefined();
  });
});

describe('the CLI as a process', () => {
  const cli = (args: string[], env: Record<string, string>) =>
    execFileP(process.execPath, ['--import', 'tsx', 'scripts/migrate-to-supabase.ts', ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...env },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  it('exit codes 2 (bad arguments, missing settings), 0 (all done), 1 (something failed); writes the report', { timeout: 120_000 }, async () => {
    const storage = storageDir();
    const gens = simpleTree(storage, 2, 2);
    const env = {
      STORAGE_PATH: storage,
      PGLITE_DATA_DIR: join(tmp.path, 'db'),
      CACHE_PATH: cacheDir(),
      SUPABASE_URL: standIn.url,
      SUPABASE_SERVICE_KEY: standIn.serviceKey,
      SUPABASE_BUCKET: 'migration-cli-test',
    };
    const bad = await cli(['--concurrency', 'lots'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--concurrency[\s\S]*Usage: npm run migrate/);
    const noCloud = await cli(['--default-owner', randomUUID()], { ...env, SUPABASE_URL: '' });
    expect(noCloud.code).toBe(2);
    expect(noCloud.stderr).toMatch(/SUPABASE_URL and SUPABASE_SERVICE_KEY/);
    expect((await cli(['--help'], env)).stdout).toMatch(/--dry-run/);
    // a report path that reaches into STORAGE_PATH through a symlink is refused like a direct one
    symlinkSync(storage, join(tmp.path, 'into-storage'));
    const inside = await cli(['--dry-run', '--default-owner', randomUUID(), '--report', join(tmp.path, 'into-storage', 'new', 'r.json')], env);
    expect(inside.code).toBe(2);
    expect(inside.stderr).toMatch(/--report must not be inside STORAGE_PATH/);
    expect(existsSync(join(storage, 'new'))).toBe(false);

    const owner = randomUUID();
    const dry = await cli(['--dry-run', '--default-owner', owner, '--report', join(tmp.path, 'dry.json')], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/would upload .*\.tar\.gz/);
    expect(existsSync(env.PGLITE_DATA_DIR)).toBe(false);

    const reportPath = join(tmp.path, 'reports', 'run.json');
    const real = await cli(['--default-owner', owner, '--report', reportPath, '--concurrency', '2'], env);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/uploaded\s+4/);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as MigrationReport;
    expect(report.counts).toMatchObject({ found: 4, uploaded: 4, failed: 0 });
    expect(report.generations.map((g) => g.generation_id).sort()).toEqual(gens.map((g) => g.generation_id).sort());
    expect(standIn.requests.some((r) => r.path.includes('/migration-cli-test/'))).toBe(true);

    // A broken generation makes the run exit 1; the good ones are already uploaded.
    mkdirSync(join(storage, gens[0]!.project_id, 'generations', `v9__${randomUUID()}`, 'source'), { recursive: true });
    const again = await cli(['--default-owner', owner, '--report', reportPath], env);
    expect(again.code).toBe(1);
    const second = JSON.parse(readFileSync(reportPath, 'utf8')) as MigrationReport;
    expect(second.counts).toMatchObject({ found: 5, already_uploaded: 4, invalid: 1, uploaded: 0 });
  });
});

describe('the CLI: what needs attention, where the dry run report goes, STORAGE_PATH', () => {
  const cli = (args: string[], env: Record<string, string>) =>
    execFileP(process.execPath, ['--import', 'tsx', 'scripts/migrate-to-supabase.ts', ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'error', ...env },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  it('an archived v0 generation: exit 1 in the dry run and the real one, the others migrated; the dry run names its report as the one file it wrote', { timeout: 120_000 }, async () => {
    const storage = storageDir();
    const gens = simpleTree(storage, 1, 2);
    const v0 = archivedAt(storage, gens[0]!.project_id, 0);
    const env = {
      STORAGE_PATH: storage,
      PGLITE_DATA_DIR: join(tmp.path, 'db'),
      CACHE_PATH: cacheDir(),
      SUPABASE_URL: standIn.url,
      SUPABASE_SERVICE_KEY: standIn.serviceKey,
      SUPABASE_BUCKET: 'migration-cli-attention',
    };
    const owner = randomUUID();
    const dryReport = join(tmp.path, 'dry.json');
    const before = snapshotTree(tmp.path);
    const dry = await cli(['--dry-run', '--default-owner', owner, '--report', dryReport], env);
    expect(dry.code, dry.stderr).toBe(1);
    expect(dry.stdout).not.toMatch(/nothing written/);
    expect(dry.stdout).toMatch(/needing attention 1/);
    expect(dry.stdout).toContain(`needs_attention ${gens[0]!.project_id}/archive/v0__${v0.generation_id}: version 0 is not a version`);
    expect(dry.stdout).toMatch(/The one file this dry run wrote is its report: \S*dry\.json\n?$/);
    // ...and it is: the only change anywhere under the test's folder (STORAGE_PATH, cache, database) is the report.
    const after = snapshotTree(tmp.path);
    expect([...after.keys()].filter((k) => !before.has(k))).toEqual(['dry.json']);
    expect([...before].filter(([k, v]) => after.get(k) !== v).map(([k]) => k)).toEqual([]);
    expect((JSON.parse(readFileSync(dryReport, 'utf8')) as MigrationReport).counts).toMatchObject({ found: 3, would_upload: 2, needs_attention: 1 });

    const reportPath = join(tmp.path, 'real.json');
    const real = await cli(['--default-owner', owner, '--report', reportPath], env);
    expect(real.code, real.stderr).toBe(1);
    expect(real.stdout).toMatch(/uploaded\s+2/);
    expect(real.stdout).toMatch(/Report: \S*real\.json/);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as MigrationReport;
    expect(report.counts).toMatchObject({ found: 3, uploaded: 2, needs_attention: 1, failed: 0 });
    expect(report.generations.find((g) => g.generation_id === v0.generation_id)).toMatchObject({ outcome: 'needs_attention', version: 0, layout: 'archive' });
  });

  it('a STORAGE_PATH that does not exist: says it must be CodebeGen\'s storage folder, and how to set it for one run', async () => {
    const missing = join(tmp.path, 'no-such-folder');
    const r = await cli(['--dry-run'], { STORAGE_PATH: missing, CACHE_PATH: cacheDir(), PGLITE_DATA_DIR: join(tmp.path, 'db') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`STORAGE_PATH ${missing} does not exist`);
    expect(r.stderr).toContain("CodebeGen's storage folder");
    expect(r.stderr).toContain('{project_id}/generations/');
    expect(r.stderr).toContain('STORAGE_PATH=/path/to/codebegen/storage npm run migrate -- --dry-run');
  });
});

describe('discovery', () => {
  it("takes a flat generation whose own files include archive/ or generations/ folders for a flat generation, not a project", async () => {
    const { discoverGenerations } = await import('../functions/_shared/migration/discover.ts');
    const root = join(tmp.path, `discover-${randomUUID()}`);
    const gid = randomUUID();
    mkdirSync(join(root, gid, 'archive'), { recursive: true });
    mkdirSync(join(root, gid, 'generations'), { recursive: true });
    writeFileSync(join(root, gid, 'main.py'), 'x = 1\n');
    writeFileSync(join(root, gid, 'archive', 'old.py'), 'y = 2\n');
    const found = await discoverGenerations(root);
    expect(found.generations.map((g) => [g.generationId, g.layout])).toEqual([[gid, 'flat']]);
  });
});
