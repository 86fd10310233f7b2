import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { storageKey } from '../archive/generation-archive.ts';
import { sha256Hex } from '../archive/manifest.ts';
import type { Database } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import { isInside } from '../stores/path-guard.ts';
import { ArchiveCache } from './archive-cache.ts';
import { discoverGenerations, type AttentionEntry, type FoundGeneration } from './discover.ts';
import { place, versionClaims, type OwnerMapping } from './owner-mapping.ts';
import { prepareGeneration, type PreparedGeneration, type SizeLimits } from './prepare-generation.ts';
import { registerGeneration, RegistrationConflict, rowState, VersionClash } from './register-generation.ts';
import { buildReport, type MigrationReport, type Outcome, type ReportEntry } from './report.ts';

export interface MigrationProgress {
  /** Generations settled so far, of `total` found. */
  done: number;
  total: number;
  entry: ReportEntry;
  /** Archive bytes uploaded so far (dry run: that would be). */
  bytes: number;
}

export interface MigrationOptions {
  storagePath: string;
  dryRun: boolean;
  /** Download every upload back and compare size and sha256 (default on). */
  verify: boolean;
  concurrency: number;
  /** Only these projects, when given. */
  projectIds?: ReadonlySet<string>;
  mapping: OwnerMapping;
  defaultOwner?: string;
  limits: SizeLimits;
  /** Where packed archives wait for their upload (a folder of the run's own is made inside, and removed). */
  cacheDir: string;
  /** Aborting stops starting generations; those under way finish. */
  signal?: AbortSignal;
  onProgress?: (p: MigrationProgress) => void;
}

export interface MigrationDeps {
  /** Needed for a real run; a dry run without one cannot tell what is already uploaded. */
  db?: Database;
  /** Needed for a real run. */
  cloud?: CloudStore;
  log: Logger;
  now?: () => Date;
}

/**
 * Moves every generation under STORAGE_PATH to the bucket: discover, place (mapping), read and pack, register
 * the row as the API would (pending), upload, download back and verify, mark uploaded. Resumable: a row already
 * uploaded is skipped, a row left pending or failed is uploaded again. One bad generation never stops the run.
 * A folder that looks like a generation but is odd (see discover), and every generation whose project and version
 * another one also claims (in this run, or a row in the database), needs attention: never migrated, in a dry run
 * as in the real one. Nothing under STORAGE_PATH is ever written; a dry run writes nothing anywhere (it reads
 * the database).
 */
export async function runMigration(deps: MigrationDeps, opts: MigrationOptions): Promise<MigrationReport> {
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  if (!opts.dryRun && (!deps.db || !deps.cloud)) throw new Error('[migration] a real run needs a database and a cloud store');
  const root = await realpath(opts.storagePath);
  const cacheParent = resolve(opts.cacheDir);
  if (await isInside(root, cacheParent)) throw new Error('[migration] the cache folder must not be inside STORAGE_PATH (the local files are never written)');
  const { generations: found, attention, ignored } = await discoverGenerations(root);
  const claims = versionClaims(found, opts.mapping);
  const entries: (ReportEntry | undefined)[] = new Array(found.length);
  const cache = new ArchiveCache(cacheParent);
  let done = 0;
  let bytes = 0;
  let next = 0;
  const worker = async () => {
    while (!opts.signal?.aborted && next < found.length) {
      const i = next++;
      const entry = await migrateOne(found[i]!, deps, opts, root, cache, claims.get(found[i]!) ?? []);
      entries[i] = entry;
      done++;
      if (entry.outcome === 'uploaded' || entry.outcome === 'would_upload') bytes += entry.archive_bytes ?? 0;
      opts.onProgress?.({ done, total: found.length, entry, bytes });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency, found.length || 1)) }, worker));
  } finally {
    await cache.close();
  }
  // Array.from, not map: map skips the holes the interrupted run left.
  const generations = Array.from(
    entries,
    (e, i): ReportEntry => e ?? { ...base(found[i]!), outcome: 'not_attempted', reason: 'the run was interrupted before this generation' },
  ).concat(attention.map((a) => attentionEntry(a, opts, deps)));
  return buildReport({
    started_at: startedAt.toISOString(),
    finished_at: now().toISOString(),
    dry_run: opts.dryRun,
    verify: opts.verify,
    interrupted: Boolean(opts.signal?.aborted),
    storage_path: opts.storagePath,
    bucket: deps.cloud?.bucket,
    project_ids: opts.projectIds ? [...opts.projectIds] : undefined,
    generations,
    ignored,
  });
}

const base = (g: FoundGeneration): Pick<ReportEntry, 'generation_id' | 'layout' | 'path' | 'project_id' | 'version'> => ({
  generation_id: g.generationId,
  layout: g.layout,
  path: g.path,
  project_id: g.projectId,
  version: g.version,
});

