import { timingSafeEqual } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { AppError, ErrorCode, unauthorized } from '../errors.ts';
import type { Principal } from './principal.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface VerifierOptions {
  /** Legacy HS256 project JWT secret. */
  jwtSecret?: string;
  /** The project's JWKS (asymmetric signing keys): `${SUPABASE_URL}/auth/v1/.well-known/jwks.json`. */
  jwksUrl?: string;
  /** An opaque service key (`sb_secret_…`, or the legacy service_role JWT) that also means "the backend". */
  serviceKey?: string;
}

export type Authenticate = (authorization: string | undefined) => Promise<Principal>;

/**
 * Turns `Authorization: Bearer <token>` into a Principal, or throws 401. A Supabase user token
 * (`role: authenticated`, uuid `sub`) is a user; `role: service_role`, or the configured service key itself,
 * is the backend. Anything else — anon key, expired, forged, wrong secret — is 401, with no detail that helps forging.
 */
export function createAuthenticator(opts: VerifierOptions): Authenticate {
  // Both may be set: a project moving to asymmetric keys still has users holding HS256 (legacy secret) tokens.
  const jwks: JWTVerifyGetKey | undefined = opts.jwksUrl ? createRemoteJWKSet(new URL(opts.jwksUrl)) : undefined;
  const secret = opts.jwtSecret ? new TextEncoder().encode(opts.jwtSecret) : undefined;
  if (!jwks && !secret) throw new Error('[auth] a JWT secret or a JWKS URL is required');
  const keyFor = (token: string): Uint8Array | JWTVerifyGetKey | undefined => {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      return undefined;
    }
    return alg?.startsWith('HS') ? secret : jwks;
  };
  const serviceKey = opts.serviceKey ? new TextEncoder().encode(opts.serviceKey) : undefined;

  return async (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) throw unauthorized('missing or malformed Authorization header: expected "Bearer <token>"');
    const token = m[1]!;
    if (serviceKey && constantTimeEqual(new TextEncoder().encode(token), serviceKey)) {
      return { kind: 'service', claims: { role: 'service_role' } };
    }
    const key = keyFor(token);
    if (!key) throw unauthorized('invalid token');
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key as Uint8Array, { clockTolerance: 5 }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw unauthorized('token expired');
      if (keySetUnreachable(err)) throw new AppError(ErrorCode.AuthUnavailable, 503, 'cannot verify tokens right now: the signing keys are unreachable', { cause: err });
      throw unauthorized('invalid token');
    }
    if (payload.role === 'service_role') return { kind: 'service', claims: payload };
    if (payload.role === 'authenticated' && typeof payload.sub === 'string' && UUID.test(payload.sub)) {
      return { kind: 'user', userId: payload.sub.toLowerCase(), claims: { ...payload, sub: payload.sub.toLowerCase() } };
    }
    throw unauthorized('token does not identify a signed-in user');
  };
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array) {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/** The JWKS could not be fetched or read: our dependency failed, not the caller's token (503, not 401). */
function keySetUnreachable(err: unknown): boolean {
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) return true;
  if (!(err instanceof joseErrors.JOSEError)) return true; // fetch failed
  return err.constructor === joseErrors.JOSEError; // jose's plain error for a non-200 JWKS answer
}
