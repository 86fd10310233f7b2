import { FILE_HEADERS_ONLY, formatPatch, structuredPatch } from 'diff';
import type { FileDigest } from '../archive/manifest.ts';
import { byCodePoint } from '../code-point-order.ts';

/** Bounds on the unified diffs of `patch=true`: what one answer may carry, and what one diff may cost. */
export interface PatchLimits {
  /** A side over this many bytes is not diffed (`file_too_large`). */
  maxFileBytes: number;
  /** A patch over this many bytes is left out (`patch_too_large`). */
  maxPatchBytes: number;
  /** Patches in one answer, at most; files past that are listed without one (`total_patch_limit`). */
  maxTotalPatchBytes: number;
  /**
   * Line edits jsdiff may try on one file before giving up (`too_complex`). Its work grows with the square of
   * this (~0.1 s of CPU at 1 000), so it bounds what one file can cost.
   */
  maxEditLength: number;
  /**
   * Line edits for the whole answer: each file draws what it used (all it was allowed, if it gave up); once spent,
   * the rest are `total_patch_limit`. Bounds what one request can cost (~1 s of CPU at worst, well under the
   * edge's limit), whatever the generation.
   */
  maxTotalEdits: number;
}

export const DEFAULT_PATCH_LIMITS: PatchLimits = {
  maxFileBytes: 1024 * 1024,
  maxPatchBytes: 256 * 1024,
  maxTotalPatchBytes: 2 * 1024 * 1024,
  maxEditLength: 1_000,
  maxTotalEdits: 12_000,
};

export type PatchOmitted = 'binary' | 'file_too_large' | 'patch_too_large' | 'total_patch_limit' | 'too_complex';

export interface FileChange {
  path: string;
  /** The file in the older generation (`against`); absent for an added file. */
  from?: FileDigest;
  /** The file in the newer generation (`id`); absent for a removed file. */
  to?: FileDigest;
  patch?: string;
  patch_omitted?: PatchOmitted;
}

export interface FileSetDiff {
  added: FileChange[];
  removed: FileChange[];
  modified: FileChange[];
  unchanged_count: number;
}

/**
 * What changed from `from` to `to`, by path and sha256 alone (no file is read): each list sorted by path in
 * code-point order. A file is modified when its sha256 differs (its size may not).
 */
export function diffFileSets(from: readonly FileDigest[], to: readonly FileDigest[]): FileSetDiff {
  const before = new Map(from.map((f) => [f.path, f]));
  const after = new Map(to.map((f) => [f.path, f]));
  const out: FileSetDiff = { added: [], removed: [], modified: [], unchanged_count: 0 };
  for (const f of to) {
    const old = before.get(f.path);
    if (!old) out.added.push({ path: f.path, to: f });
    else if (old.sha256 !== f.sha256) out.modified.push({ path: f.path, from: old, to: f });
    else out.unchanged_count++;
  }
  for (const f of from) if (!after.has(f.path)) out.removed.push({ path: f.path, from: f });
  for (const list of [out.added, out.removed, out.modified]) list.sort((a, b) => byCodePoint(a.path, b.path));
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of a file, or undefined when it is binary: not UTF-8, or holding NUL (as git decides). */
function textOf(bytes: Uint8Array): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Adds a unified diff (jsdiff's `structuredPatch` and `formatPatch`, 3 lines of context, `---`/`+++` headers with `a/` and `b/`
 * names, `/dev/null` for the missing side, as git writes them) to each change, in the order added, removed, modified and by path, within `limits`; a change
 * left without one says why in `patch_omitted`. `read` gives a side's exact bytes. Returns the patches' total size.
 */
export async function addPatches(diff: FileSetDiff, read: (side: 'from' | 'to', file: FileDigest) => Promise<Uint8Array>, limits: PatchLimits = DEFAULT_PATCH_LIMITS): Promise<number> {
  const enc = new TextEncoder();
  let total = 0;
  let edits = limits.maxTotalEdits;
  for (const change of [...diff.added, ...diff.removed, ...diff.modified]) {
    const { from, to } = change;
    if ((from?.size ?? 0) > limits.maxFileBytes || (to?.size ?? 0) > limits.maxFileBytes) {
      change.patch_omitted = 'file_too_large';
      continue;
    }
    if (total >= limits.maxTotalPatchBytes || edits <= 0) {
      change.patch_omitted = 'total_patch_limit';
      continue;
    }
    const before = from ? textOf(await read('from', from)) : '';
    const after = to ? textOf(await read('to', to)) : '';
    if (before === undefined || after === undefined) {
      change.patch_omitted = 'binary';
      continue;
    }
    const allowed = Math.min(limits.maxEditLength, edits);
    const structured = structuredPatch(from ? `a/${change.path}` : '/dev/null', to ? `b/${change.path}` : '/dev/null', before, after, undefined, undefined, {
      context: 3,
      maxEditLength: allowed,
    });
    if (structured === undefined) {
      edits -= allowed;
      change.patch_omitted = allowed < limits.maxEditLength ? 'total_patch_limit' : 'too_complex';
      continue;
    }
    edits -= structured.hunks.reduce((n, h) => n + h.lines.filter((l) => l[0] === '+' || l[0] === '-').length, 0);
    // An empty file added or removed has no hunk; its headers alone say so.
    const patch = formatPatch(structured, FILE_HEADERS_ONLY);
    const bytes = enc.encode(patch).byteLength;
    if (bytes > limits.maxPatchBytes) change.patch_omitted = 'patch_too_large';
    else if (total + bytes > limits.maxTotalPatchBytes) change.patch_omitted = 'total_patch_limit';
    else {
      change.patch = patch;
      total += bytes;
    }
  }
  return total;
}
