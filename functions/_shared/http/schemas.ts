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
    download_url: z.string().describe('Signed; expires after expires_in seconds'),
    expires_in: z.int(),
    storage: z.object({
      local_path: z.string().describe('Relative to STORAGE_PATH'),
      cloud_enabled: z.boolean(),
      uploaded: z.boolean(),
      status: uploadStatus,
    }),
  });

export const generationSummary = generationBody
  .omit({ download_url: true, expires_in: true });

export const listBody = z
  .object({ items: z.array(generationSummary), next_cursor: z.string().nullable() });

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
