import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const GENERATION_DIR = /^v(\d+)__([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
/** The service's own scratch folder inside STORAGE_PATH: never a generation. */
const SCRATCH = '.codebegen-tmp';

/** Where CodebeGen left a generation: its own layout, the old cleanup's `archive/`, or the old flat folders. */
export type FoundLayout = 'hierarchical' | 'archive' | 'flat';

/** One generation folder found on disk. Paths are relative to STORAGE_PATH, '/'-separated. */
export interface FoundGeneration {
  generationId: string;
  layout: FoundLayout;
  /** The folder, relative to STORAGE_PATH. */
  path: string;
  /** From the folder names (hierarchical, archive); flat folders get theirs from the mapping. */
  projectId?: string;
  version?: number;
  /** A `{generation_id}.zip` lies beside a flat folder (not read: the folder is the source of truth). */
  zipBeside?: boolean;
}

/** Something under STORAGE_PATH that is not a generation, with why: the report accounts for every entry. */
export interface IgnoredEntry {
  path: string;
  reason: string;
}

export interface Discovery {
  generations: FoundGeneration[];
  ignored: IgnoredEntry[];
}

type Entry = { name: string; kind: 'dir' | 'file' | 'symlink' | 'other' };

/** The entries of a real folder, never following a symlink (lstat, not stat). */
async function list(abs: string): Promise<Entry[]> {
  const names = (await readdir(abs)).sort();
  const out: Entry[] = [];
  for (const name of names) {
    const st = await lstat(join(abs, name));
    out.push({ name, kind: st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other' });
  }
  return out;
}

/**
 * Finds every generation under `root` in each of CodebeGen's layouts:
 *   {project_id}/generations/v{n}__{generation_id}/   {project_id}/archive/v{n}__{generation_id}/   {generation_id}/
 * Follows no symlink (the `active` links are skipped silently, any other is reported), never reads outside
 * `root`, and reads folder names only (the contents are read later, one generation at a time).
 * A generation both in `generations/` and in `archive/` is taken from `generations/`; the other is reported.
 */
export async function discoverGenerations(root: string): Promise<Discovery> {
  const generations: FoundGeneration[] = [];
  const ignored: IgnoredEntry[] = [];
  const seen = new Map<string, FoundGeneration>();
  const add = (g: FoundGeneration) => {
    const first = seen.get(g.generationId);
    if (first) {
      ignored.push({ path: g.path, reason: `duplicate of generation ${g.generationId} at ${first.path}` });
      return;
    }
    seen.set(g.generationId, g);
    generations.push(g);
  };
  const top = await list(root);
  const topNames = new Set(top.map((e) => e.name));
  const projects: string[] = [];
  const flats: Entry[] = [];
  for (const e of top) {
    if (e.name === SCRATCH) continue;
    if (e.kind === 'symlink') ignored.push({ path: e.name, reason: 'symbolic link: not followed' });
    else if (e.kind === 'file' && /\.zip$/.test(e.name) && UUID.test(e.name.slice(0, -4)) && topNames.has(e.name.slice(0, -4))) continue;
    else if (e.kind !== 'dir') ignored.push({ path: e.name, reason: e.kind === 'file' ? 'not a folder' : 'not a regular file or folder' });
    else if (!UUID.test(e.name)) ignored.push({ path: e.name, reason: 'folder name is not a project or generation id' });
    else {
      // A project folder holds generations/ or archive/ with v{n}__{uuid} folders; a flat generation's own
      // source may well contain a folder named archive/ or generations/.
      const inside = await list(join(root, e.name));
      let isProject = false;
      for (const i of inside) {
        if (i.kind !== 'dir' || (i.name !== 'generations' && i.name !== 'archive')) continue;
        const sub = await list(join(root, e.name, i.name));
        if (sub.some((x) => x.kind === 'dir' && /^v\d+__[0-9a-f-]{36}$/.test(x.name))) isProject = true;
      }
      if (isProject) projects.push(e.name);
      else flats.push(e);
    }
  }
  // generations/ before archive/ across every project, so duplicates resolve the same way every run.
  for (const sub of ['generations', 'archive'] as const) {
    for (const projectId of projects) {
      const dir = join(root, projectId, sub);
      const rel = `${projectId}/${sub}`;
      const st = await lstat(dir).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      const entries = await list(dir);
      const names = new Set(entries.map((e) => e.name));
      for (const e of entries) {
        const path = `${rel}/${e.name}`;
        if (e.kind === 'symlink') {
          if (e.name !== 'active') ignored.push({ path, reason: 'symbolic link: not followed' });
          continue;
        }
        // The archive this service keeps beside each folder it wrote: the folder is what we migrate.
        if (e.kind === 'file' && e.name.endsWith('.tar.gz') && names.has(e.name.slice(0, -'.tar.gz'.length))) continue;
        const m = GENERATION_DIR.exec(e.name);
        if (e.kind !== 'dir' || !m) {
          ignored.push({ path, reason: e.kind === 'dir' ? 'folder name is not v{version}__{generation_id}' : 'not a generation folder' });
          continue;
        }
        const version = Number(m[1]);
        if (!Number.isSafeInteger(version) || version < 1) {
          ignored.push({ path, reason: `version ${m[1]} is not a positive integer` });
          continue;
        }
        add({ generationId: m[2]!, layout: sub === 'generations' ? 'hierarchical' : 'archive', path, projectId, version });
      }
    }
  }
  for (const e of flats) add({ generationId: e.name, layout: 'flat', path: e.name, zipBeside: topNames.has(`${e.name}.zip`) });
  // Other entries in a project folder (besides generations/ and archive/) are not generations either.
  for (const projectId of projects) {
    for (const e of await list(join(root, projectId))) {
      if ((e.name === 'generations' || e.name === 'archive') && e.kind === 'dir') continue;
      ignored.push({ path: `${projectId}/${e.name}`, reason: e.kind === 'symlink' ? 'symbolic link: not followed' : 'not a generations/ or archive/ folder' });
    }
  }
  return { generations, ignored };
}
