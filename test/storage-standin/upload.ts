import { ERRORS } from './errors.ts';
import { isEmptyFolder, validateMimeType } from './limits.ts';
import type { Incoming } from './routes.ts';

export interface UploadedFile {
  bytes: Uint8Array;
  mimetype: string;
  cacheControl: string;
  userMetadata: Record<string, unknown> | undefined;
  /** A multipart file longer than the limit: refused (413) only after the RLS check, as busboy cuts it. */
  truncated: boolean;
}

const MAX_USER_METADATA = 1024 * 1024;

/**
 * The uploaded file, as the real server's `fileUploadFromRequest` reads it (src/storage/uploader.ts): a multipart
 * form (storage-js sends Blobs so: the file, `cacheControl`, `contentType`, `metadata` fields) or the raw body
 * (type from Content-Type, user metadata base64 JSON in `x-metadata`). The bucket's mime types are checked first;
 * then a raw body declared larger than `maxFileSize` is refused (413) without being stored.
 */
export async function fileFromRequest(req: Incoming, opts: { maxFileSize: number; allowedMimeTypes: readonly string[]; objectName: string }): Promise<UploadedFile> {
  const contentType = req.headers['content-type'];
  const maxFileSize = isEmptyFolder(opts.objectName) ? 0 : opts.maxFileSize;
  const checkMime = (mime: string) => {
    if (opts.allowedMimeTypes.length > 0 && !isEmptyFolder(opts.objectName)) validateMimeType(mime, opts.allowedMimeTypes);
  };

  if (contentType?.startsWith('multipart/form-data')) {
    const form = await new Response(new Uint8Array(await req.bytes()), { headers: { 'content-type': contentType } }).formData().catch(() => {
      throw ERRORS.noContentProvided();
    });
    const file = [...form.values()].find((v): v is File => typeof v !== 'string');
    if (!file) throw ERRORS.noContentProvided();
    const field = (name: string) => {
      const value = form.get(name);
      return typeof value === 'string' ? value : undefined;
    };
    const mimetype = field('contentType') || file.type || 'application/octet-stream';
    checkMime(mimetype);
    const metadata = field('metadata') ?? field('userMetadata');
    if (metadata !== undefined && Buffer.byteLength(metadata) > MAX_USER_METADATA) throw ERRORS.entityTooLarge('user_metadata');
    const cacheTime = field('cacheControl');
    return {
      bytes: new Uint8Array(await file.arrayBuffer()),
      mimetype,
      cacheControl: cacheTime ? `max-age=${cacheTime}` : 'no-cache',
      userMetadata: metadata === undefined ? undefined : parseJson(metadata),
      truncated: file.size > maxFileSize,
    };
  }

  const mimetype = contentType || 'application/octet-stream';
  checkMime(mimetype);
  const xMetadata = req.headers['x-metadata'];
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxFileSize) throw ERRORS.entityTooLarge();
  const bytes = await req.bytes();
  // The real server has no later check for a raw body of unknown length; the stand-in refuses it anyway.
  if (bytes.byteLength > maxFileSize) throw ERRORS.entityTooLarge();
  return {
    bytes,
    mimetype,
    cacheControl: req.headers['cache-control'] ?? 'no-cache',
    userMetadata: typeof xMetadata === 'string' ? parseJson(Buffer.from(xMetadata, 'base64').toString('utf8')) : undefined,
    truncated: false,
  };
}

/** Unparseable metadata is dropped, not refused. */
function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
