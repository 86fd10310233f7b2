import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generationDirName, packGeneration, type GenerationRef } from '../functions/_shared/archive/generation-archive.ts';
import { buildManifest, encodeManifest, type Manifest } from '../functions/_shared/archive/manifest.ts';
import { unpackTree, type TreeFile } from '../functions/_shared/archive/tar-gz.ts';
import { LocalStore } from '../functions/_shared/stores/local-store.ts';
import { WorkerTreeWriter } from '../scripts/tree-writer-workers.ts';
import { writePythonFlat, writePythonGenerations } from './helpers/codebegen-python.ts';
import { memoryLogger } from './helpers/context.ts';
import { DENO, DENO_ENV, denoAvailable } from './helpers/deno-entry.ts';

// LocalStore against real folders: the layout CodebeGen's Python service writes (checked by running that very
// logic in python3), the old flat layout, atomic writes and the refusal of anything that is not a generation ref.

const SCRATCH = '.codebegen-tmp';
const LIMITS = { maxEntries: 10_000, maxFileBytes: 50 * 1024 * 1024, maxTotalBytes: 200 * 1024 * 1024 };
const enc = new TextEncoder();
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

let tmp: string;
let root: string;
let store: LocalStore;

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'codebegen-local-store-'));
  root = join(tmp, 'storage');
  mkdirSync(root);
  store = new LocalStore(root);
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const newRef = (version = 1): GenerationRef => ({ projectId: randomUUID(), generationId: randomUUID(), version });

/** Every regular file under `dir` (relative path -> bytes); symlinks are reported as such, not followed. */
function snapshot(dir: string): Map<string, Uint8Array | 'symlink' | 'dir'> {
  const out = new Map<string, Uint8Array | 'symlink' | 'dir'>();
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs).sort()) {
      const a = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(a);
      if (st.isSymbolicLink()) out.set(r, 'symlink');
      else if (st.isDirectory()) {
        out.set(r, 'dir');
        walk(a, r);
      } else out.set(r, new Uint8Array(readFileSync(a)));
    }
  };
  walk(dir, '');
  return out;
}

const asText = (files: readonly TreeFile[]) => Object.fromEntries(files.map((f) => [f.path, new TextDecoder().decode(f.data)]));
const scratchLeftovers = () => (existsSync(join(root, SCRATCH)) ? readdirSync(join(root, SCRATCH)) : []);

/** A generation as the service would store it: source files, their manifest and the packed archive. */
async function sampleGeneration(ref: GenerationRef, tag = '') {
  const files: TreeFile[] = [
    { path: 'app/main.py', data: enc.encode(`from fastapi import FastAPI\napp = FastAPI()${tag}\n`) },
    { path: 'app/routers/users.py', data: enc.encode(`# users ${tag}\n`) },
    { path: 'README.md', data: enc.encode(`# Généré ✓ ${tag}\n`) },
    { path: 'empty.txt', data: new Uint8Array(0) },
    { path: 'assets/logo.bin', data: new Uint8Array([0, 1, 2, 255, 254, 0, 10, 13]) },
  ];
  const manifest = buildManifest({
    generationId: ref.generationId,
    projectId: ref.projectId,
    version: ref.version,
    createdAt: new Date('2026-03-04T05:06:07.000Z'),
    files,
    metadata: { prompt: `a todo api ${tag}`, model: 'x', nested: { b: 2, a: 1 } },
  });
  const archive = await packGeneration(manifest, files);
  return { files, manifest, archive: archive.bytes };
}

// ---------------------------------------------------------------------------------------------------------------
const python = (script: string, args: unknown) => execFileSync('python3', ['-c', script, JSON.stringify(args)], { encoding: 'utf8' });

const PY_FILES: Record<string, string> = {
  'app/main.py': 'from fastapi import FastAPI\napp = FastAPI()\n',
  'app/routers/items.py': '# items — ünïcödé ✓\n',
  'requirements.txt': 'fastapi\nuvicorn\n',
  'README.md': '# Generated\n',
};

// ---------------------------------------------------------------------------------------------------------------

