import { ERRORS } from './errors.ts';

// The real server's name, size and mime-type rules (src/storage/limits.ts, src/storage/uploader.ts,
// src/storage/storage.ts).

const VALID_OBJECT_KEY = /^[A-Za-z0-9_/!.*'() &$=@;:+,?-]*$/;
const VALID_BUCKET_NAME = /^[A-Za-z0-9_!.*'() &$=@;:+,?-]*$/;

export function mustBeValidKey(key: string): void {
  if (!key || !VALID_OBJECT_KEY.test(key)) throw ERRORS.invalidKey(key);
}

export function mustBeValidBucketName(name: string): void {
  if (!name || name.length > 100 || !VALID_BUCKET_NAME.test(name)) throw ERRORS.invalidBucketName();
}

/** Folder placeholders (`…/.emptyFolderPlaceholder`) are held to 0 bytes and skip the mime check. */
export function isEmptyFolder(key: string): boolean {
  return key.endsWith('.emptyFolderPlaceholder');
}

/** `"1MB"` -> 1,000,000: decimal units, fractions allowed, three significant digits (`"1.5KB"` -> 1500). */
export function parseFileSizeToBytes(value: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(gb|mb|kb|b)$/i.exec(value);
  if (!match) throw ERRORS.invalidFileSizeLimit();
  const amount = Number(parseFloat(match[1]!).toPrecision(3));
  return amount * { GB: 1e9, MB: 1e6, KB: 1e3, B: 1 }[match[2]!.toUpperCase() as 'B'];
}

/** A bucket's `file_size_limit` as stored: never above the project's global upload limit (413 if it is). */
export function parseBucketSizeLimit(value: unknown, globalLimit: number): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === null) return null;
  const bytes = typeof value === 'string' ? parseFileSizeToBytes(value) : (value as number);
  if (bytes > globalLimit) throw ERRORS.entityTooLarge();
  return bytes;
}

/** What an upload may weigh: the global limit, lowered by the bucket's own. */
export function maxUploadSize(globalLimit: number, bucketLimit: number | null): number {
  return bucketLimit === null ? globalLimit : Math.min(bucketLimit, globalLimit);
}

/**
 * The content type must equal an allowed `type/sub` (or match `type/*`) exactly: the real server splits on `/`
 * and compares strings, so parameters are not stripped (`application/gzip; charset=binary` is refused).
 */
export function validateMimeType(mimeType: string, allowed: readonly string[]): void {
  const [type, sub] = mimeType.split('/');
  if (sub === undefined) throw ERRORS.invalidMimeType(mimeType);
  for (const entry of allowed) {
    const [allowedType, allowedSub] = entry.split('/');
    if (allowedType === type && (allowedSub === '*' || allowedSub === sub)) return;
  }
  throw ERRORS.invalidMimeType(mimeType);
}

/** A bucket's `allowed_mime_types` entries: `type/sub` with an optional charset, or a wildcard. */
export function validateAllowedMimeTypes(types: readonly string[]): void {
  for (const type of types) {
    if (type.length > 1000 || !/^([a-zA-Z0-9\-+.]+)\/([a-zA-Z0-9\-+.]+)(;\s*charset=[a-zA-Z0-9-]+)?$|\*$/.test(type)) throw ERRORS.invalidMimeType(type);
  }
}
