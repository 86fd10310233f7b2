import { timingSafeEqual } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
} from 'jose';
import { AppError, ErrorCode, unauthorized } from '../errors.ts';
import { jsonProblem } from '../json-safety.ts';
import type { JwtClaims } from '../db/database.ts';
import type { Principal } from './principal.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Longer tokens are refused before any decoding or hashing (Node's own header limit is 16 KB in all). */
export const MAX_TOKEN_CHARS = 32 * 1024;
/** The claims as serialised into Postgres's `request.jwt.claims`, in UTF-8 bytes. */
export const MAX_CLAIMS_BYTES = 16 * 1024;
/** The audience Supabase Auth gives its access tokens, and the one this API identifies itself by. */
export const AUDIENCE = 'authenticated';

export interface VerifierOptions {
  /** Legacy HS256 project JWT secret. */
  jwtSecret?: string;
  /** The project's JWKS (asymmetric signing keys): `${SUPABASE_URL}/auth/v1/.well-known/jwks.json`. */
  jwksUrl?: string;
  /**
   * The JWKS itself (`SUPABASE_JWKS` on Supabase Edge): verifies without a fetch. A token whose key it lacks (a key
   * added since the worker started) is looked up at `jwksUrl`, when set.
   */
  jwks?: JSONWebKeySet;
  /** An opaque service key (`sb_secret_…`, or the legacy service_role JWT) that also means "the backend". */
  serviceKey?: string;
  /** More such keys: every secret key of `SUPABASE_SECRET_KEYS` (several are valid at once while one is rotated). */
  serviceKeys?: readonly string[];
}

export type Authenticate = (authorization: string | undefined) => Promise<Principal>;

/**
 * Turns `Authorization: Bearer <token>` into a Principal, or throws 401. A Supabase user token
 * (`role: authenticated`, uuid `sub`) is a user; `role: service_role`, or any configured service key itself,
 * is the backend. Anything else — anon key, expired, forged, wrong secret — is 401, with no detail that helps forging.
 * Every signed token must carry `exp`, and an `aud` that includes `authenticated` (required for users; service_role
 * tokens, which Supabase issues without one, may omit it). Its claims must be safe to hand to Postgres (see
 * `claimsProblem`). A malformed header or claim is a 401 `unauthorized` like any other bad token, never a 500.
 */
export function createAuthenticator(opts: VerifierOptions): Authenticate {
  // Both may be set: a project moving to asymmetric keys still has users holding HS256 (legacy secret) tokens.
  const jwks = keySet(opts.jwks, opts.jwksUrl);
  const secret = opts.jwtSecret ? new TextEncoder().encode(opts.jwtSecret) : undefined;
  if (!jwks && !secret) throw new Error('[auth] a JWT secret or a JWKS URL is required (or the JWKS itself)');
  const keyFor = (token: string): Uint8Array | JWTVerifyGetKey | undefined => {
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return undefined;
    }
    // The header is the caller's JSON, read before any signature check: `alg: 123` must not reach a string method.
    if (typeof header.alg !== 'string' || (header.kid !== undefined && typeof header.kid !== 'string')) return undefined;
    return header.alg.startsWith('HS') ? secret : jwks;
  };
  const serviceKeys = [...new Set([opts.serviceKey, ...(opts.serviceKeys ?? [])])]
    .filter((k): k is string => !!k)
    .map((k) => new TextEncoder().encode(k));

  return async (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) throw unauthorized('missing or malformed Authorization header: expected "Bearer <token>"');
    const token = m[1]!;
    if (token.length > MAX_TOKEN_CHARS) throw unauthorized(`invalid token: longer than ${MAX_TOKEN_CHARS} characters`);
    if (serviceKeys.length > 0 && matchesAny(new TextEncoder().encode(token), serviceKeys)) {
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
    const problem = claimsProblem(payload);
    if (problem) throw unauthorized(`invalid token: ${problem}`);
    if (payload.role === 'service_role') return { kind: 'service', claims: payload };
    if (payload.role === 'authenticated' && typeof payload.sub === 'string' && UUID.test(payload.sub)) {
      // Supabase Auth always sets it; a user token without one was not issued for this API.
      if (payload.aud === undefined) throw unauthorized(`invalid token: a user token needs an audience (aud) of "${AUDIENCE}"`);
      return { kind: 'user', userId: payload.sub.toLowerCase(), claims: { ...payload, sub: payload.sub.toLowerCase() } };
    }
    throw unauthorized('token does not identify a signed-in user');
  };
}

/**
 * Why verified claims cannot be accepted, or undefined when they can: no `exp` (RFC 7519 leaves it optional; without
 * it a token would be valid forever), an `aud` present but not naming us, or claims that would break Postgres once
 * serialised into `request.jwt.claims` — NUL or unpaired surrogates in a key or value, nesting deeper than
 * json-safety's bound, or more than MAX_CLAIMS_BYTES.
 */
export function claimsProblem(claims: JwtClaims): string | undefined {
  if (typeof claims.exp !== 'number') return 'it has no expiry (exp)';
  if (claims.aud !== undefined && !audienceIncludes(claims.aud, AUDIENCE)) return `its audience (aud) does not include "${AUDIENCE}"`;
  // Depth first: it is bounded recursion, so the serialisation below never meets a 5,000-deep claim.
  const problem = jsonProblem(claims);
  if (problem) return `its claims are not acceptable: ${problem}`;
  if (new TextEncoder().encode(JSON.stringify(claims)).byteLength > MAX_CLAIMS_BYTES) return `its claims are larger than ${MAX_CLAIMS_BYTES} bytes`;
  return undefined;
}

/** RFC 7519 §4.1.3: `aud` is one string or an array of strings, and must name the recipient. */
function audienceIncludes(aud: unknown, audience: string): boolean {
  if (typeof aud === 'string') return aud === audience;
  return Array.isArray(aud) && aud.every((a) => typeof a === 'string') && aud.includes(audience);
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array) {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/** Compares with every key, not stopping at a match: the time taken says nothing about which key it was. */
function matchesAny(token: Uint8Array, keys: readonly Uint8Array[]): boolean {
  let match = false;
  for (const key of keys) match = constantTimeEqual(token, key) || match;
  return match;
}

/**
 * The asymmetric keys: the inline set first (no fetch), then the URL for a key it does not hold; either alone. jose
 * refuses symmetric algorithms from a key set, so an `oct` member (the CLI puts the JWT secret there) verifies nothing.
 */
function keySet(inline: JSONWebKeySet | undefined, url: string | undefined): JWTVerifyGetKey | undefined {
  const local = inline ? createLocalJWKSet(inline) : undefined;
  const remote = url ? createRemoteJWKSet(new URL(url)) : undefined;
  if (!local || !remote) return local ?? remote;
  return async (header, token) => {
    try {
      return await local(header, token);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey) return remote(header, token);
      throw err;
    }
  };
}

/** The JWKS could not be fetched or read: our dependency failed, not the caller's token (503, not 401). */
function keySetUnreachable(err: unknown): boolean {
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) return true;
  if (!(err instanceof joseErrors.JOSEError)) return true; // fetch failed
  return err.constructor === joseErrors.JOSEError; // jose's plain error for a non-200 JWKS answer
}