describe('write() then read()', () => {
  it("lays a generation out exactly as CodebeGen does, with the archive beside it", async () => {
    const ref = newRef(3);
    const { files, manifest, archive } = await sampleGeneration(ref);
    await store.write(ref, manifest, files, archive);

    const dirName = `v3__${ref.generationId}`;
    const gensDir = join(root, ref.projectId, 'generations');
    expect(readdirSync(root).sort()).toEqual([SCRATCH, ref.projectId].sort());
    expect(scratchLeftovers()).toEqual([]);
    expect(readdirSync(gensDir).sort()).toEqual([dirName, `${dirName}.tar.gz`]);
    expect(store.generationDir(ref)).toBe(join(gensDir, dirName));
    expect(store.archivePath(ref)).toBe(join(gensDir, `${dirName}.tar.gz`));

    const tree = snapshot(join(gensDir, dirName));
    expect([...tree.keys()].sort()).toEqual(
      [
        'artifacts',
        'manifest.json',
        'source',
        'source/README.md',
        'source/app',
        'source/app/main.py',
        'source/app/routers',
        'source/app/routers/users.py',
        'source/assets',
        'source/assets/logo.bin',
        'source/empty.txt',
      ].sort(),
    );
    expect(readdirSync(join(gensDir, dirName, 'artifacts'))).toEqual([]);
    for (const f of files) expect(tree.get(`source/${f.path}`)).toEqual(f.data);
    expect(readFileSync(store.archivePath(ref))).toEqual(Buffer.from(archive));

    // manifest.json: CodebeGen's fields, then ours, pretty-printed
    const raw = readFileSync(join(gensDir, dirName, 'manifest.json'));
    expect(new Uint8Array(raw)).toEqual(encodeManifest(manifest));
    const onDisk = JSON.parse(raw.toString('utf8')) as Manifest;
    expect(Object.keys(onDisk)).toEqual(['generation_id', 'project_id', 'version', 'created_at', 'file_count', 'total_size_bytes', 'files', 'metadata', 'file_details']);
    expect(onDisk.generation_id).toBe(ref.generationId);
    expect(onDisk.project_id).toBe(ref.projectId);
    expect(onDisk.version).toBe(3);
    expect(onDisk.created_at).toBe('2026-03-04T05:06:07.000Z');
    expect(onDisk.file_count).toBe(5);
    expect(onDisk.total_size_bytes).toBe(files.reduce((n, f) => n + f.data.byteLength, 0));
    expect(onDisk.files).toEqual(['README.md', 'app/main.py', 'app/routers/users.py', 'assets/logo.bin', 'empty.txt']);
    expect(onDisk.metadata).toEqual({ prompt: 'a todo api ', model: 'x', nested: { a: 1, b: 2 } });
    expect(onDisk.file_details).toEqual(
      [...files]
        .sort((a, b) => (a.path < b.path ? -1 : 1))
        .map((f) => ({ path: f.path, size_bytes: f.data.byteLength, sha256: sha256(f.data) })),
    );
    expect(onDisk.file_details!.find((d) => d.path === 'empty.txt')!.sha256).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    // Python reads it as a plain JSON document
    expect(python('import json,sys; m=json.load(open(json.loads(sys.argv[1]))); print(m["generation_id"], m["file_count"])', join(gensDir, dirName, 'manifest.json')).trim()).toBe(
      `${ref.generationId} 5`,
    );

    const got = await store.read(ref);
    expect(got).toBeDefined();
    expect(got!.layout).toBe('hierarchical');
    expect(got!.manifest).toEqual(manifest);
    expect(got!.files.map((f) => f.path)).toEqual(['README.md', 'app/main.py', 'app/routers/users.py', 'assets/logo.bin', 'empty.txt']);
    for (const f of files) expect(got!.files.find((g) => g.path === f.path)!.data).toEqual(f.data);
    expect(await store.locate(ref)).toEqual({ layout: 'hierarchical', dir: store.generationDir(ref) });
    expect(await store.readArchive(ref)).toEqual(archive);
  });

  it('stores an archive that unpacks to exactly the same manifest and files', async () => {
    const ref = newRef(7);
    const { files, manifest, archive } = await sampleGeneration(ref, 'unpack');
    await store.write(ref, manifest, files, archive);

    const stored = await store.readArchive(ref);
    expect(stored).toBeDefined();
    const unpacked = await unpackTree(stored!, LIMITS);
    const top = generationDirName(ref);
    expect(unpacked.dirs.sort()).toEqual([top, `${top}/artifacts`, `${top}/source`, `${top}/source/app`, `${top}/source/app/routers`, `${top}/source/assets`].sort());

    const onDisk = snapshot(store.generationDir(ref));
    const diskFiles = [...onDisk].filter(([, v]) => v instanceof Uint8Array).map(([k]) => `${top}/${k}`);
    expect(unpacked.files.map((f) => f.path).sort()).toEqual(diskFiles.sort());
    for (const f of unpacked.files) expect(f.data).toEqual(onDisk.get(f.path.slice(top.length + 1)));
    const m = unpacked.files.find((f) => f.path === `${top}/manifest.json`)!;
    expect(JSON.parse(new TextDecoder().decode(m.data))).toEqual(JSON.parse(JSON.stringify(manifest)));
  });

  it('read() and readArchive() give undefined for a generation that is not there', async () => {
    const ref = newRef();
    expect(await store.read(ref)).toBeUndefined();
    expect(await store.locate(ref)).toBeUndefined();
    expect(await store.readArchive(ref)).toBeUndefined();
  });

  it('keeps versions and generations apart', async () => {
    const a = newRef(1);
    const b: GenerationRef = { ...a, generationId: randomUUID(), version: 2 };
    const ga = await sampleGeneration(a, 'A');
    const gb = await sampleGeneration(b, 'B');
    await store.write(a, ga.manifest, ga.files, ga.archive);
    await store.write(b, gb.manifest, gb.files, gb.archive);
    expect(asText((await store.read(a))!.files)['app/main.py']).toContain('FastAPI()A');
    expect(asText((await store.read(b))!.files)['app/main.py']).toContain('FastAPI()B');
    // same id, other version: not the same generation
    expect(await store.read({ ...a, version: 2 })).toBeUndefined();
    await store.remove(a);
    expect(await store.read(a)).toBeUndefined();
    expect((await store.read(b))!.manifest).toEqual(gb.manifest);
  });
});