/** A folder discovery could not take as a generation: needs attention (or excluded, when its project is not selected). */
function attentionEntry(a: AttentionEntry, opts: MigrationOptions, deps: MigrationDeps): ReportEntry {
  const entry: ReportEntry = { generation_id: a.generationId, layout: a.layout, path: a.path, project_id: a.projectId, version: a.version, outcome: 'needs_attention', reason: a.reason };
  if (opts.projectIds && !(a.projectId && opts.projectIds.has(a.projectId))) return { ...entry, outcome: 'excluded', reason: 'not among the --project-id projects' };
  deps.log.warn('generation not migrated', { generation_id: a.generationId, path: a.path, outcome: entry.outcome, reason: a.reason });
  return entry;
}

/**
 * One generation, start to finish. `rivals` are the other generations of this run placed at its project and
 * version. Never throws: the outcome and its reason are in the entry.
 */
async function migrateOne(g: FoundGeneration, deps: MigrationDeps, opts: MigrationOptions, root: string, cache: ArchiveCache, rivals: readonly FoundGeneration[]): Promise<ReportEntry> {
  const entry: ReportEntry = { ...base(g), outcome: 'failed' };
  const settle = (outcome: Outcome, reason?: string): ReportEntry => {
    entry.outcome = outcome;
    if (reason) entry.reason = reason;
    const fields = { generation_id: g.generationId, path: g.path, outcome, reason };
    if (outcome === 'failed' || outcome === 'invalid' || outcome === 'needs_attention') deps.log.warn('generation not migrated', fields);
    else deps.log.debug('generation settled', fields);
    return entry;
  };
  const placed = place(g, opts.mapping, opts.defaultOwner);
  const project = placed.ok ? placed.projectId : g.projectId;
  if (opts.projectIds && !(project && opts.projectIds.has(project))) return settle('excluded', 'not among the --project-id projects');
  if (!placed.ok) return settle('needs_mapping', placed.reason);
  Object.assign(entry, { project_id: placed.projectId, version: placed.version, owner_id: placed.ownerId });
  const ref = { projectId: placed.projectId, generationId: g.generationId, version: placed.version };
  if (rivals.length) {
    // Which of them is that version is for a person to say: none is registered meanwhile. Once the database holds
    // the version (an earlier run registered one of them), each goes on as usual: that one is already there, and
    // the others clash with its row like any generation whose version is taken.
    let held = false;
    try {
      held = deps.db ? await deps.db.asService((tx) => repo.versionTaken(tx, ref.projectId, ref.version)) : false;
    } catch (err) {
      return settle('failed', message(err));
    }
    if (!held) {
      const others = rivals.map((r) => r.path).join(', ');
      return settle('needs_attention', `version ${ref.version} of project ${ref.projectId} is claimed by ${rivals.length + 1} generations in this run (also ${others}): none is migrated until only one is`);
    }
  }

  let prepared: PreparedGeneration;
  try {
    prepared = await prepareGeneration(root, g, ref, opts.limits);
  } catch (err) {
    return settle('invalid', (err as Error).message);
  }
  Object.assign(entry, {
    file_count: prepared.manifest.file_count,
    archive_bytes: prepared.archive.bytes.byteLength,
    archive_sha256: prepared.archive.sha256,
    storage_key: storageKey(ref),
    manifest: prepared.manifestSource,
    ...(prepared.notes.length ? { notes: prepared.notes } : {}),
  });

  if (opts.dryRun) {
    try {
      const state = deps.db ? await rowState(deps.db, prepared, placed.ownerId) : 'absent';
      return state === 'uploaded' ? settle('already_uploaded') : settle('would_upload');
    } catch (err) {
      return settle(err instanceof VersionClash ? 'needs_attention' : 'failed', message(err));
    }
  }

  const db = deps.db!;
  const cloud = deps.cloud!;
  let registered = false;
  let cached: string | undefined;
  try {
    const state = await registerGeneration(db, prepared, placed.ownerId);
    registered = true;
    if (state === 'uploaded') return settle('already_uploaded');
    cached = await cache.put(g.generationId, prepared.archive);
    const bytes = await cache.get(cached, prepared.archive.sha256);
    await cloud.upload(storageKey(ref), bytes);
    if (opts.verify) {
      const back = await cloud.download(storageKey(ref));
      if (back.byteLength !== bytes.byteLength || sha256Hex(back) !== prepared.archive.sha256) {
        throw new Error(`verification failed: the bucket holds ${back.byteLength} bytes with another sha256 (uploaded ${bytes.byteLength})`);
      }
    }
    await db.asService((tx) => repo.markUploaded(tx, g.generationId, prepared.archive.sha256));
    entry.verified = opts.verify;
    deps.log.info('generation migrated', { generation_id: g.generationId, project_id: ref.projectId, key: storageKey(ref), bytes: bytes.byteLength, verified: opts.verify });
    return settle('uploaded');
  } catch (err) {
    if (registered) await db.asService((tx) => repo.markUploadFailed(tx, g.generationId, message(err))).catch(() => {});
    return settle(err instanceof VersionClash ? 'needs_attention' : 'failed', message(err));
  } finally {
    if (cached) await cache.drop(cached);
  }
}

const message = (err: unknown) => (err instanceof RegistrationConflict ? err.message : err instanceof Error ? err.message : String(err));

/** Whether `path` (which may not exist yet) is `root` or inside it, through symlinks and mounts: see path-guard. */
export { isInside as isInsideReal };
