import type { FoundGeneration } from './discover.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Who owns what, exported from CodebeGen's database: project → owner, and for the old flat folders (which name
 * only the generation) generation → project and version.
 */
export interface OwnerMapping {
  projects: Map<string, string>;
  generations: Map<string, { projectId: string; version: number }>;
}

export class MappingError extends Error {
  override name = 'MappingError';
}

export const emptyMapping = (): OwnerMapping => ({ projects: new Map(), generations: new Map() });

type Row = { project_id?: unknown; owner_id?: unknown; generation_id?: unknown; version?: unknown };

/**
 * Parses a mapping file. CSV: a header naming some of `project_id,owner_id,generation_id,version`, one row each
 * (a row with `generation_id` places a flat generation; `owner_id` on any row sets its project's owner).
 * JSON: `{ "projects": { "<project_id>": "<owner_id>" }, "generations": { "<generation_id>": { "project_id", "version" } } }`
 * or an array of row objects as in the CSV.
 * @example parseMapping('project_id,owner_id\n3333…,1111…\n', 'csv')
 */
export function parseMapping(text: string, format: 'csv' | 'json'): OwnerMapping {
  const rows: { row: Row; where: string }[] = [];
  if (format === 'json') {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new MappingError(`[migration] mapping is not valid JSON: ${(err as Error).message}`);
    }
    if (Array.isArray(doc)) doc.forEach((r, i) => rows.push({ row: (r ?? {}) as Row, where: `entry ${i}` }));
    else if (doc && typeof doc === 'object') {
      const { projects = {}, generations = {} } = doc as { projects?: Record<string, unknown>; generations?: Record<string, Row> };
      for (const [project_id, owner_id] of Object.entries(projects)) rows.push({ row: { project_id, owner_id }, where: `projects.${project_id}` });
      for (const [generation_id, g] of Object.entries(generations)) rows.push({ row: { ...(g ?? {}), generation_id }, where: `generations.${generation_id}` });
    } else throw new MappingError('[migration] mapping JSON must be an object or an array');
  } else {
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const header = (lines.shift() ?? '').split(',').map((h) => h.trim().toLowerCase().replace(/^"|"$/g, ''));
    const known = ['project_id', 'owner_id', 'generation_id', 'version'];
    const unknown = header.filter((h) => !known.includes(h));
    if (header.length === 0 || unknown.length) throw new MappingError(`[migration] mapping CSV header must name columns of ${known.join(',')}; got ${JSON.stringify(header.join(','))}`);
    lines.forEach((line, i) => {
      const cells = line.split(',').map((c) => c.trim().replace(/^"|"$/g, ''));
      const row: Record<string, string> = {};
      header.forEach((h, j) => cells[j] && (row[h] = cells[j]!));
      rows.push({ row, where: `line ${i + 2}` });
    });
  }
  const mapping = emptyMapping();
  for (const { row, where } of rows) addRow(mapping, row, where);
  return mapping;
}

function addRow(mapping: OwnerMapping, row: Row, where: string) {
  const fail = (why: string) => new MappingError(`[migration] mapping ${where}: ${why}`);
  const uuid = (v: unknown, name: string) => {
    if (v === undefined || v === '') return undefined;
    const s = String(v).toLowerCase();
    if (!UUID.test(s)) throw fail(`${name} ${JSON.stringify(v)} is not a uuid`);
    return s;
  };
  const projectId = uuid(row.project_id, 'project_id');
  const ownerId = uuid(row.owner_id, 'owner_id');
  const generationId = uuid(row.generation_id, 'generation_id');
  if (!projectId) throw fail('project_id is required');
  if (ownerId) {
    const other = mapping.projects.get(projectId);
    if (other && other !== ownerId) throw fail(`project ${projectId} is given two owners (${other}, ${ownerId})`);
    mapping.projects.set(projectId, ownerId);
  }
  if (generationId) {
    const version = Number(row.version);
    // At most the database's `version integer`.
    if (!Number.isSafeInteger(version) || version < 1 || version > 2_147_483_647) throw fail(`version ${JSON.stringify(row.version)} must be a whole number from 1 to 2147483647`);
    mapping.generations.set(generationId, { projectId, version });
  } else if (!ownerId) throw fail('a row needs owner_id, or generation_id and version');
}

/** Where a found generation goes, or why it cannot be placed. */
export type Placement = { ok: true; projectId: string; version: number; ownerId: string } | { ok: false; reason: string };

/**
 * Places a generation: its project and version from its folder names (hierarchical, archive) or the mapping
 * (flat); its owner from the mapping, else the default owner. Never guesses.
 */
export function place(g: FoundGeneration, mapping: OwnerMapping, defaultOwner?: string): Placement {
  let projectId = g.projectId;
  let version = g.version;
  if (g.layout === 'flat') {
    const m = mapping.generations.get(g.generationId);
    if (!m) return { ok: false, reason: `flat folder: the mapping does not give generation ${g.generationId} a project and version` };
    ({ projectId, version } = m);
  }
  const ownerId = mapping.projects.get(projectId!) ?? defaultOwner;
  if (!ownerId) return { ok: false, reason: `no owner for project ${projectId} in the mapping and no --default-owner` };
  return { ok: true, projectId: projectId!, version: version!, ownerId };
}

/**
 * The generations of one run that another one of them claims the same project and version of (a folder's names,
 * or the mapping for flat folders), each with its rivals. Gaps between versions are fine; two claims of one are
 * not: at most one of them could be registered, and which one is for a person to say.
 */
export function versionClaims(found: readonly FoundGeneration[], mapping: OwnerMapping): Map<FoundGeneration, FoundGeneration[]> {
  const bySlot = new Map<string, FoundGeneration[]>();
  for (const g of found) {
    const slot = g.layout === 'flat' ? mapping.generations.get(g.generationId) : { projectId: g.projectId!, version: g.version! };
    if (!slot) continue;
    const key = `${slot.projectId} v${slot.version}`;
    bySlot.set(key, [...(bySlot.get(key) ?? []), g]);
  }
  const rivals = new Map<FoundGeneration, FoundGeneration[]>();
  for (const group of bySlot.values()) {
    if (group.length > 1) for (const g of group) rivals.set(g, group.filter((o) => o !== g));
  }
  return rivals;
}
