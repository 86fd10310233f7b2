// Supabase Edge Function `generations`: wires the shared app from Deno.env and serves it. No logic here.
import { loadConfig } from '../_shared/config.ts';
import { createDatabase } from '../_shared/db/database.ts';
import { openPostgres } from '../_shared/db/postgres-driver.ts';
import { createLogger } from '../_shared/log.ts';
import { buildGenerationsApp } from '../_shared/wiring.ts';

const env = Deno.env.toObject();
const config = loadConfig({
  ...env,
  // Supabase provides these; ours may not start with SUPABASE_, so map them here.
  PUBLIC_URL: env.PUBLIC_URL ?? env.SUPABASE_URL,
  DATABASE_URL: env.DATABASE_URL ?? env.SUPABASE_DB_URL,
  STORAGE_PATH: env.STORAGE_PATH ?? '/tmp/codebegen/projects',
  CACHE_PATH: env.CACHE_PATH ?? '/tmp/codebegen/cache',
});
if (!config.databaseUrl) throw new Error('[generations] SUPABASE_DB_URL is required on the edge');
const log = createLogger(config.logLevel);
const db = createDatabase(openPostgres(config.databaseUrl, { max: 1 }));
// Background uploads must outlive the response: Supabase's runtime keeps the worker up for what waitUntil holds.
const edge = (globalThis as { EdgeRuntime?: { waitUntil(work: Promise<unknown>): void } }).EdgeRuntime;
const { app } = buildGenerationsApp(config, db, log, { keepAlive: edge && ((work) => edge.waitUntil(work)) });

Deno.serve(app.fetch);
