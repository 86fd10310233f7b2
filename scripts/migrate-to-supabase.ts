// `npm run migrate -- [options]`: moves every local generation to the Supabase bucket. See docs/MIGRATION.md.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { ConfigError, loadConfig, type Config } from '../functions/_shared/config.ts';
import { createDatabase, type Database } from '../functions/_shared/db/database.ts';
import { openPGlite } from '../functions/_shared/db/pglite-driver.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { createLogger, type LogLevel } from '../functions/_shared/log.ts';
import { parseCliArgs, USAGE, type CliOptions } from '../functions/_shared/migration/cli-args.ts';
import { emptyMapping, MappingError, parseMapping, type OwnerMapping } from '../functions/_shared/migration/owner-mapping.ts';
import { formatSummary, hasFailures, writeReport } from '../functions/_shared/migration/report.ts';
import { isInsideReal, runMigration, type MigrationProgress } from '../functions/_shared/migration/runner.ts';
import { SupabaseCloudStore } from '../functions/_shared/stores/cloud-store.ts';
import { openLocked } from './data-dir-lock.ts';
import { loadDotEnv } from './local-env.ts';
import { openDatabase } from './node-host.ts';

/** A problem with the arguments or settings: printed, exit 2, nothing done. */
class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCliArgs(argv);
  if ('error' in parsed) throw new UsageError(`${parsed.error}\n\n${USAGE}`);
  const opts = parsed.options;
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  loadDotEnv();
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  const { url, serviceKey, bucket } = config.supabase;
  if (!opts.dryRun && (!url || !serviceKey)) {
    throw new UsageError('[migration] SUPABASE_URL and SUPABASE_SERVICE_KEY (or SUPABASE_SERVICE_ROLE_KEY) must be set for a real run (--dry-run needs neither)');
  }
  if (!existsSync(config.storagePath) || !statSync(config.storagePath).isDirectory()) {
    const what = process.env.STORAGE_PATH ? `STORAGE_PATH ${config.storagePath}` : `STORAGE_PATH is not set, and its default ${config.storagePath}`;
    throw new UsageError(
      `[migration] ${what} ${existsSync(config.storagePath) ? 'is not a folder' : 'does not exist'}.\n` +
        `STORAGE_PATH must point at CodebeGen's storage folder: the one its Python service writes\n` +
        `{project_id}/generations/v{version}__{generation_id}/ into. Set it in ./.env, or for one run:\n` +
        `  STORAGE_PATH=/path/to/codebegen/storage npm run migrate -- --dry-run --mapping owners.csv`,
    );
  }
  const mapping = await loadMapping(opts);
  const reportPath = resolve(opts.report ?? `reports/migration-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  if (await isInsideReal(config.storagePath, reportPath)) throw new UsageError('[migration] --report must not be inside STORAGE_PATH (the local files are never written)');

  const level = (process.env.LOG_LEVEL as LogLevel | undefined) ?? 'warn';
  const progress = createProgress();
  const log = createLogger(level, (line) => progress.log(line));
  const db = opts.dryRun ? await openForReading(config) : await openDatabase(config, log);
  const cloud = opts.dryRun ? undefined : new SupabaseCloudStore({ url: url!, serviceKey: serviceKey!, bucket, fileSizeLimit: config.supabase.uploadLimitBytes }, log);

  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130); // a second Ctrl-C: stop now; the next run resumes
    process.stderr.write('\nStopping: finishing the generations under way (Ctrl-C again to stop at once)…\n');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    await cloud?.ensureBucket();
    const report = await runMigration(
      { db, cloud, log },
      {
        storagePath: config.storagePath,
        dryRun: opts.dryRun,
        verify: opts.verify,
        concurrency: opts.concurrency,
        projectIds: opts.projectIds,
        mapping,
        defaultOwner: opts.defaultOwner,
        limits: config.limits,
        cacheDir: config.cachePath,
        signal: abort.signal,
        onProgress: (p) => progress.update(p),
      },
    );
    progress.stop();
    await writeReport(reportPath, report);
    if (opts.dryRun) {
      for (const g of report.generations.filter((e) => e.outcome === 'would_upload')) {
        console.log(`would upload ${g.storage_key} (${g.archive_bytes} bytes, ${g.file_count} files, owner ${g.owner_id})`);
      }
      if (!db) console.log('(no database to consult: what is already registered, and versions the database already holds, are not known)');
    }
    const shown = relative(process.cwd(), reportPath);
    console.log(formatSummary(report, shown && !shown.startsWith('..') ? shown : reportPath));
    if (report.interrupted) return 130;
    return hasFailures(report) ? 1 : 0;
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
    await db?.close();
  }
}

async function loadMapping(opts: CliOptions): Promise<OwnerMapping> {
  if (!opts.mapping) return emptyMapping();
  let text: string;
  try {
    text = await readFile(opts.mapping, 'utf8');
  } catch (err) {
    throw new UsageError(`[migration] cannot read --mapping ${opts.mapping}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return parseMapping(text, opts.mapping.toLowerCase().endsWith('.json') ? 'json' : 'csv');
  } catch (err) {
    if (err instanceof MappingError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * The dry run only reads: it opens the database without applying migrations, and not at all when the embedded
 * one has never been created. Without a database it cannot tell what is already uploaded. The embedded one is
 * locked all the same (opening and closing PGlite writes to it): a running server makes this stop at once.
 */
async function openForReading(config: Config): Promise<Database | undefined> {
  if (!config.databaseUrl && !existsSync(config.pgliteDataDir)) return undefined;
  const dataDir = config.pgliteDataDir;
  const db = createDatabase(config.databaseUrl ? openPostgres(config.databaseUrl) : await openLocked(dataDir, () => openPGlite(dataDir)));
  try {
    await db.asService((tx) => tx.query('select 1 from public.generations limit 1'));
    return db;
  } catch {
    await db.close();
    return undefined;
  }
}

/** A bar on a terminal; a plain line every 25 generations or 10 seconds otherwise. Log lines go to stderr either way. */
function createProgress() {
  if (process.stderr.isTTY) {
    const multi = new cliProgress.MultiBar(
      { stream: process.stderr, format: ' {bar} {value}/{total} generations | {uploaded} ok, {failed} failed | {mib} MiB | ETA {eta_formatted}', hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    let bar: cliProgress.SingleBar | undefined;
    const tally = { uploaded: 0, failed: 0 };
    return {
      update(p: MigrationProgress) {
        bar ??= multi.create(p.total, 0, { uploaded: 0, failed: 0, mib: '0.0' });
        if (p.entry.outcome === 'uploaded' || p.entry.outcome === 'would_upload') tally.uploaded++;
        if (p.entry.outcome === 'failed' || p.entry.outcome === 'invalid') tally.failed++;
        bar.update(p.done, { ...tally, mib: (p.bytes / 1024 / 1024).toFixed(1) });
      },
      log: (line: string) => multi.log(`${line}\n`),
      stop: () => multi.stop(),
    };
  }
  let last = Date.now();
  return {
    update(p: MigrationProgress) {
      if (p.done % 25 === 0 || p.done === p.total || Date.now() - last > 10_000) {
        last = Date.now();
        process.stderr.write(`progress: ${p.done}/${p.total} generations, ${(p.bytes / 1024 / 1024).toFixed(1)} MiB\n`);
      }
    },
    log: (line: string) => process.stderr.write(`${line}\n`),
    stop: () => {},
  };
}


main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof UsageError ? err.message : `[migration] stopped: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
