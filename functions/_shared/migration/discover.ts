import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Named like a generation folder, in any case: `v{digits}__{uuid}` (CodebeGen writes `v{n}__{lower-case uuid}`). */
const GENERATION_LIKE = /^v(\d+)__([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;
/** The database's `version integer`. */
const MAX_VERSION = 2_147_483_647;
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

/**
 * A folder that looks like a generation (named `v{n}__{uuid}`, or holding a manifest.json) but cannot be taken as
 * one as it is: an odd version, an odd id or project folder, a symlink, another copy of a generation elsewhere.
 * Never migrated, never dropped silently: reported as needing attention (the CLI exits 1).
 */
export interface AttentionEntry {
  path: string;
  layout: FoundLayout;
  reason: string;
  /** As far as the names tell. */
  generationId?: string;
  projectId?: string;
  version?: number;
}

/** Something under STORAGE_PATH that is not a generation, with why: the report accounts for every entry. */
export interface IgnoredEntry {
  path: string;
  reason: string;
}

export interface Discovery {
  generations: FoundGeneration[];
  attention: AttentionEntry[];
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

/** Why a `v{digits}__{id}` name cannot be taken as written, or undefined when it can. Gaps between versions are fine. */
function oddName(digits: string, id: string): string | undefined {
  if (id !== id.toLowerCase()) return `generation id ${id} is not lower-case (CodebeGen writes lower-case ids)`;
  if (/^0+$/.test(digits)) return `version ${digits} is not a version (versions start at 1)`;
  if (digits.startsWith('0')) return `version ${digits} has leading zeros (CodebeGen writes v${digits.replace(/^0+/, '')}__…)`;
  if (Number(digits) > MAX_VERSION) return `version ${digits} is above the largest the database holds (${MAX_VERSION})`;
  return undefined;
}

/** Whether a folder holds generations/ or archive/ with a folder named like a generation. */
async function looksLikeProject(abs: string): Promise<boolean> {
  for (const i of await list(abs)) {
    if (i.kind !== 'dir' || (i.name !== 'generations' && i.name !== 'archive')) continue;
    if ((await list(join(abs, i.name))).some((x) => x.kind === 'dir' && GENERATION_LIKE.test(x.name))) return true;
  }
  return false;
}

const hasManifest = async (abs: string) => (await lstat(join(abs, 'manifest.json')).catch(() => undefined))?.isFile() ?? false;

/**
 * Finds every generation under `root` in each of CodebeGen's layouts:
 *   {project_id}/generations/v{n}__{generation_id}/   {project_id}/archive/v{n}__{generation_id}/   {generation_id}/
 * Follows no symlink (the `active` links are skipped silently, any other is reported), never reads outside
 * `root`, and reads folder names only (the contents are read later, one generation at a time).
 * A generation both in `generations/` and in `archive/` (same project and version) is taken from `generations/`;
 * the other copy is reported. Whatever looks like a generation but cannot be taken as one as it is (version 0,
 * leading zeros, an upper-case id, a project folder that is not a project id, a symlink named like a generation,
 * a manifest.json in an oddly named folder, one id in two places) is in `attention`, never in `ignored`.
 */
export async function discoverGenerations(root: string): Promise<Discovery> {
  const generations: FoundGeneration[] = [];
  const attention: AttentionEntry[] = [];
  const ignored: IgnoredEntry[] = [];
  const seen = new Map<string, FoundGeneration>();
  const add = (g: FoundGeneration) => {
    const first = seen.get(g.generationId);
    if (!first) {
      seen.set(g.generationId, g);
      generations.push(g);
      return;
    }
    // A second copy of it (flat folders are found last, and name no project or version to disagree with).
    if (g.layout === 'flat' || (first.projectId === g.projectId && first.version === g.version)) {
      ignored.push({ path: g.path, reason: `duplicate of generation ${g.generationId} at ${first.path}` });
      return;
    }
    const { generationId, layout, path, projectId, version } = g;
    attention.push({ path, layout, generationId, projectId, version, reason: `generation ${generationId} is also at ${first.path} (version ${first.version} of project ${first.projectId}): one id in two places` });
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
    // A project folder holds generations/ or archive/ with v{n}__{uuid} folders; a flat generation's own
    // source may well contain a folder named archive/ or generations/. One with another name is still walked:
    // what is in it is reported as needing attention.
    else if (await looksLikeProject(join(root, e.name))) projects.push(e.name);
    else if (UUID.test(e.name)) flats.push(e);
    else ignored.push({ path: e.name, reason: 'folder name is not a project or generation id' });
  }
  // generations/ before archive/ across every project, so duplicates resolve the same way every run.
  for (const sub of ['generations', 'archive'] as const) {
    const layout: FoundLayout = sub === 'generations' ? 'hierarchical' : 'archive';
    for (const projectId of projects) {
      const dir = join(root, projectId, sub);
      const rel = `${projectId}/${sub}`;
      const st = await lstat(dir).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      const entries = await list(dir);
      const names = new Set(entries.map((e) => e.name));
      const projectOk = UUID.test(projectId);
      for (const e of entries) {
        const path = `${rel}/${e.name}`;
        const m = GENERATION_LIKE.exec(e.name);
        const named = m ? { generationId: m[2]!, projectId: projectOk ? projectId : undefined, version: Number.isSafeInteger(Number(m[1])) ? Number(m[1]) : undefined } : {};
        if (e.kind === 'symlink') {
          if (m) attention.push({ path, layout, ...named, reason: 'symbolic link named like a generation: not followed (put the folder itself here to migrate it)' });
          else if (e.name !== 'active') ignored.push({ path, reason: 'symbolic link: not followed' });
          continue;
        }
        // The archive this service keeps beside each folder it wrote: the folder is what we migrate.
        if (e.kind === 'file' && e.name.endsWith('.tar.gz') && names.has(e.name.slice(0, -'.tar.gz'.length))) continue;
        if (e.kind !== 'dir') {
          ignored.push({ path, reason: 'not a generation folder' });
          continue;
        }
        if (!m) {
          if (await hasManifest(join(dir, e.name))) attention.push({ path, layout, reason: 'holds a manifest.json but its name is not v{version}__{generation_id}' });
          else ignored.push({ path, reason: 'folder name is not v{version}__{generation_id}' });
          continue;
        }
        const odd = projectOk ? oddName(m[1]!, m[2]!) : `its project folder ${JSON.stringify(projectId)} is not a project id (a lower-case uuid)`;
        if (odd) attention.push({ path, layout, ...named, reason: odd });
        else add({ generationId: m[2]!, layout, path, projectId, version: Number(m[1]) });
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
  return { generations, attention, ignored };
}
