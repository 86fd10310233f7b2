import { z } from 'zod';

/** Ids are lower-cased so one generation never has two folders. */
export const uuid = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
  .transform((s) => s.toLowerCase());

/** Versions stop well below int4's limit, so "the next version" can never overflow. */
export const MAX_VERSION = 1_000_000_000;

export const saveRequest = z
  .strictObject({
    project_id: uuid.describe('The project this generation belongs to; created, owned by the caller, on first save.'),
    generation_id: uuid.optional().describe('Generated when absent. Re-sending the same generation is idempotent.'),
    version: z.int().min(1).max(MAX_VERSION).optional().describe("Defaults to the project's next version."),
    files: z.record(z.string(), z.string()).describe('Relative path -> UTF-8 content. Paths must be relative, without "..", "\\" or NUL.'),
    metadata: z.record(z.string(), z.unknown()).optional().describe('Free-form JSON object stored in manifest.json.'),
    owner_id: uuid.optional().describe("Service role: the user who owns the generation; required for a project's first generation, optional after (the project's owner; another owner is a 409). A user may send only their own."),
  });

export const listQuery = z.strictObject({
  project_id: uuid,
  limit: z
    .string()
    .regex(/^\d{1,3}$/, 'must be a whole number from 1 to 100')
    .transform(Number)
    .pipe(z.int().min(1, 'must be a whole number from 1 to 100').max(100, 'must be a whole number from 1 to 100'))
    .optional()
    .transform((v) => v ?? 20),
  cursor: z.string().max(64).optional(),
});

/** PATCH /{id}: exactly one field. */
export const pinRequest = z.strictObject({
  pinned: z.boolean().describe('Pinned generations are never removed by the retention policy.'),
});

export const uploadStatus = z.enum(['local', 'pending', 'uploaded', 'failed', 'lost']);

export const generationBody = z
  .object({
    generation_id: z.string(),
    project_id: z.string(),
    version: z.int(),
    file_count: z.int(),
    total_size_bytes: z.int(),
    sha256: z.string().describe('sha256 of the exact tar.gz bytes the download serves'),
    archive_size_bytes: z.int(),
    created_at: z.string(),
    pinned: z.boolean().describe('Kept by the retention policy whatever its age (PATCH /{id} sets it)'),
    download_url: z.string().describe('The tar.gz. Signed; expires after expires_in seconds'),
    zip_url: z.string().describe('The same generation as a zip (GET /{id}/download?format=zip), signed the same way'),
    expires_in: z.int(),
    storage: z.object({
      local_path: z.string().describe('Relative to STORAGE_PATH'),
      cloud_enabled: z.boolean(),
      uploaded: z.boolean(),
      status: uploadStatus,
    }),
  });

export const generationSummary = generationBody
  .omit({ download_url: true, zip_url: true, expires_in: true });

export const listBody = z
  .object({ items: z.array(generationSummary), next_cursor: z.string().nullable() });

/** POST /{id}/restore: an optional body. */
export const restoreRequest = z.strictObject({
  generation_id: uuid.optional().describe("The new generation's id; generated when absent. Sending the same one again is idempotent, like a save."),
});

export const restoredBody = generationBody.extend({
  restored_from: z.object({ generation_id: z.string(), version: z.int() }).describe('Also recorded in the new generation\'s metadata'),
});

const fileDigestBody = z.object({
  size_bytes: z.int(),
  sha256: z.string().describe("sha256 of the file's bytes; its ETag"),
});

export const fileListBody = z.object({
  generation_id: z.string(),
  project_id: z.string(),
  version: z.int(),
  file_count: z.int(),
  total_size_bytes: z.int(),
  files: z.array(
    fileDigestBody.extend({
      path: z.string().describe('Relative to the source folder; GET /{id}/files/{path} serves it'),
      media_type: z.string().describe('By file name; text types are served with charset=utf-8'),
    }),
  ),
});

export const diffQuery = z.strictObject({
  against: uuid.describe('The older side: what {id} is compared with (a generation of the same project)'),
  patch: z.enum(['true', 'false']).optional().describe('Add unified diffs of the changed text files'),
});

export const patchOmitted = z.enum(['binary', 'file_too_large', 'patch_too_large', 'total_patch_limit', 'too_complex']);

const patchFields = {
  patch: z.string().optional().describe('Unified diff (patch=true), ---/+++ a/ and b/ paths, /dev/null for a missing side'),
  patch_omitted: patchOmitted.optional().describe('patch=true, and no patch for this file: why'),
};

export const diffBody = z.object({
  generation_id: z.string(),
  project_id: z.string(),
  version: z.int(),
  against: z.object({ generation_id: z.string(), version: z.int() }),
  added: z.array(fileDigestBody.extend({ path: z.string(), ...patchFields })),
  removed: z.array(fileDigestBody.extend({ path: z.string(), ...patchFields })),
  modified: z.array(z.object({ path: z.string(), from: fileDigestBody, to: fileDigestBody, ...patchFields })),
  unchanged_count: z.int(),
  patch_bytes: z.int().optional().describe('patch=true: the size of every patch in this answer'),
});

export const errorBody = z
  .object({ error: z.object({ code: z.string(), message: z.string() }) });

export const healthBody = z
  .object({
    status: z.enum(['ok', 'degraded']),
    db: z.object({ ok: z.boolean() }),
    storage: z.object({ ok: z.boolean() }),
    cloud: z.object({ enabled: z.boolean(), ok: z.boolean().nullable() }),
    /** Cloud on: archives committed in Postgres and not yet verified in the bucket (null when cloud is off or unknown). */
    outbox: z
      .object({
        rows: z.number().int(),
        bytes: z.number(),
        due: z.number().int(),
        oldest_age_seconds: z.number().nullable(),
      })
      .nullable(),
  });

/** "field.sub: message" for the first few issues: a 400 always names the offending field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const where = i.path.length ? i.path.map(String).join('.') : 'body';
      const keys = i.code === 'unrecognized_keys' ? ` (${i.keys.join(', ')})` : '';
      return `${where}: ${i.message}${keys}`;
    })
    .join('; ');
}