describe("a tree written by CodebeGen's Python (save_generation_files_hierarchical)", () => {
  it('reads as hierarchical with its manifest and sources, without following the active symlink', async () => {
    const ref = newRef(2);
    const printed = writePythonGenerations(root, [
      { project_id: ref.projectId, generation_id: ref.generationId, version: 2, files: PY_FILES, metadata: { prompt: 'todo api', tokens: 1234 } },
    ])[0]!;
    const gensDir = join(root, ref.projectId, 'generations');
    // what Python really produced
    expect(readdirSync(gensDir).sort()).toEqual(['active', generationDirName(ref)].sort());
    expect(lstatSync(join(gensDir, 'active')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(gensDir, 'active'))).toBe(generationDirName(ref));
    // a symlink inside source/ pointing outside the generation must not be read either
    writeFileSync(join(tmp, 'outside-secret.txt'), 'secret');
    symlinkSync(join(tmp, 'outside-secret.txt'), join(store.generationDir(ref), 'source', 'leak.txt'));
    symlinkSync(tmp, join(store.generationDir(ref), 'source', 'leakdir'));

    const got = await store.read(ref);
    expect(got).toBeDefined();
    expect(got!.layout).toBe('hierarchical');
    const m = got!.manifest!;
    expect(m).toBeDefined();
    expect(m.generation_id).toBe(ref.generationId);
    expect(m.project_id).toBe(ref.projectId);
    expect(m.version).toBe(2);
    expect(m.created_at).toBe(printed.created_at);
    expect(m.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$/); // Python's naive isoformat
    expect(m.file_count).toBe(4);
    expect(m.total_size_bytes).toBe(Object.values(PY_FILES).reduce((n, c) => n + enc.encode(c).byteLength, 0));
    expect(m.total_size_bytes).toBeGreaterThan(Object.values(PY_FILES).reduce((n, c) => n + c.length, 0)); // utf-8 bytes, not chars
    expect(m.files).toEqual(Object.keys(PY_FILES));
    expect(m.metadata).toEqual({ prompt: 'todo api', tokens: 1234 });
    expect(m.file_details).toBeUndefined();
    expect(asText(got!.files)).toEqual(PY_FILES);
    expect(got!.files.map((f) => f.path)).toEqual(Object.keys(PY_FILES).sort());

    // Python keeps no archive; the active link is not a generation
    expect(await store.readArchive(ref)).toBeUndefined();
  });

  it('a generation folder that is itself a symlink is not followed', async () => {
    const ref = newRef(1);
    writePythonGenerations(root, [{ project_id: ref.projectId, generation_id: ref.generationId, version: 1, files: PY_FILES }]);
    const alias: GenerationRef = { ...ref, version: 2 };
    symlinkSync(generationDirName(ref), store.generationDir(alias));
    expect(lstatSync(store.generationDir(alias)).isSymbolicLink()).toBe(true);
    expect(await store.read(alias)).toBeUndefined();
    expect(await store.locate(alias)).toBeUndefined();
    expect((await store.read(ref))!.layout).toBe('hierarchical');
  });

  it('a Python folder with no manifest.json or an unreadable one still yields its files, without a manifest', async () => {
    const ref = newRef(1);
    writePythonGenerations(root, [{ project_id: ref.projectId, generation_id: ref.generationId, version: 1, files: PY_FILES }]);
    writeFileSync(join(store.generationDir(ref), 'manifest.json'), '{"generation_id": 5');
    let got = await store.read(ref);
    expect(got!.layout).toBe('hierarchical');
    expect(got!.manifest).toBeUndefined();
    expect(asText(got!.files)).toEqual(PY_FILES);
    rmSync(join(store.generationDir(ref), 'manifest.json'));
    got = await store.read(ref);
    expect(got!.manifest).toBeUndefined();
    expect(asText(got!.files)).toEqual(PY_FILES);
  });

  it('remove() deletes the Python folder', async () => {
    const ref = newRef(1);
    writePythonGenerations(root, [{ project_id: ref.projectId, generation_id: ref.generationId, version: 1, files: PY_FILES }]);
    await store.remove(ref);
    expect(existsSync(store.generationDir(ref))).toBe(false);
    expect(await store.read(ref)).toBeUndefined();
    expect(scratchLeftovers()).toEqual([]);
  });
});

describe("the old flat layout (create_project_structure)", () => {
  it('reads {root}/{generation_id}/<files> as flat, and removeFlat() deletes the folder and its zip', async () => {
    const ref = newRef(1);
    writePythonFlat(root, [{ generation_id: ref.generationId, files: PY_FILES, zip: true }]);
    const flatDir = join(root, ref.generationId);
    const zip = join(root, `${ref.generationId}.zip`);
    expect(existsSync(flatDir)).toBe(true);
    expect(existsSync(zip)).toBe(true);
    // an unrelated flat generation beside it must survive the removal
    const other = newRef(1);
    writePythonFlat(root, [{ generation_id: other.generationId, files: { 'x.py': 'x = 1\n' }, zip: true }]);

    const got = await store.read(ref);
    expect(got).toBeDefined();
    expect(got!.layout).toBe('flat');
    expect(got!.manifest).toBeUndefined();
    expect(asText(got!.files)).toEqual(PY_FILES);
    expect(got!.files.map((f) => f.path)).toEqual(Object.keys(PY_FILES).sort());
    expect(await store.locate(ref)).toEqual({ layout: 'flat', dir: flatDir });
    expect(await store.readArchive(ref)).toBeUndefined();
    // asked for our layout only, a flat folder is not there
    expect(await store.read(ref, ['hierarchical'])).toBeUndefined();
    // remove() never touches a flat folder: its name could be someone's project id
    await store.remove(ref);
    expect(existsSync(flatDir)).toBe(true);

    await store.removeFlat(ref);
    expect(existsSync(flatDir)).toBe(false);
    expect(existsSync(zip)).toBe(false);
    expect(await store.read(ref)).toBeUndefined();
    expect(scratchLeftovers()).toEqual([]);
    expect(asText((await store.read(other))!.files)).toEqual({ 'x.py': 'x = 1\n' });
    expect(existsSync(join(root, `${other.generationId}.zip`))).toBe(true);
  });

  it('prefers the hierarchical folder when both layouts hold the generation', async () => {
    const ref = newRef(1);
    writePythonFlat(root, [{ generation_id: ref.generationId, files: { 'old.py': 'old\n' }, zip: true }]);
    const g = await sampleGeneration(ref);
    await store.write(ref, g.manifest, g.files, g.archive);
    const got = await store.read(ref);
    expect(got!.layout).toBe('hierarchical');
    expect(got!.manifest).toEqual(g.manifest);
    // remove() clears our layout only; the legacy folder stays until removeFlat()
    await store.remove(ref);
    expect((await store.read(ref))!.layout).toBe('flat');
    expect(existsSync(join(root, ref.generationId))).toBe(true);
    expect(existsSync(join(root, `${ref.generationId}.zip`))).toBe(true);
  });
});

