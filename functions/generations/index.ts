// Supabase Edge Function `generations`: wires the shared app from Deno.env and serves it. No logic here.
import { edgeConfig } from '../_shared/edge-config.ts';
import { createDatabase } from '../_shared/db/database.ts';
import { openPostgres } from '../_shared/db/postgres-driver.ts';
import { createLogger } from '../_shared/log.ts';
import { buildApps } from '../_shared/wiring.ts';

const config = edgeConfig(Deno.env.toObject());
const log = createLogger(config.logLevel);
const db = createDatabase(openPostgres(config.databaseUrl!, { max: 1 }));
// Background uploads must outlive the response: Supabase's runtime keeps the worker up for what waitUntil holds.
const edge = (globalThis as { EdgeRuntime?: { waitUntil(work: Promise<unknown>): void } }).EdgeRuntime;
const { app } = buildApps(config, db, log, { keepAlive: edge && ((work) => edge.waitUntil(work)) });

// Supabase's runtime chooses the port; PORT is only for running the entry locally (tests, `deno run`).
const port = Number(Deno.env.get('PORT'));
Deno.serve(port ? { port } : {}, app.fetch);
