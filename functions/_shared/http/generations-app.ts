import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { generationDirName } from '../archive/generation-archive.ts';
import type { DownloadSigner } from '../auth/download-token.ts';
import type { Principal } from '../auth/principal.ts';
import type { Authenticate } from '../auth/verify-jwt.ts';
import type { GenerationRecord, GenerationSummary } from '../db/generations-repo.ts';
import { AppError, badRequest, ErrorCode, invalidPath, tooLarge } from '../errors.ts';
import { renderErrors } from './error-handling.ts';
import { jsonProblem } from '../json-safety.ts';
import type { Logger } from '../log.ts';
import type { GenerationService } from '../storage/generation-service.ts';
import { buildOpenApi } from './openapi.ts';
import { describeIssues, listQuery, saveRequest, uuid, type healthBody } from './schemas.ts';
import type { z } from 'zod';

export type HealthReport = z.infer<typeof healthBody>;

export interface GenerationsAppDeps {
  service: GenerationService;
  authenticate: Authenticate;
  downloads: DownloadSigner;
  health: () => Promise<HealthReport>;
  /** Origin the download URLs point at, e.g. http://localhost:54321 or https://<ref>.supabase.co. */
  publicUrl: string;
  cloudEnabled: boolean;
  maxRequestBytes: number;
  corsAllowedOrigins: string[];
  log: Logger;
}

/**
 * The `generations` function: save, list, get, download and delete generations. Served by Supabase at
 * /functions/v1/generations/..., which hands the app the path /generations/..., hence the basePath.
 */
export function createGenerationsApp(deps: GenerationsAppDeps) {
  const { service, log } = deps;
  const app = new Hono({ strict: false }).basePath('/generations');
  const functionUrl = `${deps.publicUrl}/functions/v1/generations`;

  app.use(
    '*',
    cors({
      origin: deps.corsAllowedOrigins.includes('*') ? '*' : deps.corsAllowedOrigins,
      allowHeaders: ['authorization', 'x-client-info', 'apikey', 'content-type'],
      allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      exposeHeaders: ['content-disposition', 'x-checksum-sha256', 'idempotent-replayed'],
      maxAge: 86_400,
    }),
  );
  // One line per request; the path only, never the query (download tokens travel there).
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    log.info('request', { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) });
  });
  renderErrors(app, log);

  const principal = (c: Context) => deps.authenticate(c.req.header('authorization'));
  const idParam = (c: Context) => {
    const parsed = uuid.safeParse(c.req.param('id'));
    if (!parsed.success) throw badRequest(`id: must be a UUID`);
    return parsed.data;
  };
  const summary = (r: GenerationSummary) => ({
    generation_id: r.id,
    project_id: r.projectId,
    version: r.version,
    file_count: r.fileCount,
    total_size_bytes: r.totalSizeBytes,
    sha256: r.archiveSha256,
    archive_size_bytes: r.archiveSizeBytes,
    created_at: r.createdAt.toISOString(),
    storage: {
      local_path: `${r.projectId}/generations/${generationDirName({ version: r.version, generationId: r.id })}`,
      cloud_enabled: deps.cloudEnabled,
      uploaded: r.uploadStatus === 'uploaded',
      status: r.uploadStatus,
    },
  });
  /** With a download URL: Supabase's signed URL once uploaded, our own signed URL before that. */
  const full = async (r: GenerationRecord) => {
    const cloud = await service.cloudUrl(r, deps.downloads.ttlSeconds);
    const local = async () => {
      const { token } = await deps.downloads.sign({ generationId: r.id, ownerId: r.ownerId, archiveSha256: r.archiveSha256 });
      return `${functionUrl}/${r.id}/download?token=${encodeURIComponent(token)}`;
    };
    const { storage, ...rest } = summary(r);
    return {
      ...rest,
      download_url: cloud ?? (await local()),
      expires_in: deps.downloads.ttlSeconds,
      storage,
    };
  };

  app.get('/health', async (c) => {
    const report = await deps.health();
    return c.json(report, report.status === 'ok' ? 200 : 503);
  });

  app.get('/openapi.json', (c) => c.json(buildOpenApi(functionUrl)));

  app.post(
    '/',
    bodyLimit({
      maxSize: deps.maxRequestBytes,
      onError: () => {
        throw tooLarge(`request body over ${deps.maxRequestBytes} bytes`);
      },
    }),
    async (c) => {
      const who = await principal(c);
      const type = c.req.header('content-type') ?? '';
      if (!/^application\/json\b/i.test(type)) {
        throw new AppError(ErrorCode.UnsupportedMediaType, 415, 'content-type must be application/json');
      }
      const json = parseJsonBody(new Uint8Array(await c.req.arrayBuffer()));
      // Checked on the raw JSON: zod's records, like every JS object, would silently drop a "__proto__" key.
      if (isObject(json)) {
        if (isObject(json.files) && Object.hasOwn(json.files, '__proto__')) throw invalidPath('files["__proto__"]: reserved name');
        const problem = jsonProblem(json.metadata);
        if (problem) throw badRequest(`metadata: ${problem}`);
      }
      const parsed = saveRequest.safeParse(json);
      if (!parsed.success) throw badRequest(describeIssues(parsed.error));
      const b = parsed.data;
      const { record, created } = await service.save(who, {
        projectId: b.project_id,
        generationId: b.generation_id,
        version: b.version,
        files: b.files,
        metadata: b.metadata,
        ownerId: b.owner_id,
      });
      if (!created) c.header('idempotent-replayed', 'true');
      c.header('location', `${functionUrl}/${record.id}`);
      return c.json(await full(record), 201);
    },
  );

  app.get('/', async (c) => {
    const who = await principal(c);
    const parsed = listQuery.safeParse(c.req.query());
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const { project_id, limit, cursor } = parsed.data;
    const before = cursor === undefined ? undefined : decodeCursor(cursor);
    const page = await service.list(who, project_id, limit, before);
    const last = page.items.at(-1);
    return c.json({ items: page.items.map(summary), next_cursor: page.more && last ? encodeCursor(last.version) : null });
  });

  app.get('/:id', async (c) => {
    const id = idParam(c);
    return c.json(await full(await service.get(await principal(c), id)));
  });

  app.get('/:id/download', async (c) => {
    const id = idParam(c);
    const token = c.req.query('token');
    let who: Principal;
    let archiveSha256: string | undefined;
    if (token !== undefined) {
      const grant = await deps.downloads.verify(token, id);
      who = { kind: 'user', userId: grant.ownerId, claims: { sub: grant.ownerId, role: 'authenticated' } };
      archiveSha256 = grant.archiveSha256;
    } else {
      who = await principal(c);
    }
    const { record, bytes } = await service.archive(who, id, archiveSha256);
    const etag = `"${record.archiveSha256}"`;
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, { etag });
    const name = `${generationDirName({ version: record.version, generationId: record.id })}.tar.gz`;
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
      'content-type': 'application/gzip',
      'content-length': String(bytes.byteLength),
      'content-disposition': `attachment; filename="${name}"`,
      'x-checksum-sha256': record.archiveSha256,
      etag,
      'cache-control': 'private, no-store',
    });
  });

  app.delete('/:id', async (c) => {
    const id = idParam(c);
    await service.delete(await principal(c), id);
    return c.body(null, 204);
  });

  // Known paths, other methods: 405 with what is allowed (registered last, so only unmatched requests land here).
  const notAllowed = (allow: string) => (c: Context) =>
    c.json({ error: { code: ErrorCode.MethodNotAllowed, message: `${c.req.method} is not allowed here; use ${allow}` } }, 405, { allow });
  app.all('/', notAllowed('GET, POST'));
  app.all('/:id/download', notAllowed('GET'));
  app.all('/:id', notAllowed('GET, DELETE'));

  return app;
}