describe('atomic writes', () => {
  it('a write that fails because {project}/generations is a file leaves nothing behind', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    mkdirSync(join(root, ref.projectId));
    writeFileSync(join(root, ref.projectId, 'generations'), 'not a folder');

    await expect(store.write(ref, g.manifest, g.files, g.archive)).rejects.toThrow();
    expect(readFileSync(join(root, ref.projectId, 'generations'), 'utf8')).toBe('not a folder');
    expect(readdirSync(join(root, ref.projectId))).toEqual(['generations']);
    expect(scratchLeftovers()).toEqual([]);
    expect(existsSync(store.generationDir(ref))).toBe(false);
    expect(existsSync(store.archivePath(ref))).toBe(false);
  });

  it('a write that fails because {project} is a file leaves nothing behind', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    writeFileSync(join(root, ref.projectId), 'not a folder');
    await expect(store.write(ref, g.manifest, g.files, g.archive)).rejects.toThrow();
    expect(readFileSync(join(root, ref.projectId), 'utf8')).toBe('not a folder');
    expect(readdirSync(root).sort()).toEqual([SCRATCH, ref.projectId].sort());
    expect(scratchLeftovers()).toEqual([]);
  });

  it('a write that fails midway through the files (a file that is also a folder) publishes nothing', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    const files: TreeFile[] = [...g.files, { path: 'app/main.py/inner.py', data: enc.encode('x') }];
    await expect(store.write(ref, g.manifest, files, g.archive)).rejects.toThrow();
    expect(existsSync(store.generationDir(ref))).toBe(false);
    expect(existsSync(store.archivePath(ref))).toBe(false);
    expect(existsSync(join(root, ref.projectId))).toBe(false);
    expect(scratchLeftovers()).toEqual([]);
  });

  it('a write with a path that escapes source/ is refused and publishes nothing', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    for (const bad of ['../escape.py', '/etc/evil', 'a/../../escape.py', 'C:/x.py', 'a\\b.py']) {
      await expect(store.write(ref, g.manifest, [g.files[0]!, { path: bad, data: enc.encode('x') }], g.archive)).rejects.toMatchObject({ code: 'invalid_path' });
    }
    expect(existsSync(join(root, ref.projectId))).toBe(false);
    expect(existsSync(join(root, 'escape.py'))).toBe(false);
    expect(readdirSync(root)).toEqual([SCRATCH]);
    expect(scratchLeftovers()).toEqual([]);
  });

  it('a stale folder at the final path (a crash leftover) is replaced, not merged', async () => {
    const ref = newRef(4);
    const g = await sampleGeneration(ref);
    const finalDir = store.generationDir(ref);
    mkdirSync(join(finalDir, 'source', 'app'), { recursive: true });
    mkdirSync(join(finalDir, 'artifacts'), { recursive: true });
    writeFileSync(join(finalDir, 'source', 'stale.py'), 'stale');
    writeFileSync(join(finalDir, 'source', 'app', 'main.py'), 'stale main');
    writeFileSync(join(finalDir, 'artifacts', 'old.log'), 'old');
    writeFileSync(join(finalDir, 'leftover.txt'), 'left');
    writeFileSync(join(finalDir, 'manifest.json'), '{}');
    writeFileSync(store.archivePath(ref), 'stale archive');

    await store.write(ref, g.manifest, g.files, g.archive);

    const tree = snapshot(finalDir);
    expect(tree.has('source/stale.py')).toBe(false);
    expect(tree.has('leftover.txt')).toBe(false);
    expect(readdirSync(join(finalDir, 'artifacts'))).toEqual([]);
    expect(new TextDecoder().decode(tree.get('source/app/main.py') as Uint8Array)).toContain('FastAPI()');
    const got = await store.read(ref);
    expect(got!.manifest).toEqual(g.manifest);
    expect(got!.files.map((f) => f.path)).toEqual(g.manifest.files);
    expect(await store.readArchive(ref)).toEqual(g.archive);
    expect(scratchLeftovers()).toEqual([]);
  });

  it('a leftover of the same generation id under another version (a save killed between its renames, retried since) is moved away', async () => {
    const ref = newRef(5);
    const crashed = { ...ref, version: 1 };
    const other = { ...newRef(1), projectId: ref.projectId };
    for (const r of [crashed, other]) mkdirSync(join(store.generationDir(r), 'source'), { recursive: true });
    writeFileSync(store.archivePath(crashed), 'half a save');
    const g = await sampleGeneration(ref);
    await store.write(ref, g.manifest, g.files, g.archive);
    // only this id's leftovers go; another generation's folder stays
    expect(readdirSync(dirname(store.generationDir(ref))).sort()).toEqual([`v1__${other.generationId}`, `v5__${ref.generationId}`, `v5__${ref.generationId}.tar.gz`].sort());
    expect(scratchLeftovers()).toEqual([]);
  });

  it('a stale regular file at the final path is replaced too', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    mkdirSync(join(root, ref.projectId, 'generations'), { recursive: true });
    writeFileSync(store.generationDir(ref), 'a file where the folder goes');
    await store.write(ref, g.manifest, g.files, g.archive);
    expect(lstatSync(store.generationDir(ref)).isDirectory()).toBe(true);
    expect((await store.read(ref))!.manifest).toEqual(g.manifest);
  });
});

