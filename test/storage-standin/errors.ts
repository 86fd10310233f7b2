/**
 * The error bodies of supabase/storage (src/internal/errors/codes.ts + src/http/error-handler.ts):
 * `{ statusCode: "<status as string>", code, error: <legacy name or code>, message }`, sent with HTTP 400
 * unless the status is 500 (or the error is a gateway/overload answer, which keeps its own status).
 */
export class StorageFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly legacyError: string = code,
    /** HTTP status on the wire: the real server answers 400 for every error but 500 (and 429/5xx from overload). */
    readonly httpStatus: number = status === 500 ? 500 : 400,
  ) {
    super(message);
  }

  body() {
    return { statusCode: String(this.status), code: this.code, error: this.legacyError, message: this.message };
  }
}

export const ERRORS = {
  noSuchBucket: () => new StorageFailure(404, 'NoSuchBucket', 'Bucket not found', 'Bucket not found'),
  noSuchKey: () => new StorageFailure(404, 'NoSuchKey', 'Object not found', 'not_found'),
  bucketAlreadyExists: () => new StorageFailure(409, 'BucketAlreadyExists', 'The resource already exists', 'Duplicate'),
  keyAlreadyExists: () => new StorageFailure(409, 'KeyAlreadyExists', 'The resource already exists', 'Duplicate'),
  bucketNotEmpty: () => new StorageFailure(409, 'ResourceNotEmpty', 'The bucket you tried to delete is not empty'),
  /** Bad bearer JWT (jose's message, e.g. "signature verification failed") or a write RLS refuses. */
  accessDenied: (message: string) => new StorageFailure(403, 'AccessDenied', message, 'Unauthorized'),
  rlsViolation: () => ERRORS.accessDenied('new row violates row-level security policy'),
  /** A service-role-only route (`enforceJwtRoles`) called with another role: the one error sent with HTTP 403. */
  invalidRole: () => new StorageFailure(403, 'AccessDenied', 'Access denied: Invalid role', 'Unauthorized', 403),
  /** Bad signed-URL token: jose's message, e.g. `"exp" claim timestamp check failed`. */
  invalidJwt: (message: string) => new StorageFailure(400, 'InvalidJWT', message),
  invalidSignature: (message = 'Invalid signature') => new StorageFailure(400, 'InvalidSignature', message),
  entityTooLarge: (entity = 'object') => new StorageFailure(413, 'EntityTooLarge', `The ${entity} exceeded the maximum allowed size`, 'Payload too large'),
  invalidMimeType: (mime: string) => new StorageFailure(415, 'InvalidMimeType', `mime type ${mime} is not supported`, 'invalid_mime_type'),
  invalidBucketName: () => new StorageFailure(400, 'InvalidBucketName', 'Bucket name invalid', 'Invalid Input'),
  invalidKey: (key: string) => new StorageFailure(400, 'InvalidKey', `Invalid key: ${key}`),
  invalidRequest: (message: string) => new StorageFailure(400, 'InvalidRequest', message),
  invalidFileSizeLimit: () => ERRORS.invalidRequest('Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B'),
  noContentProvided: () => ERRORS.invalidRequest('No content provided'),
  invalidParameter: (name: string) => new StorageFailure(400, 'InvalidParameter', `Invalid Parameter ${name}`),
  invalidRange: () => new StorageFailure(416, 'InvalidRange', 'invalid range provided', 'invalid_range', 416),
  /**
   * A schema validation failure as Fastify reports it: the validator's wording, `error` is the Error's name
   * ("Error"), the code InvalidRequest (its ERROR_CODE_MAP entry for FST_ERR_VALIDATION).
   */
  validation: (message: string) => new StorageFailure(400, 'InvalidRequest', message, 'Error'),
  /** Postgres refused a query; e.g. 22023 for `set_config('role', …)` with a role that does not exist. */
  database: (pgCode: string) => new StorageFailure(500, 'DatabaseError', `database error, code: ${pgCode}`),
};

/** Bodies for injected faults: what the real server (500, 429) or its overload path (503) answers. */
export function faultFailure(status: 500 | 503 | 429): StorageFailure {
  if (status === 429) return new StorageFailure(429, 'SlowDown', 'Too many connections issued to the database', 'too_many_connections', 429);
  if (status === 503) return new StorageFailure(503, 'LockTimeout', 'acquiring lock timeout', 'acquiring_lock_timeout', 503);
  return new StorageFailure(500, 'InternalError', 'Internal server error');
}
