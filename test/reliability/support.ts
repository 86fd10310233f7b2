// What the reliability suites share: their one-line report, digests, archive contents, and a picture of a folder
// tree to prove that nothing was written where it should not be.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { inject } from 'vitest';
import { unpackTree } from '../../functions/_shared/archive/tar-gz.ts';
import { scratchDatabase } from '../helpers/scratch-db.ts';

/** Prints the scenario's figures as one line, `reliability <scenario>: {...}`, and returns them. */
export function report<T extends Record<string, unknown>>(scenario: string, figures: T): T {
  console.log(`reliability ${scenario}: ${JSON.stringify(figures)}`);
  return figures;
}

export const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Percentiles of a list of durations (ms), rounded. */
export function percentiles(ms: number[]): { p50: number; p95: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) => Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0);
  return { p50: at(0.5), p95: at(0.95), max: Math.round(s.at(-1) ?? 0) };
}

/** The source files of a generation archive, as the caller sent them: path -> UTF-8 content. */
export async function sourceFiles(archive: Uint8Array): Promise<Record<string, string>> {
  const tree = await unpackTree(archive, { maxEntries: 100_000, maxFileBytes: 2 ** 30, maxTotalBytes: 2 ** 31 });
  const out: Record<string, string> = {};
  for (const f of tree.files) {
    const m = /^v\d+__[0-9a-f-]{36}\/source\/(.+)$/.exec(f.path);
    if (m) out[m[1]!] = new TextDecoder().decode(f.data);
  }
  return out;
}

/** Every entry under `root` (symlinks not followed): relative path -> kind, and size + mtime for files. */
export function treeSnapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    let names: string[];
    try {
      names = readdirSync(join(root, rel));
    } catch {
      return;
    }
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const info = lstatSync(join(root, r));
      if (info.isDirectory()) {
        out.set(r, 'dir');
        walk(r);
      } else if (info.isFile()) out.set(r, `file ${info.size} ${info.mtimeMs}`);
      else out.set(r, info.isSymbolicLink() ? 'symlink' : 'special');
    }
  };
  walk('');
  return out;
}

/**
 * What changed between two snapshots: added, removed and changed paths, each sorted. The stores' own empty
 * scratch parent (`.codebegen-tmp`, made once and kept) is not a change; anything inside it is.
 */
export function treeDiff(before: Map<string, string>, after: Map<string, string>) {
  const counts = (k: string) => !/(^|\/)\.codebegen-tmp$/.test(k);
  const added = [...after.keys()].filter((k) => !before.has(k) && counts(k)).sort();
  const removed = [...before.keys()].filter((k) => !after.has(k) && counts(k)).sort();
  const changed = [...after.keys()].filter((k) => before.has(k) && before.get(k) !== after.get(k)).sort();
  return { added, removed, changed };
}

/**
 * Paths whose name contains `marker`: the whole tree under `root`, plus the folders an escape from it would
 * reach first (each ancestor of `root`, the temp dir, the working directory), one level deep.
 */
export function findMarker(root: string, marker: string, alsoShallow: string[] = []): string[] {
  const hits = [...treeSnapshot(root).keys()].filter((p) => p.includes(marker)).map((p) => join(root, p));
  const shallow = new Set<string>(alsoShallow);
  for (let d = dirname(root); ; d = dirname(d)) {
    shallow.add(d);
    if (dirname(d) === d) break;
  }
  for (const dir of shallow) {
    try {
      for (const name of readdirSync(dir)) if (name.includes(marker)) hits.push(join(dir, name));
    } catch {
      /* unreadable: nothing of ours can be there either */
    }
  }
  return hits;
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The database for a server under test: a scratch database on the real PostgreSQL server the suite was given
 * (test/global-setup.ts), which starts in a second; or, without one, the embedded PGlite in `pgliteDir`.
 */
export async function serverDatabase(pgliteDir: string, prefix: string): Promise<{ kind: 'postgres' | 'pglite'; env: Record<string, string>; drop(): Promise<void> }> {
  const adminUrl = inject('databaseUrl');
  if (!adminUrl) return { kind: 'pglite', env: { PGLITE_DATA_DIR: pgliteDir }, drop: async () => {} };
  const scratch = await scratchDatabase(adminUrl, prefix);
  return { kind: 'postgres', env: { DATABASE_URL: scratch.url, PGLITE_DATA_DIR: pgliteDir }, drop: () => scratch.drop() };
}