describe('remove()', () => {
  it('removes the folder and the archive, and is idempotent', async () => {
    const ref = newRef(1);
    const keep: GenerationRef = { ...ref, generationId: randomUUID(), version: 2 };
    const g = await sampleGeneration(ref);
    const k = await sampleGeneration(keep);
    await store.write(ref, g.manifest, g.files, g.archive);
    await store.write(keep, k.manifest, k.files, k.archive);

    await store.remove(ref);
    expect(existsSync(store.generationDir(ref))).toBe(false);
    expect(existsSync(store.archivePath(ref))).toBe(false);
    expect(await store.read(ref)).toBeUndefined();
    expect(scratchLeftovers()).toEqual([]);
    await expect(store.remove(ref)).resolves.toBeUndefined();
    await expect(store.remove(newRef(9))).resolves.toBeUndefined();
    expect(scratchLeftovers()).toEqual([]);
    // the other generation of the project is untouched
    expect(readdirSync(join(root, ref.projectId, 'generations')).sort()).toEqual([generationDirName(keep), `${generationDirName(keep)}.tar.gz`]);
    expect((await store.read(keep))!.manifest).toEqual(k.manifest);
  });

  it('removes an archive whose folder is already gone', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    await store.write(ref, g.manifest, g.files, g.archive);
    rmSync(store.generationDir(ref), { recursive: true });
    await store.remove(ref);
    expect(existsSync(store.archivePath(ref))).toBe(false);
  });

  it('removes {project}/generations/ and {project}/ when it emptied them, never the root nor another project', async () => {
    const ref = newRef(1);
    const other = newRef(1);
    for (const r of [ref, other]) {
      const g = await sampleGeneration(r);
      await store.write(r, g.manifest, g.files, g.archive);
    }
    await store.remove(ref);
    expect(existsSync(join(root, ref.projectId))).toBe(false);
    expect(existsSync(root)).toBe(true);
    expect(readdirSync(root).filter((n) => n !== SCRATCH)).toEqual([other.projectId]);
    expect(await store.read(other)).toBeDefined();
    await expect(store.remove(ref)).resolves.toBeUndefined();
    await store.remove(other);
    expect(readdirSync(root).filter((n) => n !== SCRATCH)).toEqual([]);
  });

  it('keeps a folder that still holds anything: a stray file, Python\'s `active` link, a legacy flat folder', async () => {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    await store.write(ref, g.manifest, g.files, g.archive);
    const generations = join(root, ref.projectId, 'generations');
    symlinkSync(store.generationDir(ref), join(generations, 'active'));
    await store.remove(ref);
    expect(readdirSync(generations)).toEqual(['active']);

    const second = newRef(1);
    const s = await sampleGeneration(second);
    await store.write(second, s.manifest, s.files, s.archive);
    writeFileSync(join(root, second.projectId, 'notes.txt'), 'kept\n');
    await store.remove(second);
    expect(readdirSync(join(root, second.projectId))).toEqual(['notes.txt']);

    // remove() of a ref whose project id names a legacy flat folder (even an empty one) leaves it alone
    const flatId = randomUUID();
    mkdirSync(join(root, flatId));
    await store.remove({ projectId: flatId, generationId: randomUUID(), version: 1 });
    expect(existsSync(join(root, flatId))).toBe(true);
  });

  it('races safely with a save into the same project: the save is kept whole, the emptied folders go', async () => {
    // Small generations, many rounds: the save's mkdir-then-rename is where an early rmdir would break it.
    const tiny = (r: GenerationRef) => {
      const files = [{ path: 'a.txt', data: enc.encode(r.generationId) }];
      return { files, manifest: buildManifest({ ...r, createdAt: new Date(0), files, metadata: {} }), archive: enc.encode(r.generationId) };
    };
    const failures: unknown[] = [];
    for (let i = 0; i < 200; i++) {
      const ref = newRef(1);
      const next: GenerationRef = { ...ref, generationId: randomUUID(), version: 2 };
      const [g, n] = [tiny(ref), tiny(next)];
      await store.write(ref, g.manifest, g.files, g.archive);
      const [, saved] = await Promise.allSettled([store.remove(ref), store.write(next, n.manifest, n.files, n.archive)]);
      if (saved.status === 'rejected') failures.push(saved.reason);
      else expect((await store.read(next))!.manifest).toEqual(n.manifest);
      expect(await store.read(ref)).toBeUndefined();
    }
    expect(failures).toEqual([]);
    // two removals at once of a project's last two generations leave no folder behind either
    const a = newRef(1);
    const b: GenerationRef = { ...a, generationId: randomUUID(), version: 2 };
    for (const r of [a, b]) await store.write(r, tiny(r).manifest, tiny(r).files, tiny(r).archive);
    await Promise.all([store.remove(a), store.remove(b)]);
    expect(existsSync(join(root, a.projectId))).toBe(false);
  });
});

