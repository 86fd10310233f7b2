import type { Context } from 'hono';
import type { z } from 'zod';
import type { DownloadSigner } from '../auth/download-token.ts';
import type { Principal } from '../auth/principal.ts';
import type { Authenticate } from '../auth/verify-jwt.ts';
import { badRequest } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { GenerationFiles } from '../storage/generation-files.ts';
import type { GenerationService } from '../storage/generation-service.ts';
import { generationViews, type GenerationViews } from './generation-views.ts';
import { uuid, type healthBody } from './schemas.ts';

export type HealthReport = z.infer<typeof healthBody>;

export interface GenerationsAppDeps {
  service: GenerationService;
  /** File listings, single files, diffs and zips. */
  files: GenerationFiles;
  authenticate: Authenticate;
  downloads: DownloadSigner;
  health: () => Promise<HealthReport>;
  /** Origin the download URLs point at, e.g. http://localhost:54321 or https://<ref>.supabase.co. */
  publicUrl: string;
  cloudEnabled: boolean;
  maxRequestBytes: number;
  corsAllowedOrigins: string[];
  log: Logger;
}

/** What every route group of the `generations` function shares: its dependencies and a few request helpers. */
export interface RouteContext {
  deps: GenerationsAppDeps;
  /** The function's public URL, e.g. http://localhost:54321/functions/v1/generations. */
  functionUrl: string;
  /** The caller, from the Authorization header (401 without a valid one). */
  principal(c: Context): Promise<Principal>;
  /** The `:id` path parameter as a lower-cased UUID (400 otherwise). */
  idParam(c: Context): string;
  views: GenerationViews;
}

export function routeContext(deps: GenerationsAppDeps): RouteContext {
  const functionUrl = `${deps.publicUrl}/functions/v1/generations`;
  return {
    deps,
    functionUrl,
    principal: (c) => deps.authenticate(c.req.header('authorization')),
    idParam: (c) => parseId(c.req.param('id'), 'id'),
    views: generationViews({ service: deps.service, downloads: deps.downloads, functionUrl, cloudEnabled: deps.cloudEnabled }),
  };
}

/** A generation id from the caller (path or query), lower-cased; 400 naming `field` otherwise. */
export function parseId(value: string | undefined, field: string): string {
  const parsed = uuid.safeParse(value);
  if (!parsed.success) throw badRequest(`${field}: must be a UUID`);
  return parsed.data;
}
