/**
 * The error codes the API answers with (`{ "error": { "code", "message" } }`, docs/API.md § Errors). Kept in step
 * with the server's list by test/client-types.test.ts.
 */
export const API_ERROR_CODES = [
  'invalid_request',
  'invalid_json',
  'unsupported_media_type',
  'invalid_path',
  'payload_too_large',
  'headers_too_large',
  'unauthorized',
  'forbidden',
  'invalid_download_token',
  'download_token_expired',
  'not_found',
  'method_not_allowed',
  'generation_not_found',
  'file_not_found',
  'project_not_found',
  'version_conflict',
  'generation_conflict',
  'invalid_archive',
  'archive_too_large',
  'storage_unavailable',
  'auth_unavailable',
  'cloud_unavailable',
  'cloud_object_not_found',
  'cloud_conflict',
  'cloud_forbidden',
  'cloud_rejected',
  'cloud_corrupt',
  'cloud_disabled',
  'database_unavailable',
  'internal_error',
] as const;

/**
 * Codes the client itself reports, never the server: the request never got an answer (`network_error`), the
 * answer was not the API's (`invalid_response`: a proxy's HTML page, a body that is not JSON), or downloaded bytes
 * did not match the `X-Checksum-Sha256` the server sent (`checksum_mismatch`).
 */
export const CLIENT_ERROR_CODES = ['network_error', 'invalid_response', 'checksum_mismatch'] as const;

export type ApiErrorCode = (typeof API_ERROR_CODES)[number];
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];
/** Every code this client can throw; `string & {}` keeps codes a newer server adds assignable, with autocompletion for the known ones. */
export type StorageErrorCode = ApiErrorCode | ClientErrorCode | (string & {});

/** The one error every method throws: branch on `code`, show `message`. */
export class StorageApiError extends Error {
  override readonly name = 'StorageApiError';
  /** The API's error code (docs/API.md § Errors), or one of CLIENT_ERROR_CODES. */
  readonly code: StorageErrorCode;
  /** The HTTP status; 0 when no answer came (`network_error`). */
  readonly status: number;
  /** How many requests were sent (more than 1 when the call was retried). */
  readonly attempts: number;
  /** The answer, when there was one (its body is already read). */
  readonly response: Response | undefined;

  constructor(code: StorageErrorCode, status: number, message: string, options: { cause?: unknown; attempts?: number; response?: Response } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = status;
    this.attempts = options.attempts ?? 1;
    this.response = options.response;
  }
}

/** True for a StorageApiError, and, with `code`, only for one with that code. */
export function isStorageApiError(err: unknown, code?: StorageErrorCode): err is StorageApiError {
  return err instanceof StorageApiError && (code === undefined || err.code === code);
}

/** The error an answer that is not 2xx stands for: the API's own `{ error: { code, message } }`, or `invalid_response`. */
export function errorFromAnswer(response: Response, body: unknown, attempts: number): StorageApiError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (e && typeof e.code === 'string') {
    return new StorageApiError(e.code, response.status, typeof e.message === 'string' ? e.message : e.code, { attempts, response });
  }
  const what = typeof body === 'string' && body ? `: ${body.slice(0, 200)}` : '';
  return new StorageApiError('invalid_response', response.status, `HTTP ${response.status} without an API error body${what}`, { attempts, response });
}