describe('references', () => {
  it('relativePath() is relative to the root and never contains it', () => {
    const ref = newRef(12);
    const rel = store.relativePath(ref);
    expect(rel).toBe(`${ref.projectId}/generations/v12__${ref.generationId}`);
    expect(rel.startsWith('/')).toBe(false);
    expect(rel).not.toContain(root);
    expect(rel).not.toContain(tmp);
    expect(join(root, rel)).toBe(store.generationDir(ref));
  });

  const good = newRef(1);
  const bad: [string, GenerationRef][] = [
    ['projectId ../x', { ...good, projectId: '../x' }],
    ['projectId ..', { ...good, projectId: '..' }],
    ['projectId absolute', { ...good, projectId: '/etc' }],
    ['projectId with a slash', { ...good, projectId: `${good.projectId}/..` }],
    ['generationId ../../x', { ...good, generationId: '../../x' }],
    ['generationId with a uuid and a suffix', { ...good, generationId: `${good.generationId}/../../x` }],
    ['generationId upper-case', { ...good, generationId: good.generationId.toUpperCase() }],
    ['generationId empty', { ...good, generationId: '' }],
    ['projectId not a uuid', { ...good, projectId: 'my-project' }],
    ['version 0', { ...good, version: 0 }],
    ['version -1', { ...good, version: -1 }],
    ['version 1.5', { ...good, version: 1.5 }],
    ['version NaN', { ...good, version: Number.NaN }],
    ['version as a string', { ...good, version: '1' as unknown as number }],
  ];

  it.each(bad)('rejects %s before touching disk (paths, read, locate, readArchive)', async (_label, ref) => {
    const missingRoot = join(tmp, 'no-such-root');
    const s = new LocalStore(missingRoot);
    expect(() => s.relativePath(ref)).toThrow(/not a generation reference/);
    expect(() => s.generationDir(ref)).toThrow(/not a generation reference/);
    expect(() => s.archivePath(ref)).toThrow(/not a generation reference/);
    await expect(s.read(ref)).rejects.toThrow(/not a generation reference/);
    await expect(s.locate(ref)).rejects.toThrow(/not a generation reference/);
    await expect(s.readArchive(ref)).rejects.toThrow(/not a generation reference/);
    expect(existsSync(missingRoot)).toBe(false);
  });

  it.each(bad)('rejects %s in write() and remove(), writing nothing outside the scratch folder', async (_label, ref) => {
    const g = await sampleGeneration(good);
    // something a traversal would hit
    writeFileSync(join(tmp, 'victim.txt'), 'keep me');
    mkdirSync(join(tmp, 'x'));
    const before = snapshot(tmp);
    await expect(store.write(ref, g.manifest, g.files, g.archive)).rejects.toThrow(/not a generation reference/);
    await expect(store.remove(ref)).rejects.toThrow(/not a generation reference/);
    const after = snapshot(tmp);
    // only the (empty) scratch folder may have appeared
    after.delete(`storage/${SCRATCH}`);
    expect(after).toEqual(before);
    expect(scratchLeftovers()).toEqual([]);
  });

  it('accepts a well-formed ref', async () => {
    await expect(store.read(good)).resolves.toBeUndefined();
  });
});

describe('writable()', () => {
  it('is true for a writable root and false when the root is a file', async () => {
    expect(await store.writable()).toBe(true);
    expect(scratchLeftovers()).toEqual([]);
    const fileRoot = join(tmp, 'file-root');
    writeFileSync(fileRoot, 'x');
    expect(await new LocalStore(fileRoot).writable()).toBe(false);
  });
});

