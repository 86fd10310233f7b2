import type { Env } from '../../functions/_shared/config.ts';
import type { WiringOptions } from '../../functions/_shared/wiring.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import { appContext, JWT_SECRET, type AppContext } from './context.ts';

/** Retries short enough for tests: one retry, milliseconds apart. */
export const FAST_RETRY = { retries: 1, minTimeoutMs: 5, maxTimeoutMs: 10 };

/**
 * The app in process with cloud storage on, against a Storage stand-in of its own on loopback, its bucket made.
 * `close()` stops both.
 */
export async function cloudAppContext(env: Env = {}, wiring: WiringOptions = {}): Promise<{ ctx: AppContext; standIn: StandIn; close(): Promise<void> }> {
  const standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  const ctx = await appContext({ USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey, ...env }, undefined, { cloudRetry: FAST_RETRY, ...wiring });
  await ctx.cloud!.ensureBucket();
  return {
    ctx,
    standIn,
    close: async () => {
      await ctx.close();
      await standIn.close();
    },
  };
}
