import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, lstat, mkdir, open, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { openRegularFile } from '../archive/disk-tree.ts';
import { encodeManifest, parseManifest, sha256Hex, type FileDigest, type Manifest } from '../archive/manifest.ts';
import { generationDirName, type GenerationRef } from '../archive/generation-archive.ts';
import type { TreeFile } from '../archive/tar-gz.ts';
import { byCodePoint } from '../code-point-order.ts';
import { AppError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { normaliseRelativePath } from '../secure-path.ts';
import { NO_DIR_SYNC } from './dir-sync.ts';
import { overlap } from './path-guard.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Our scratch folder inside STORAGE_PATH (same filesystem, so renames are atomic); not a project id. */
const SCRATCH = '.codebegen-tmp';

export type Layout = 'hierarchical' | 'flat';

/** A generation written to scratch, synced, and not yet visible: see `LocalStore.stage`. */
export interface StagedWrite {
  /** Renames it into place (and syncs the folder that holds it). */
  place(): Promise<void>;
  /** Removes the scratch, if it was not placed. */
  discard(): Promise<void>;
}

/** What is on disk for one generation, in whichever of CodebeGen's layouts it was found. */
export interface LocalGeneration {
  layout: Layout;
  /** From manifest.json; flat folders have none. */
  manifest?: Manifest;
  /** Source files, paths relative to `source/` (hierarchical) or to the folder itself (flat). */
  files: TreeFile[];
}

/**
 * Generations on local disk in CodebeGen's own layout:
 *   {root}/{project_id}/generations/v{version}__{generation_id}/{manifest.json, source/, artifacts/}
 *   {root}/{project_id}/generations/v{version}__{generation_id}.tar.gz   (the archive we serve and upload)
 * and reads the old flat layout {root}/{generation_id}/<files> too, so the Python service and this one can share
 * a folder. Writes are atomic: a generation is built in a scratch folder and renamed into place.
 * Symlinks are never followed (Python's `active` link is skipped).
 */
export class LocalStore {
  /** Writes and removals of one generation run one at a time in this process (the database lock covers others). */
  private readonly busy = new Map<string, Promise<unknown>>();

  /** `writer`: how a generation's folder is made durable; the host may bring one (the Node server: worker threads). */
  constructor(
    readonly root: string,
    private readonly writer: TreeWriter = inThreadWriter,
  ) {}

  private serialise<T>(ref: GenerationRef, fn: () => Promise<T>): Promise<T> {
    const key = this.relativePath(ref);
    const run = (this.busy.get(key) ?? Promise.resolve()).then(fn, fn);
    const settled = run.then(
      () => {},
      () => {},
    );
    this.busy.set(key, settled);
    void settled.then(() => this.busy.get(key) === settled && this.busy.delete(key));
    return run;
  }

  /** Path relative to the root: what callers may see (never an absolute server path). */
  relativePath(ref: GenerationRef): string {
    assertRef(ref);
    return `${ref.projectId}/generations/${generationDirName(ref)}`;
  }

  generationDir(ref: GenerationRef): string {
    return join(this.root, this.relativePath(ref));
  }

  archivePath(ref: GenerationRef): string {
    return `${this.generationDir(ref)}.tar.gz`;
  }

  private flatDir(ref: GenerationRef): string {
    assertRef(ref);
    return join(this.root, ref.generationId);
  }

  /** Writes manifest, sources, an empty artifacts/ and the archive; visible all at once or not at all. */
  async write(ref: GenerationRef, manifest: Manifest, files: readonly TreeFile[], archive: Uint8Array): Promise<void> {
    const staged = await this.stage(ref, manifest, files, archive);
    await staged.place();
  }

  /**
   * The slow half of `write`, apart: the generation written and synced in a scratch folder, not yet visible. A
   * save does this before its database transaction and `place()`s it inside, so the transaction waits on two
   * renames rather than on writing every file. `discard()` (after a failure) removes the scratch; both are safe
   * to call more than once.
   */
  async stage(ref: GenerationRef, manifest: Manifest, files: readonly TreeFile[], archive: Uint8Array): Promise<StagedWrite> {
    assertRef(ref);
    return this.prepare(ref, (dir, archivePath) => this.writer.write(generationWrite(dir, manifest, files, archivePath, archive)));
  }

  /**
   * Like `write`, but `fill(dir)` creates and fills the generation's folder: e.g. unpacked from the archive straight
   * to disk, so the files are never all in memory.
   */
  async writeFilled(ref: GenerationRef, archive: Uint8Array, fill: (dir: string) => Promise<unknown>): Promise<void> {
    assertRef(ref);
    // Not synced: this is how the cache is filled, and a cache entry is checked on every read (archive and
    // files by sha256), so what an OS crash could leave of it costs only a refill.
    const staged = await this.prepare(ref, async (dir, archivePath) => {
      await fill(dir);
      await writeFile(archivePath, archive);
    });
    await staged.place();
  }

  /**
   * `write(dir, archivePath)` must leave the generation's folder and archive there durable before it resolves: the
   * caller commits the row once `place` returns, and an OS crash must not leave that row pointing at a truncated
   * archive or an empty file.
   */
  private async prepare(ref: GenerationRef, write: (dir: string, archivePath: string) => Promise<void>): Promise<StagedWrite> {
    await this.assertProjectFolder(ref);
    const scratch = await this.scratchDir();
    const discard = () => rm(scratch, { recursive: true, force: true });
    const dir = join(scratch, 'generation');
    try {
      await write(dir, join(scratch, 'archive.tar.gz'));
    } catch (err) {
      await discard();
      throw err;
    }
    // Writes and removals of one generation run one at a time in this process (the database lock covers others).
    const place = () => this.serialise(ref, () => this.placeNow(ref, scratch, dir)).finally(discard);
    return { place, discard };
  }

  private async placeNow(ref: GenerationRef, scratch: string, dir: string): Promise<void> {
    const finalDir = this.generationDir(ref);
    let created: string | undefined;
    // A removal of the project's last generation that began before this placement may still be removing the
    // emptied `generations/` and project folders (see removeEmptied): a folder gone under us is made again.
    for (let attempt = 1; ; attempt++) {
      try {
        created = (await mkdir(dirname(finalDir), { recursive: true })) ?? created;
        await this.clearWay(ref, finalDir, scratch);
        // The folder makes the generation visible; the archive follows it. Should that fail, the folder goes too.
        await rename(dir, finalDir);
        break;
      } catch (err) {
        if (!isMissing(err) || attempt === 3 || !(await isRealDir(dir))) throw err;
      }
    }
    try {
      await rename(join(scratch, 'archive.tar.gz'), this.archivePath(ref));
      // The renames live in `{project}/generations/`; folders mkdir just made live in their parents.
      await syncEach(parentsToSync(dirname(finalDir), created).map((path) => ({ path, dir: true })));
    } catch (err) {
      await this.moveAside(this.archivePath(ref), scratch, 'undo-archive');
      await this.moveAside(finalDir, scratch, 'undo');
      throw err;
    }
  }

  /**
   * A folder already at `finalDir` has no row (the caller checked): a leftover of a crash, moved aside. So is one of
   * this generation id under another version (ids are unique; a save killed between its two renames, retried since
   * under the next version): moved aside too, never left on disk for good.
   */
  private async clearWay(ref: GenerationRef, finalDir: string, scratch: string): Promise<void> {
    await this.moveAside(finalDir, scratch, 'stale');
    const mine = basename(finalDir);
    const others = (await readdir(dirname(finalDir))).filter((n) => n !== mine && n !== `${mine}.tar.gz` && (n.endsWith(`__${ref.generationId}`) || n.endsWith(`__${ref.generationId}.tar.gz`)));
    for (const [i, n] of others.entries()) await this.moveAside(join(dirname(finalDir), n), scratch, `stale-${i}`);
  }

  /**
   * `{root}/{project_id}` must be a project folder (or not exist yet): never a legacy flat generation whose id
   * happens to equal this project's, which would mix our files into it.
   */
  private async assertProjectFolder(ref: GenerationRef): Promise<void> {
    const dir = join(this.root, ref.projectId);
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    if (entries.length > 0 && !entries.includes('generations')) {
      throw new AppError(ErrorCode.GenerationConflict, 409, `project id ${ref.projectId} collides with a legacy generation folder`);
    }
  }

  /** The stored archive, or undefined (a folder CodebeGen's Python wrote has none). */
  async readArchive(ref: GenerationRef): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(this.archivePath(ref)));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  /**
   * One source file of the generation's folder (`.../v{n}__{id}/source/{path}`), if it is there with exactly the
   * bytes `expected` records (size, then sha256); undefined otherwise, so the caller turns to another copy. The file
   * itself is opened without following a symlink; what it holds is checked whatever led to it.
   */
  async readSourceFile(ref: GenerationRef, expected: FileDigest): Promise<Uint8Array | undefined> {
    const path = join(this.generationDir(ref), 'source', normaliseRelativePath(expected.path));
    let opened: Awaited<ReturnType<typeof openRegularFile>>;
    try {
      opened = await openRegularFile(path);
    } catch (err) {
      if (NO_SOURCE_FILE.has((err as NodeJS.ErrnoException).code ?? '')) return undefined;
      throw err;
    }
    const { fh, size } = opened;
    try {
      if (size !== expected.size) return undefined;
      const data = new Uint8Array(size);
      for (let at = 0; at < size; ) {
        const { bytesRead } = await fh.read(data, at, size - at, at);
        if (bytesRead === 0) return undefined; // shrank while read
        at += bytesRead;
      }
      return sha256Hex(data) === expected.sha256 ? data : undefined;
    } finally {
      await fh.close();
    }
  }

  /** When the generation's folder was written (its mtime), if it is here in our layout. */
  async writtenAt(ref: GenerationRef): Promise<Date | undefined> {
    try {
      const info = await lstat(this.generationDir(ref));
      return info.isDirectory() ? info.mtime : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  /** Whether the stored archive exists, without reading it. */
  async hasArchive(ref: GenerationRef): Promise<boolean> {
    try {
      return (await lstat(this.archivePath(ref))).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /**
   * Which layout holds this generation, if any, among `layouts`. The flat layout is keyed by the generation id
   * alone, so only callers that know a generation is a legacy one (the migration tool) should look there.
   */
  async locate(ref: GenerationRef, layouts: readonly Layout[] = ['hierarchical', 'flat']): Promise<{ layout: Layout; dir: string } | undefined> {
    const hier = this.generationDir(ref);
    if (layouts.includes('hierarchical') && (await isRealDir(hier))) return { layout: 'hierarchical', dir: hier };
    const flat = this.flatDir(ref);
    if (layouts.includes('flat') && (await isRealDir(flat))) return { layout: 'flat', dir: flat };
    return undefined;
  }

  /** Reads a generation's manifest and source files from the first of `layouts` that holds it. */
  async read(ref: GenerationRef, layouts?: readonly Layout[]): Promise<LocalGeneration | undefined> {
    const where = await this.locate(ref, layouts);
    if (!where) return undefined;
    if (where.layout === 'flat') return { layout: 'flat', files: await readTree(where.dir) };
    let manifest: Manifest | undefined;
    try {
      manifest = parseManifest(new Uint8Array(await readFile(join(where.dir, 'manifest.json'))));
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
    const source = join(where.dir, 'source');
    return { layout: 'hierarchical', manifest, files: (await isRealDir(source)) ? await readTree(source) : [] };
  }

  /**
   * Removes the generation's folder and archive in our layout, then `{project}/generations/` and `{project}/` if that
   * left them empty. Safe to repeat. Never touches a flat folder.
   */
  async remove(ref: GenerationRef): Promise<void> {
    assertRef(ref);
    await this.serialise(ref, () => this.removeAll([this.archivePath(ref), this.generationDir(ref)]));
    await this.removeEmptied(ref);
  }

  /**
   * Removes a legacy flat generation (`{root}/{generation_id}/` and its `.zip`). Only for callers that know the
   * id names a legacy generation: a flat folder's name could equally be a project's id.
   */
  async removeFlat(ref: GenerationRef): Promise<void> {
    assertRef(ref);
    return this.serialise(ref, () => this.removeAll([this.flatDir(ref), `${this.flatDir(ref)}.zip`]));
  }

  private async removeAll(paths: string[]): Promise<void> {
    const scratch = await this.scratchDir();
    try {
      for (const [i, path] of paths.entries()) await this.moveAside(path, scratch, `gone-${i}`);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * After a removal: `{project}/generations/` and then `{project}/`, if they are empty. rmdir itself is the check (it
   * fails on a folder that holds anything, or on a symlink), never a look first. A save in this process first
   * creates `generations/`, then renames its folder into it: removing the folder in between would fail that save,
   * so this waits until no write or removal in the project is under way. Best effort: the generation is gone.
   */
  private async removeEmptied(ref: GenerationRef): Promise<void> {
    const prefix = `${ref.projectId}/generations/`;
    // Our own entry is among them until it settles (a re-save of this very generation may follow it under its key).
    for (let round = 0; ; round++) {
      const inFlight = [...this.busy].filter(([key]) => key.startsWith(prefix)).map(([, done]) => done);
      if (inFlight.length === 0) break;
      if (round === 4) return; // busy all along: its folders are not empty, or not for long
      await Promise.all(inFlight);
    }
    const generations = dirname(this.generationDir(ref));
    for (const dir of [generations, dirname(generations)]) {
      if (relative(this.root, dir) === '') return; // never the root, however it is spelled
      try {
        await rmdir(dir);
      } catch {
        return; // not empty, not a folder, or gone: nothing above it is ours to remove either
      }
    }
  }

  /** Whether the root can be written (creating it if needed); cheap enough for every health check. */
  async writable(): Promise<boolean> {
    try {
      await mkdir(this.root, { recursive: true });
      await access(this.root, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Removes every generation (folder and archive) written before `cutoff`: the cache's expiry. Returns counts.
   * Walks `{root}/{project}/generations/` only (never through a symlink); anything else under the root is left alone.
   * With `apartFrom` (STORAGE_PATH), removes nothing — logs an error, returns `removed: 0` — if this root and that
   * folder overlap on disk (through a symlink or a bind mount, see path-guard): expiry would delete real generations.
   */
  async removeOlderThan(cutoff: Date, guard?: { apartFrom: string; log: Logger }): Promise<{ removed: number; kept: number }> {
    let removed = 0;
    let kept = 0;
    if (guard) {
      const how = await overlap(this.root, guard.apartFrom);
      if (how) {
        guard.log.error('cache expiry refused: the cache folder and STORAGE_PATH overlap on disk (a symlink or mount); nothing removed', { overlap: how });
        return { removed, kept };
      }
    }
    const list = (dir: string) => readdir(dir, { withFileTypes: true }).catch((err) => (isMissing(err) ? [] : Promise.reject(err)));
    for (const project of await list(this.root)) {
      if (!project.isDirectory() || !UUID.test(project.name)) continue;
      const generations = join(this.root, project.name, 'generations');
      if (!(await isRealDir(generations))) continue; // a link there could lead anywhere, STORAGE_PATH included
      for (const entry of await list(generations)) {
        const m = /^v(\d+)__([0-9a-f-]{36})$/.exec(entry.name);
        if (!entry.isDirectory() || !m) continue;
        const ref = { projectId: project.name, generationId: m[2]!, version: Number(m[1]) };
        const at = await this.writtenAt(ref);
        if (at && at < cutoff) {
          await this.remove(ref);
          removed++;
        } else kept++;
      }
    }
    return { removed, kept };
  }

  /**
   * Removes scratch folders a crashed process left behind. Only old ones: another process sharing the folder
   * may be writing into a young one right now. Returns how many were removed.
   */
  async sweepScratch(olderThanMs = 60 * 60 * 1000, now = Date.now()): Promise<number> {
    const base = join(this.root, SCRATCH);
    let names: string[];
    try {
      names = await readdir(base);
    } catch (err) {
      if (isMissing(err)) return 0;
      throw err;
    }
    let removed = 0;
    for (const name of names) {
      const path = join(base, name);
      const info = await lstat(path).catch(() => undefined);
      if (info && now - info.mtimeMs > olderThanMs) {
        await rm(path, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  private async scratchDir(): Promise<string> {
    const dir = join(this.root, SCRATCH, randomUUID());
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** Renames `path` into the scratch folder (it vanishes atomically), if it exists. */
  private async moveAside(path: string, scratch: string, name: string): Promise<void> {
    try {
      await rename(path, join(scratch, name));
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
  }
}

function assertRef(ref: GenerationRef) {
  if (!UUID.test(ref.projectId) || !UUID.test(ref.generationId) || !Number.isInteger(ref.version) || ref.version < 1) {
    throw new Error(`[local-store] not a generation reference: ${JSON.stringify(ref)}`);
  }
}

/** Not there, or not a file: what a folder that lacks a source file looks like. */
const NO_SOURCE_FILE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENOTREG', 'EISDIR']);

/** Not there: no such entry, or a file where a folder on the way should be. */
const isMissing = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException)?.code ?? '');

async function isRealDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** How many fsyncs are in flight at once: enough for the filesystem to share journal commits, few file handles. */
const SYNC_CONCURRENCY = 16;

/**
 * Flushes each file's bytes, or each folder's entries, to the disk (fsync), `SYNC_CONCURRENCY` at a time. Through
 * `node:fs/promises` `FileHandle.sync()`: Node and Deno alike (Deno fsyncs a folder opened read-only too).
 */
function syncEach(items: readonly { path: string; dir: boolean }[]): Promise<void> {
  return inPool(items, syncOne);
}

/** `fn` on every item, `SYNC_CONCURRENCY` at a time; the first failure is thrown once all have settled. */
async function inPool<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await settleAll(Array.from({ length: Math.min(SYNC_CONCURRENCY, items.length) }, worker));
}

/** Waits for every one; the first failure is thrown once all have settled (nothing is left writing behind it). */
export async function settleAll(work: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

async function syncOne({ path, dir }: { path: string; dir: boolean }): Promise<void> {
  try {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (!dir || !NO_DIR_SYNC.has((err as NodeJS.ErrnoException)?.code ?? '')) throw err;
  }
}

/**
 * The folders whose entries a write changed: `parent` (where the renames landed) and, when `mkdir` created folders
 * on the way to it (`created` is the first one it made), each of those folders' parents too.
 * @example parentsToSync('/r/p/generations', '/r/p') -> ['/r/p/generations', '/r/p', '/r']
 */
function parentsToSync(parent: string, created: string | undefined): string[] {
  const out = [parent];
  if (created === undefined) return out;
  for (let d = parent; d !== dirname(created) && dirname(d) !== d; ) out.push((d = dirname(d)));
  return out;
}

/**
 * What makes one generation's folder durable: `folders` made in this order (parents first), each of `files`
 * written and flushed (fdatasync: its bytes and size), then each of `folders` synced (fsync: its entries).
 */
export interface TreeWrite {
  folders: string[];
  files: { path: string; data: Uint8Array }[];
}

/** Carries out a TreeWrite, resolving once all of it is on the disk. */
export interface TreeWriter {
  write(w: TreeWrite): Promise<void>;
}

/**
 * The folder CodebeGen writes (manifest.json, source/<files>, an empty artifacts/) and the archive beside it, as
 * a TreeWrite.
 */
function generationWrite(dir: string, manifest: Manifest, files: readonly TreeFile[], archivePath: string, archive: Uint8Array): TreeWrite {
  const writes = [
    { path: archivePath, data: archive },
    { path: join(dir, 'manifest.json'), data: encodeManifest(manifest) },
    ...files.map((f) => ({ path: join(dir, 'source', normaliseRelativePath(f.path)), data: f.data })),
  ];
  const folders = new Set([dir, join(dir, 'artifacts'), join(dir, 'source')]);
  for (const w of writes.slice(2)) for (let d = dirname(w.path); !folders.has(d); d = dirname(d)) folders.add(d);
  return { folders: [...folders].sort((a, b) => a.split('/').length - b.split('/').length), files: writes };
}

/**
 * A TreeWrite through `node:fs/promises` (Node and Deno alike): folders level by level, one folder's entries one
 * at a time (see `perFolder`), files `SYNC_CONCURRENCY` at a time so their flushes overlap. Each step is a
 * thread-pool round trip and a turn of the event loop, so a busy event loop slows it: the Node server uses
 * scripts/tree-writer-workers.ts instead (docs/BENCHMARKS.md §1).
 */
export const inThreadWriter: TreeWriter = {
  async write({ folders, files }) {
    const inFolder = perFolder();
    const levels: string[][] = [];
    for (const d of folders) (levels[d.split('/').length] ??= []).push(d);
    for (const level of levels) if (level) await Promise.all(level.map((d) => inFolder(d, () => mkdir(d))));
    await inPool(files, async ({ path, data }) => {
      const handle = await inFolder(path, () => open(path, 'w'));
      try {
        await handle.writeFile(data);
        await handle.datasync();
      } finally {
        await handle.close();
      }
    });
    await syncEach(folders.map((path) => ({ path, dir: true })));
  },
};

/**
 * Runs the functions given for one folder's entries one at a time, those of different folders at once: creating
 * entries in one folder takes its lock, so doing it from several threads at once only makes them wait for it (on
 * ext4, spinning: CPU the save could use; docs/BENCHMARKS.md §1).
 */
function perFolder(): <T>(path: string, fn: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return (path, fn) => {
    const parent = dirname(path);
    const run = (tails.get(parent) ?? Promise.resolve()).then(fn);
    tails.set(parent, run.catch(() => {}));
    return run;
  };
}

/** Every regular file under `dir`, paths relative to it, sorted; symlinks and other specials are skipped. */
async function readTree(dir: string): Promise<TreeFile[]> {
  const out: TreeFile[] = [];
  const walk = async (abs: string, rel: string) => {
    const entries = await readdir(abs, { withFileTypes: true });
    for (const e of entries) {
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(join(abs, e.name), childRel);
      else if (e.isFile()) out.push({ path: childRel, data: new Uint8Array(await readFile(join(abs, e.name))) });
    }
  };
  await walk(dir, '');
  return out.sort((a, b) => byCodePoint(a.path, b.path));
}