describe('fixes found in review', () => {
  it('rejects a bad ref before touching the disk at all', async () => {
    const fresh = new LocalStore(join(tmp, 'never-created'));
    const bad = { projectId: '../x', generationId: randomUUID(), version: 1 };
    const g = await sampleGeneration(newRef(1));
    await expect(fresh.write(bad, g.manifest, g.files, g.archive)).rejects.toThrow(/not a generation reference/);
    await expect(fresh.remove(bad)).rejects.toThrow(/not a generation reference/);
    expect(existsSync(join(tmp, 'never-created'))).toBe(false);
  });

  it('runs concurrent writes of one generation one after the other: all succeed, folder and archive agree', async () => {
    for (let round = 0; round < 10; round++) {
      const ref = newRef(1);
      const [a, b] = [await sampleGeneration(ref, 'a'), await sampleGeneration(ref, 'b')];
      const results = await Promise.allSettled([a, b, a, b].map((g) => store.write(ref, g.manifest, g.files, g.archive)));
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      const archive = await store.readArchive(ref);
      const onDisk = await store.read(ref);
      expect(onDisk, `round ${round}`).toBeDefined();
      // whichever write won, folder and archive belong to the same write
      const winner = [a, b].find((g) => sha256(g.archive) === sha256(archive!));
      expect(winner, `round ${round}: the archive is from neither write`).toBeDefined();
      expect(asText(onDisk!.files)).toEqual(asText(winner!.files));
    }
  });

  it('treats a file where a folder should be as "not there"', async () => {
    const ref = newRef(1);
    mkdirSync(join(root, ref.projectId));
    writeFileSync(join(root, ref.projectId, 'generations'), 'not a folder');
    expect(await store.locate(ref)).toBeUndefined();
    expect(await store.read(ref)).toBeUndefined();
    expect(await store.readArchive(ref)).toBeUndefined();
    await expect(store.remove(ref)).resolves.toBeUndefined();
  });

  it('sweeps only scratch folders older than the cut-off', async () => {
    const base = join(root, SCRATCH);
    mkdirSync(join(base, 'old'), { recursive: true });
    mkdirSync(join(base, 'young'), { recursive: true });
    const hourAgo = (Date.now() - 2 * 3600_000) / 1000;
    utimesSync(join(base, 'old'), hourAgo, hourAgo);
    expect(await store.sweepScratch(3600_000)).toBe(1);
    expect(readdirSync(base)).toEqual(['young']);
    expect(await new LocalStore(join(tmp, 'nothing-here')).sweepScratch()).toBe(0);
  });
});

describe('legacy flat folders and project folders never mix', () => {
  it('refuses to write a project whose id names a legacy flat generation folder (409), and changes nothing', async () => {
    const legacy = newRef(1);
    writePythonFlat(root, [{ generation_id: legacy.generationId, files: { 'main.py': 'legacy\n' }, zip: true }]);
    const ref = { projectId: legacy.generationId, generationId: randomUUID(), version: 1 };
    const g = await sampleGeneration(ref);
    await expect(store.write(ref, g.manifest, g.files, g.archive)).rejects.toMatchObject({ status: 409, code: 'generation_conflict' });
    expect(readdirSync(join(root, legacy.generationId))).toEqual(['main.py']);
  });
});

describe('cache expiry never reaches into STORAGE_PATH', () => {
  /** An old generation in `store`'s root, as a cache entry would be. */
  async function oldGeneration(at: LocalStore) {
    const ref = newRef(1);
    const g = await sampleGeneration(ref);
    await at.write(ref, g.manifest, g.files, g.archive);
    const dayAgo = (Date.now() - 24 * 3600_000) / 1000;
    utimesSync(at.generationDir(ref), dayAgo, dayAgo);
    return ref;
  }

  it('removes nothing when the cache root is a symlink to STORAGE_PATH (logs an error, removed 0); a cache apart is expired', async () => {
    const ref = await oldGeneration(store);
    symlinkSync(root, join(tmp, 'cache'));
    const log = memoryLogger();
    const cache = new LocalStore(join(tmp, 'cache'));
    expect(await cache.removeOlderThan(new Date(), { apartFrom: root, log })).toEqual({ removed: 0, kept: 0 });
    expect(existsSync(store.generationDir(ref))).toBe(true);
    expect(existsSync(store.archivePath(ref))).toBe(true);
    expect(log.lines).toEqual([expect.objectContaining({ level: 'error', overlap: 'same' })]);

    // a real cache folder beside it is expired as before
    rmSync(join(tmp, 'cache'));
    const cached = await oldGeneration(cache);
    expect(await cache.removeOlderThan(new Date(), { apartFrom: root, log })).toEqual({ removed: 1, kept: 0 });
    expect(existsSync(cache.generationDir(cached))).toBe(false);
    expect(existsSync(store.generationDir(ref))).toBe(true);
    expect(log.lines).toHaveLength(1);
  });

  it('does not follow a symlinked {project}/generations inside the cache', async () => {
    const ref = await oldGeneration(store);
    const cache = new LocalStore(join(tmp, 'cache'));
    mkdirSync(join(tmp, 'cache', ref.projectId), { recursive: true });
    symlinkSync(join(root, ref.projectId, 'generations'), join(tmp, 'cache', ref.projectId, 'generations'));
    expect(await cache.removeOlderThan(new Date(), { apartFrom: root, log: memoryLogger() })).toEqual({ removed: 0, kept: 0 });
    expect(existsSync(store.generationDir(ref))).toBe(true);
  });
});

