import { Hono, type Context } from 'hono';
import { generationDirName } from '../archive/generation-archive.ts';
import type { Principal } from '../auth/principal.ts';
import { badRequest } from '../errors.ts';
import { matchesEtag } from './etag.ts';
import type { RouteContext } from './route-context.ts';

/**
 * GET /{id}/download[?format=zip]: the archive as the tar.gz it is stored as, or as a zip made from it while it is
 * sent; authorised by a download URL's signed token (the same token serves both formats) or by a bearer token.
 */
export function downloadRoutes(rc: RouteContext): Hono {
  const { deps, idParam } = rc;
  const app = new Hono();

  /** The caller: the owner a signed token names (and the archive it is for), or the bearer token's principal. */
  const downloader = async (c: Context, id: string): Promise<{ who: Principal; archiveSha256?: string }> => {
    const token = c.req.query('token');
    if (token === undefined) return { who: await rc.principal(c) };
    const grant = await deps.downloads.verify(token, id);
    return { who: { kind: 'user', userId: grant.ownerId, claims: { sub: grant.ownerId, role: 'authenticated' } }, archiveSha256: grant.archiveSha256 };
  };

  app.get('/:id/download', async (c) => {
    const id = idParam(c);
    const format = c.req.query('format') ?? 'tar.gz';
    if (format !== 'tar.gz' && format !== 'zip') throw badRequest('format: must be "tar.gz" (the default) or "zip"');
    const { who, archiveSha256 } = await downloader(c, id);
    if (format === 'zip') return zip(c, id, who, archiveSha256);
    const { record, bytes } = await deps.service.archive(who, id, archiveSha256);
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

  /**
   * Streamed as it is made (no Content-Length): its bytes are a function of the archive's, so the ETag is weak and
   * derived from the archive's sha256 (a zip is never stored, and its own digest is known only at its end).
   */
  const zip = async (c: Context, id: string, who: Principal, archiveSha256: string | undefined) => {
    const { record, stream } = await deps.files.zip(who, id, archiveSha256);
    const etag = `W/"${record.archiveSha256}.zip"`;
    if (matchesEtag(c.req.header('if-none-match'), etag)) {
      await stream.cancel();
      return c.body(null, 304, { etag });
    }
    const name = `${generationDirName({ version: record.version, generationId: record.id })}.zip`;
    return c.body(stream as ReadableStream<Uint8Array<ArrayBuffer>>, 200, {
      'content-type': 'application/zip',
      'content-disposition': `attachment; filename="${name}"`,
      etag,
      'cache-control': 'private, no-store',
    });
  };

  return app;
}
