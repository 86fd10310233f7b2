import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writePythonFlat, writePythonGenerations, type PyGeneration } from './codebegen-python.ts';

// Sample STORAGE_PATH trees for the migration tests, written as CodebeGen's Python service writes them
// (./codebegen-python.ts), plus broken generations of every kind.

/** Moves a hierarchical generation into `{project}/archive/`, as the old cleanup did. */
export function archiveGeneration(storage: string, g: Pick<PyGeneration, 'project_id' | 'generation_id' | 'version'>): void {
  const name = `v${g.version}__${g.generation_id}`;
  mkdirSync(join(storage, g.project_id, 'archive'), { recursive: true });
  renameSync(join(storage, g.project_id, 'generations', name), join(storage, g.project_id, 'archive', name));
}

export const genFiles = (tag: string, n = 4): Record<string, string> => {
  const files: Record<string, string> = {
    'app/main.py': `from fastapi import FastAPI\napp = FastAPI()  # ${tag}\n`,
    'app/routers/items.py': `# items — ünïcödé ✓ ${tag}\n`,
    'requirements.txt': 'fastapi\nuvicorn\n',
  };
  for (let i = 3; i < n; i++) files[`app/extra/f${i}.py`] = `# ${i} ${tag}\n`.repeat(i * 7);
  return files;
};

/** Every entry under `dir`: files with their bytes and mtime, symlinks with their target, folders with their mtime. */
export function snapshotTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs).sort()) {
      const a = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(a);
      if (st.isSymbolicLink()) out.set(r, `link:${readlinkSync(a)}`);
      else if (st.isDirectory()) {
        out.set(r, `dir:${st.mtimeMs}:${st.mode}`);
        walk(a, r);
      } else if (st.isFile()) out.set(r, `file:${st.mtimeMs}:${st.mode}:${readFileSync(a).toString('base64')}`);
      else out.set(r, `special:${st.mode}`);
    }
  };
  walk(dir, '');
  return out;
}

export interface SampleTree {
  /** Generations that must end up uploaded (given an owner for their project). */
  good: PyGeneration[];
  /** Flat generations, placed only by a mapping. */
  flat: PyGeneration[];
  /** Folders that are generations but cannot be migrated, by generation id, with a word of the expected reason. */
  invalid: Map<string, string>;
  /** Paths (relative) that must be reported as not generations. */
  ignored: string[];
  projects: string[];
  /** Content that lives outside STORAGE_PATH and must never reach the bucket. */
  secret: string;
}

/**
 * A STORAGE_PATH with every layout and every kind of broken generation:
 * two projects in CodebeGen's layout (one with an archived version), flat folders (one with a .zip beside),
 * a corrupt manifest, a missing manifest, an empty file, a generation with no files, odd names, a dangling
 * symlink, a FIFO, a symlink pointing outside, a project symlinked from outside, our scratch folder and a stray file.
 */
export function buildSampleTree(storage: string, outside: string): SampleTree {
  mkdirSync(storage, { recursive: true });
  mkdirSync(outside, { recursive: true });
  const secret = `TOP SECRET ${randomUUID()}`;
  writeFileSync(join(outside, 'secret.txt'), secret);
  const [p1, p2] = [randomUUID(), randomUUID()];
  const g = (project_id: string, version: number, tag: string, n?: number): PyGeneration => ({
    project_id,
    generation_id: randomUUID(),
    version,
    files: genFiles(tag, n),
    metadata: { prompt: `build ${tag}`, model: 'test' },
  });
  const good = [g(p1, 1, 'a1'), g(p1, 2, 'a2', 6), g(p1, 3, 'a3'), g(p2, 1, 'b1', 3), g(p2, 2, 'b2')];
  const corrupt = g(p2, 3, 'corrupt-manifest');
  const missing = g(p2, 4, 'missing-manifest');
  const empty = g(p2, 5, 'empty-file');
  const noFiles = g(p2, 6, 'no-files', 3);
  const odd = g(p2, 7, 'odd-name');
  const dangling = g(p1, 4, 'dangling');
  const fifo = g(p1, 5, 'fifo');
  const escape = g(p1, 6, 'escape');
  writePythonGenerations(storage, [...good, corrupt, missing, empty, noFiles, odd, dangling, fifo, escape]);
  archiveGeneration(storage, good[0]!); // v1 of p1 lives in archive/
  const dirOf = (x: PyGeneration, sub = 'generations') => join(storage, x.project_id, sub, `v${x.version}__${x.generation_id}`);
  writeFileSync(join(dirOf(corrupt), 'manifest.json'), '{"generation_id": "truncated');
  execFileSync('rm', [join(dirOf(missing), 'manifest.json')]);
  writeFileSync(join(dirOf(empty), 'source', 'app', '__init__.py'), '');
  execFileSync('rm', ['-r', join(dirOf(noFiles), 'source', 'app'), join(dirOf(noFiles), 'source', 'requirements.txt')]);
  writeFileSync(join(dirOf(odd), 'source', 'bad:name?.py'), 'x = 1\n');
  symlinkSync(join(storage, 'nowhere', 'gone.py'), join(dirOf(dangling), 'source', 'gone.py'));
  execFileSync('mkfifo', [join(dirOf(fifo), 'source', 'pipe.py')]);
  symlinkSync(join(outside, 'secret.txt'), join(dirOf(escape), 'source', 'secret.txt'));

  const flat = [
    { project_id: p1, generation_id: randomUUID(), version: 10, files: genFiles('flat1') },
    { project_id: randomUUID(), generation_id: randomUUID(), version: 1, files: genFiles('flat2', 5) },
  ];
  writePythonFlat(storage, [
    { generation_id: flat[0]!.generation_id, files: flat[0]!.files, zip: true },
    { generation_id: flat[1]!.generation_id, files: flat[1]!.files },
  ]);

  // A project folder outside, linked in: never followed.
  const linked = randomUUID();
  writePythonGenerations(outside, [{ project_id: linked, generation_id: randomUUID(), version: 1, files: { 'secret.txt': secret } }]);
  symlinkSync(join(outside, linked), join(storage, linked));
  // Our scratch folder, a stray file, a folder that is not a project.
  mkdirSync(join(storage, '.codebegen-tmp', randomUUID(), 'generation', 'source'), { recursive: true });
  writeFileSync(join(storage, '.codebegen-tmp', 'x.txt'), 'scratch');
  writeFileSync(join(storage, 'notes.txt'), 'operator notes');
  mkdirSync(join(storage, 'not-a-project'));
  mkdirSync(dirname(join(storage, p2, 'generations', 'v1__not-a-uuid', 'x')), { recursive: true });

  const invalid = new Map<string, string>([
    [noFiles.generation_id, 'no source files'],
    [odd.generation_id, 'file names'],
    [dangling.generation_id, 'symbolic link'],
    [fifo.generation_id, 'not a regular file'],
    [escape.generation_id, 'symbolic link'],
  ]);
  return {
    good: [...good, corrupt, missing, { ...empty, files: { ...empty.files, 'app/__init__.py': '' } }],
    flat,
    invalid,
    ignored: [linked, 'notes.txt', 'not-a-project', `${p2}/generations/v1__not-a-uuid`],
    projects: [p1, p2],
    secret,
  };
}