describe('WorkerTreeWriter (the Node server\'s writes, in worker threads)', () => {
  it('lays out the same generation as the in-thread writer, byte for byte', async () => {
    const writer = new WorkerTreeWriter(3);
    try {
      const ref = newRef(2);
      const g = await sampleGeneration(ref);
      const other = new LocalStore(join(tmp, 'other'), writer);
      await store.write(ref, g.manifest, g.files, g.archive);
      await other.write(ref, g.manifest, g.files, g.archive);
      const a = snapshot(join(root, ref.projectId));
      expect(a.size).toBeGreaterThan(g.files.length);
      expect(snapshot(join(tmp, 'other', ref.projectId))).toEqual(a);
    } finally {
      await writer.close();
    }
  });

  it('fails a write with the error of its call (code, syscall, path), and writes again after a thread died', async () => {
    const writer = new WorkerTreeWriter(2);
    try {
      const dir = join(tmp, 'w');
      const err = await writer.write({ folders: [dir], files: [{ path: join(dir, 'missing', 'a.txt'), data: enc.encode('a') }] }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ENOENT', syscall: 'open', path: join(dir, 'missing', 'a.txt') });
      // the folder it made is there: nothing undoes a failed write but its caller (LocalStore discards its scratch)
      expect(existsSync(dir)).toBe(true);
      await expect(writer.write({ folders: [dir], files: [] })).rejects.toMatchObject({ code: 'EEXIST', syscall: 'mkdir' });
      // a thread that dies is replaced: later writes still land
      await (writer as unknown as { workers: { worker: { terminate(): Promise<number> } }[] }).workers[0]!.worker.terminate();
      for (let i = 0; i < 4; i++) {
        const d = join(tmp, `after-${i}`);
        await writer.write({ folders: [d, join(d, 'x')], files: [{ path: join(d, 'x', 'f.txt'), data: enc.encode(`v${i}`) }] });
        expect(readFileSync(join(d, 'x', 'f.txt'), 'utf8')).toBe(`v${i}`);
      }
    } finally {
      await writer.close();
    }
  });
});

/** Whether strace can trace a child here (Linux, ptrace allowed): else the fsync cases are skipped. */
const canStrace = (() => {
  if (process.platform !== 'linux') return false;
  try {
    execFileSync('strace', ['-f', '-o', '/dev/null', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!canStrace) console.warn('\n!!! fsync cases in test/local-store.test.ts SKIPPED: need strace !!!\n');

describe.skipIf(!canStrace)('durable writes: what is fsynced, seen by strace', () => {
  // The child writes one generation with LocalStore; strace -y names the file behind every fsync and rename.
  const WRITER = `
import { readFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import process from 'node:process';
import { LocalStore } from ${JSON.stringify(pathToFileURL(resolve('functions/_shared/stores/local-store.ts')).href)};
const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, 'base64'));
const files = job.files.map((f) => ({ path: f.path, data: bytes(f.data) }));
const writer = job.workers ? new (await import(${JSON.stringify(pathToFileURL(resolve('scripts/tree-writer-workers.ts')).href)})).WorkerTreeWriter() : undefined;
await new LocalStore(job.root, writer).write(job.ref, job.manifest, files, bytes(job.archive));
await writer?.close();
`;
  // The Node server writes through worker threads (scripts/tree-writer-workers.ts); the edge, in its event loop.
  const runtimes = {
    node: { command: [process.execPath, '--import', 'tsx'], workers: false },
    'node, worker threads': { command: [process.execPath, '--import', 'tsx'], workers: true },
    deno: { command: [DENO, 'run', '-A', '--node-modules-dir=none', '--config', 'deno.json'], workers: false },
  };

  for (const [runtime, { command, workers }] of Object.entries(runtimes)) {
    it.skipIf(runtime === 'deno' && !denoAvailable())(`under ${runtime}: the archive, every file and folder once before the rename, the parents after it`, async () => {
      const ref = newRef(1);
      const g = await sampleGeneration(ref);
      const script = join(tmp, 'writer.mts'); // ESM wherever it lies (top-level await)
      const job = join(tmp, 'job.json');
      const trace = join(tmp, 'trace.txt');
      writeFileSync(script, WRITER);
      const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
      writeFileSync(job, JSON.stringify({ root, ref, workers, manifest: g.manifest, archive: b64(g.archive), files: g.files.map((f) => ({ path: f.path, data: b64(f.data) })) }));
      execFileSync('strace', ['-f', '-qq', '-y', '-s', '4096', '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2', '-o', trace, ...command, script, job], {
        env: DENO_ENV,
        stdio: 'ignore',
      });

      const real = realpathSync(root);
      const lines = readFileSync(trace, 'utf8').split('\n');
      const synced = lines.flatMap((l, i) => {
        const m = /f(?:data)?sync\(\d+<([^>]*)>/.exec(l);
        return m && m[1]!.startsWith(real) ? [{ i, path: m[1]! }] : [];
      });
      const renamedTo = (target: string) => lines.findIndex((l) => /rename/.test(l) && l.includes(`"${target}"`));

      const inScratch = synced.filter((s) => s.path.startsWith(`${real}/${SCRATCH}/`));
      const written = ['archive.tar.gz', 'generation', 'generation/artifacts', 'generation/manifest.json', 'generation/source'];
      for (const f of g.files) {
        for (let d = f.path; d.includes('/'); ) written.push(`generation/source/${(d = d.slice(0, d.lastIndexOf('/')))}`);
        written.push(`generation/source/${f.path}`);
      }
      expect(inScratch.map((s) => s.path.replace(/^.*\/\.codebegen-tmp\/[^/]+\//, '')).sort()).toEqual([...new Set(written)].sort());

      const finalDir = join(real, store.relativePath(ref));
      const dirRenamed = renamedTo(finalDir);
      const archiveRenamed = renamedTo(`${finalDir}.tar.gz`);
      expect(dirRenamed).toBeGreaterThan(Math.max(...inScratch.map((s) => s.i)));
      expect(archiveRenamed).toBeGreaterThan(dirRenamed);
      // mkdir made {project}/ and {project}/generations/: their parents hold new entries too
      const after = synced.filter((s) => s.i > archiveRenamed).map((s) => s.path);
      expect(after.sort()).toEqual([real, join(real, ref.projectId), join(real, ref.projectId, 'generations')].sort());

      expect(asText((await store.read(ref))!.files)).toEqual(asText(g.files));
      expect(readFileSync(store.archivePath(ref))).toEqual(Buffer.from(g.archive));
    }, 60_000);
  }
});
