import { Hono, type Context } from 'hono';
import type { z } from 'zod';
import { invalidPath } from '../errors.ts';
import { matchesEtag } from './etag.ts';
import { contentTypeOf, isTextMediaType, mediaTypeOf } from './media-types.ts';
import type { RouteContext } from './route-context.ts';
import type { fileListBody } from './schemas.ts';

/**
 * A generation's files: GET /{id}/files lists them from the recorded manifest; GET /{id}/files/{path} serves one,
 * `path` with its slashes as they are (or percent-encoded, `app%2Fmain.py`: the same file).
 */
export function filesRoutes(rc: RouteContext): Hono {
  const { deps, principal, idParam } = rc;
  const app = new Hono();

  app.get('/:id/files', async (c) => {
    const id = idParam(c);
    const { record, files } = await deps.files.list(await principal(c), id);
    const body: z.input<typeof fileListBody> = {
      generation_id: record.id,
      project_id: record.projectId,
      version: record.version,
      file_count: files.length,
      total_size_bytes: files.reduce((n, f) => n + f.size, 0),
      files: files.map((f) => ({ path: f.path, size_bytes: f.size, sha256: f.sha256, media_type: mediaTypeOf(f.path) })),
    };
    return c.json(body);
  });

  app.get('/:id/files/*', async (c) => {
    const id = idParam(c);
    const path = filePathOf(c);
    const opened = await deps.files.open(await principal(c), id, path);
    const etag = `"${opened.file.sha256}"`;
    const common = { etag, 'cache-control': 'private, no-cache', 'x-checksum-sha256': opened.file.sha256 };
    if (matchesEtag(c.req.header('if-none-match'), etag)) return c.body(null, 304, common);
    const bytes = await opened.read();
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
      ...common,
      'content-type': servedType(opened.file.path, bytes),
      'content-length': String(bytes.byteLength),
      'content-disposition': inlineDisposition(opened.file.path),
      // Served from the API's origin: never sniffed into something else, never run as a page (an .html, an .svg).
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; sandbox",
    });
  });

  return app;
}

/**
 * The file path of /generations/{id}/files/{path}, from the raw URL (routers decode `%2F` and `%25` unevenly):
 * each segment percent-decoded once, joined with "/". Whether it could name a file (no "..", NUL, "\"…) is the
 * secure-path check's, when the file is looked up.
 */
export function filePathOf(c: Context): string {
  const segments = new URL(c.req.url).pathname.split('/');
  const at = segments.indexOf('generations');
  const rest = segments.slice(at + 3);
  if (at < 0 || segments[at + 2] !== 'files' || rest.length === 0) throw invalidPath('path: must name a file');
  try {
    return rest.map((s) => decodeURIComponent(s)).join('/');
  } catch {
    throw invalidPath('path: not valid percent-encoding');
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The name's type; a "text" file that is not UTF-8 (a migrated one) goes as bytes rather than with a false charset. */
function servedType(path: string, bytes: Uint8Array): string {
  if (!isTextMediaType(mediaTypeOf(path))) return contentTypeOf(path);
  try {
    utf8.decode(bytes);
    return contentTypeOf(path);
  } catch {
    return 'application/octet-stream';
  }
}

/** `inline`, with the file's name: ASCII for old clients, RFC 5987 UTF-8 for the rest. */
function inlineDisposition(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `inline; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