export interface OddTree {
  /** Generations that must end up uploaded: one project, with gaps between its versions (which are fine). */
  good: PyGeneration[];
  /** Folders that look like generations but cannot be taken as they are, by path, with a word of the expected reason. */
  attention: Map<string, string>;
  /** A second copy of a good generation at the same version: reported as not a generation (a duplicate). */
  duplicate: string;
  project: string;
}

/**
 * A STORAGE_PATH where, beside good generations with version gaps, every folder looks like a generation but is
 * odd: version 0, leading zeros, a version the database cannot hold, an upper-case id, a symlink named like a
 * generation, a manifest.json in an oddly named folder, a project folder that is not a project id, one id at two
 * versions. Written by CodebeGen's Python, then renamed or copied as a person (or an old script) might have.
 */
export function buildOddTree(storage: string, outside: string): OddTree {
  mkdirSync(storage, { recursive: true });
  mkdirSync(outside, { recursive: true });
  const project = randomUUID();
  const g = (version: number, tag: string, project_id: string = project): PyGeneration => ({ project_id, generation_id: randomUUID(), version, files: genFiles(tag), metadata: { tag } });
  const good = [g(1, 'g1'), g(5, 'g5'), g(9, 'g9')];
  const [v0, lead, upper, huge, named] = [g(0, 'v0'), g(7, 'lead'), g(8, 'upper'), g(3_000_000_000, 'huge'), g(11, 'named')];
  const oddProject = g(1, 'odd-project', 'old-copy');
  writePythonGenerations(storage, [...good, v0, lead, upper, huge, named, oddProject]);
  const gens = join(storage, project, 'generations');
  const dirName = (x: PyGeneration) => `v${x.version}__${x.generation_id}`;
  renameSync(join(gens, dirName(lead)), join(gens, `v007__${lead.generation_id}`));
  renameSync(join(gens, dirName(upper)), join(gens, `v8__${upper.generation_id.toUpperCase()}`));
  renameSync(join(gens, dirName(named)), join(gens, 'v11-backup'));
  const elsewhere = g(12, 'elsewhere');
  writePythonGenerations(outside, [elsewhere]);
  symlinkSync(join(outside, project, 'generations', dirName(elsewhere)), join(gens, dirName(elsewhere)));
  mkdirSync(join(storage, project, 'archive'));
  // One id at another version, and a plain second copy at the same one.
  execFileSync('cp', ['-a', join(gens, dirName(good[1]!)), join(storage, project, 'archive', `v6__${good[1]!.generation_id}`)]);
  execFileSync('cp', ['-a', join(gens, dirName(good[0]!)), join(storage, project, 'archive', dirName(good[0]!))]);
  const at = (name: string) => `${project}/generations/${name}`;
  return {
    good,
    attention: new Map([
      [at(dirName(v0)), 'version 0 is not a version'],
      [at(`v007__${lead.generation_id}`), 'leading zeros'],
      [at(`v8__${upper.generation_id.toUpperCase()}`), 'not lower-case'],
      [at(dirName(huge)), 'above the largest'],
      [at('v11-backup'), 'manifest.json'],
      [at(dirName(elsewhere)), 'symbolic link named like a generation'],
      [`old-copy/generations/${dirName(oddProject)}`, 'not a project id'],
      [`${project}/archive/v6__${good[1]!.generation_id}`, `also at ${at(dirName(good[1]!))}`],
    ]),
    duplicate: `${project}/archive/${dirName(good[0]!)}`,
    project,
  };
}
