// Supabase Edge Function `storage-maintenance`: pg_cron POSTs here (via pg_net, with the service key) to clean the
// cache, retry or give up on uploads, and report orphans. Wires the shared app from Deno.env; no logic here.
import { edgeConfig } from '../_shared/edge-config.ts';
import { createDatabase } from '../_shared/db/database.ts';
import { openPostgres } from '../_shared/db/postgres-driver.ts';
import { createLogger } from '../_shared/log.ts';
import { buildApps } from '../_shared/wiring.ts';

const config = edgeConfig(Deno.env.toObject());
const log = createLogger(config.logLevel);
const db = createDatabase(openPostgres(config.databaseUrl!, { max: 1 }));
const { maintenanceApp } = buildApps(config, db, log);

// Supabase's runtime chooses the port; PORT is only for running the entry locally (tests, `deno run`).
const port = Number(Deno.env.get('PORT'));
Deno.serve(port ? { port } : {}, maintenanceApp.fetch);