const encodeCursor = (version: number) => btoa(`v:${version}`).replace(/=+$/, '');

function decodeCursor(cursor: string): number {
  let text = '';
  try {
    text = atob(cursor);
  } catch {
    /* falls through to the error below */
  }
  const m = /^v:(\d{1,10})$/.exec(text);
  // Any version a row can hold (Postgres integer; the migration may register versions above the API's own limit).
  if (!m || Number(m[1]) > 2_147_483_647) throw badRequest('cursor: not a cursor this API returned');
  return Number(m[1]);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body as JSON, refused rather than altered: bytes that are not valid UTF-8 would otherwise be stored as
 * U+FFFD. The 400 names where: the byte offset and the last key before it.
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const before = new TextDecoder().decode(bytes.subarray(0, at));
    const key = [...before.matchAll(/"((?:[^"\\]|\\.){0,200})"\s*:/g)].at(-1)?.[1];
    throw badRequest(`body is not valid UTF-8 (at byte ${at}${key === undefined ? '' : `, in the value of "${key}"`})`, ErrorCode.InvalidJson);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest('body is not valid JSON', ErrorCode.InvalidJson);
  }
}

/** The offset of the first byte that does not start or continue a well-formed UTF-8 sequence. */
function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const x = b[i]!;
    const n = x < 0x80 ? 1 : x >= 0xc2 && x <= 0xdf ? 2 : x >= 0xe0 && x <= 0xef ? 3 : x >= 0xf0 && x <= 0xf4 ? 4 : 0;
    if (n === 0) return i;
    try {
      utf8.decode(b.subarray(i, i + n));
    } catch {
      return i;
    }
    i += n;
  }
  return b.length;
}
