import { createHash } from 'node:crypto';
import { z } from 'zod';
import { byCodePoint } from '../code-point-order.ts';
import type { TreeFile } from './tar-gz.ts';

/**
 * `manifest.json` as CodebeGen's Python service writes it (generation_id, project_id, version, created_at,
 * file_count, total_size_bytes, files, metadata), plus `file_details` (size and sha256 per file) so any copy can be
 * verified file by file. Older manifests without `file_details` still parse.
 */
export const manifestSchema = z.looseObject({
  generation_id: z.string(),
  project_id: z.string(),
  version: z.number().int(),
  created_at: z.string(),
  file_count: z.number().int(),
  total_size_bytes: z.number().int(),
  files: z.array(z.string()),
  metadata: z.record(z.string(), z.unknown()).default({}),
  file_details: z.array(z.object({ path: z.string(), size_bytes: z.number().int(), sha256: z.string() })).optional(),
});
export type Manifest = z.infer<typeof manifestSchema>;

export const sha256Hex = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/** What a manifest records of one file, for callers that never hold the file whole (e.g. hashed from disk). */
export interface FileDigest {
  path: string;
  size: number;
  sha256: string;
}

/** Each file's path, size and sha256, hashed once: pass them to `buildManifest` and `contentDigest` in its place. */
export const fileDigests = (files: readonly TreeFile[]): FileDigest[] => files.map(digestOf);

const digestOf = (f: TreeFile | FileDigest): FileDigest => ('data' in f ? { path: f.path, size: f.data.byteLength, sha256: sha256Hex(f.data) } : f);
const sortedDigests = (files: readonly (TreeFile | FileDigest)[]) => files.map(digestOf).sort((a, b) => byCodePoint(a.path, b.path));

/** Builds the manifest for source files (paths relative to `source/`), sorted by path. */
export function buildManifest(input: {
  generationId: string;
  projectId: string;
  version: number;
  createdAt: Date;
  files: readonly (TreeFile | FileDigest)[];
  metadata: Record<string, unknown>;
}): Manifest {
  const files = sortedDigests(input.files);
  return {
    generation_id: input.generationId,
    project_id: input.projectId,
    version: input.version,
    created_at: input.createdAt.toISOString(),
    file_count: files.length,
    total_size_bytes: files.reduce((n, f) => n + f.size, 0),
    files: files.map((f) => f.path),
    metadata: input.metadata,
    file_details: files.map((f) => ({ path: f.path, size_bytes: f.size, sha256: f.sha256 })),
  };
}

/**
 * Pretty-printed like Python's `json.dumps(manifest, indent=2)`, in a fixed key order (CodebeGen's fields first,
 * then ours, nested keys sorted), so the bytes depend only on the content — not on where the manifest was kept
 * (Postgres jsonb reorders keys).
 */
export function encodeManifest(m: Manifest): Uint8Array {
  const { generation_id, project_id, version, created_at, file_count, total_size_bytes, files, metadata, file_details, ...extra } = m;
  const ordered = {
    generation_id,
    project_id,
    version,
    created_at,
    file_count,
    total_size_bytes,
    files,
    metadata: sortKeysDeep(metadata),
    ...sortKeysDeep(extra),
    file_details: file_details?.map((d) => ({ path: d.path, size_bytes: d.size_bytes, sha256: d.sha256 })),
  };
  return new TextEncoder().encode(JSON.stringify(ordered, null, 2));
}

function sortKeysDeep<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeysDeep) as T;
  if (value && typeof value === 'object') {
    const keys = Object.keys(value).sort(byCodePoint);
    return Object.fromEntries(keys.map((k) => [k, sortKeysDeep((value as Record<string, unknown>)[k])])) as T;
  }
  return value;
}

/** Parses manifest bytes; returns undefined when they are not a manifest (so callers can synthesise one). */
export function parseManifest(bytes: Uint8Array): Manifest | undefined {
  try {
    const parsed = manifestSchema.safeParse(JSON.parse(new TextDecoder().decode(bytes)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A digest of what the caller sent — paths, contents and metadata, independent of key order — so a re-sent
 * generation can be told apart from a different one under the same id.
 */
export function contentDigest(files: readonly (TreeFile | FileDigest)[], metadata: Record<string, unknown>): string {
  const h = createHash('sha256');
  for (const f of sortedDigests(files)) h.update(`${f.path}\0${f.size}\0`).update(f.sha256).update('\0');
  h.update(canonicalJson(metadata));
  return h.digest('hex');
}

/** JSON with object keys sorted at every depth. */
export const canonicalJson = (value: unknown): string => JSON.stringify(sortKeysDeep(value)) ?? 'null';
