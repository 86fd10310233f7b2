/** Stable error codes: callers branch on these, never on messages. */
export const ErrorCode = {
  InvalidRequest: 'invalid_request',
  InvalidJson: 'invalid_json',
  UnsupportedMediaType: 'unsupported_media_type',
  InvalidPath: 'invalid_path',
  PayloadTooLarge: 'payload_too_large',
  /** Request headers over the HTTP parser's limit (Node: 16 KB): answered before any route runs. */
  HeadersTooLarge: 'headers_too_large',
  Unauthorized: 'unauthorized',
  Forbidden: 'forbidden',
  InvalidDownloadToken: 'invalid_download_token',
  DownloadTokenExpired: 'download_token_expired',
  NotFound: 'not_found',
  MethodNotAllowed: 'method_not_allowed',
  GenerationNotFound: 'generation_not_found',
  /** A path that is not one of the generation's files. */
  FileNotFound: 'file_not_found',
  ProjectNotFound: 'project_not_found',
  VersionConflict: 'version_conflict',
  GenerationConflict: 'generation_conflict',
  InvalidArchive: 'invalid_archive',
  ArchiveTooLarge: 'archive_too_large',
  StorageUnavailable: 'storage_unavailable',
  AuthUnavailable: 'auth_unavailable',
  /** Supabase Storage failed in a way worth retrying (5xx, 429, network). */
  CloudUnavailable: 'cloud_unavailable',
  CloudNotFound: 'cloud_object_not_found',
  CloudConflict: 'cloud_conflict',
  /** The service key was refused: a configuration problem, never the caller's. */
  CloudForbidden: 'cloud_forbidden',
  CloudRejected: 'cloud_rejected',
  /** What the cloud returned does not match the recorded sha256. */
  CloudCorrupt: 'cloud_corrupt',
  /** Asked for something only cloud mode has (the upload outbox). */
  CloudDisabled: 'cloud_disabled',
  DatabaseUnavailable: 'database_unavailable',
  Internal: 'internal_error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export type HttpStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 500 | 502 | 503;

/** The one error type: a stable code, the HTTP status it renders as, a caller-safe message and the cause. */
export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    readonly status: HttpStatus,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const badRequest = (message: string, code: ErrorCode = ErrorCode.InvalidRequest) => new AppError(code, 400, message);
export const invalidPath = (message: string) => new AppError(ErrorCode.InvalidPath, 400, message);
export const tooLarge = (message: string) => new AppError(ErrorCode.PayloadTooLarge, 413, message);
export const unauthorized = (message = 'a valid bearer token is required') => new AppError(ErrorCode.Unauthorized, 401, message);
export const forbidden = (message: string) => new AppError(ErrorCode.Forbidden, 403, message);
export const generationNotFound = () => new AppError(ErrorCode.GenerationNotFound, 404, 'generation not found');
export const projectNotFound = () => new AppError(ErrorCode.ProjectNotFound, 404, 'project not found');
export const invalidArchive = (message: string) => new AppError(ErrorCode.InvalidArchive, 422, `invalid archive: ${message}`);
/** 413 `archive_too_large`: an archive over the unpack limits. */
export const archiveTooLarge = (message: string) => new AppError(ErrorCode.ArchiveTooLarge, 413, `archive too large: ${message}`);
export const internal = (message: string, cause?: unknown) => new AppError(ErrorCode.Internal, 500, message, { cause });

/** Renders any thrown value as the public error body; unknown errors never leak their message. */
export function toErrorBody(err: unknown): { status: HttpStatus; body: { error: { code: ErrorCode; message: string } } } {
  const e = err instanceof AppError ? err : new AppError(ErrorCode.Internal, 500, 'internal error');
  return { status: e.status, body: { error: { code: e.code, message: e.message } } };
}
