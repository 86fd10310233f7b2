import { createHmac } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { AppError, ErrorCode } from '../errors.ts';

const AUDIENCE = 'codebegen-storage/download';

export interface DownloadGrant {
  generationId: string;
  ownerId: string;
  /** The exact archive the link is for: a generation deleted and saved again under its id has other bytes. */
  archiveSha256: string;
}

export interface DownloadSigner {
  readonly ttlSeconds: number;
  /** A token that lets whoever holds it download one generation's exact archive until it expires. */
  sign(grant: DownloadGrant): Promise<{ token: string; expiresAt: Date }>;
  /** Checks a token against the generation asked for; 401 if expired, tampered or for another generation. */
  verify(token: string, generationId: string): Promise<DownloadGrant>;
}

/**
 * Signed download URLs for the local path: HS256 JWTs binding generation, owner, archive sha256 and expiry.
 * Downloads are still run as the owner in the token, so RLS has the last word.
 */
export function createDownloadSigner(secret: Uint8Array, ttlSeconds: number, now: () => number = Date.now): DownloadSigner {
  return {
    ttlSeconds,
    async sign({ generationId, ownerId, archiveSha256 }) {
      const iat = Math.floor(now() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({ gid: generationId, sha: archiveSha256 })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(ownerId)
        .setAudience(AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(secret);
      return { token, expiresAt: new Date(exp * 1000) };
    },
    async verify(token, generationId) {
      let payload;
      try {
        ({ payload } = await jwtVerify(token, secret, { audience: AUDIENCE, algorithms: ['HS256'], currentDate: new Date(now()) }));
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw new AppError(ErrorCode.DownloadTokenExpired, 401, 'download link expired: ask for a new one');
        throw new AppError(ErrorCode.InvalidDownloadToken, 401, 'invalid download token');
      }
      if (payload.gid !== generationId || typeof payload.sub !== 'string' || typeof payload.sha !== 'string') {
        throw new AppError(ErrorCode.InvalidDownloadToken, 401, 'invalid download token');
      }
      return { generationId, ownerId: payload.sub, archiveSha256: payload.sha };
    },
  };
}

/**
 * The download-signing key: DOWNLOAD_TOKEN_SECRET; else derived (HMAC, never the secret itself) from the JWT
 * secret, or from the service key — which every Supabase Edge Function has.
 */
export function downloadKey(opts: { downloadTokenSecret?: string; jwtSecret?: string; serviceKey?: string }): Uint8Array {
  if (opts.downloadTokenSecret) return new TextEncoder().encode(opts.downloadTokenSecret);
  const base = opts.jwtSecret ?? opts.serviceKey;
  if (!base) throw new Error('[auth] DOWNLOAD_TOKEN_SECRET, SUPABASE_JWT_SECRET or the service key is required to sign download URLs');
  return new Uint8Array(createHmac('sha256', base).update(AUDIENCE).digest());
}
