import { parseArgs } from 'node:util';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const USAGE = `Usage: npm run migrate -- [options]

Moves every generation under STORAGE_PATH to the Supabase Storage bucket, registers each as uploaded, verifies it.
Settings come from the environment or ./.env: STORAGE_PATH (CodebeGen's storage folder, the one its Python service
writes {project_id}/generations/... into), DATABASE_URL (or PGLITE_DATA_DIR), SUPABASE_URL,
SUPABASE_SERVICE_KEY, SUPABASE_BUCKET, CACHE_PATH. The local files are never modified.

Options:
  --dry-run                 read and pack everything, print what would be uploaded and how each would end; uploads,
                            registers and caches nothing: the report is the one file it writes
  --project-id <uuid>       only this project (repeatable)
  --mapping <file>          .csv or .json: project -> owner, and generation -> project + version for flat folders
  --default-owner <uuid>    owner of projects the mapping does not name
  --concurrency <n>         generations at once (1-64, default 4)
  --no-verify               do not download each upload back to compare size and sha256 (verification is on by default)
  --report <path>           the JSON report (default ./reports/migration-<timestamp>.json)
  --help                    this text

Exit codes: 0 all done, 1 something failed, is invalid or needs attention (an odd version or name, or one version
claimed twice: see the report), 2 bad arguments or settings, 130 interrupted (run again to continue).`;

export interface CliOptions {
  dryRun: boolean;
  projectIds?: Set<string>;
  mapping?: string;
  defaultOwner?: string;
  concurrency: number;
  verify: boolean;
  report?: string;
  help: boolean;
}

/** Parses the command line; `{ error }` names the bad argument (the CLI prints it with the usage and exits 2). */
export function parseCliArgs(argv: readonly string[]): { options: CliOptions } | { error: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        'dry-run': { type: 'boolean', default: false },
        'project-id': { type: 'string', multiple: true },
        mapping: { type: 'string' },
        'default-owner': { type: 'string' },
        concurrency: { type: 'string' },
        'no-verify': { type: 'boolean', default: false },
        report: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    return { error: (err as Error).message };
  }
  const ids = (values['project-id'] ?? []).map((s) => s.toLowerCase());
  const badId = ids.find((s) => !UUID.test(s));
  if (badId) return { error: `--project-id ${JSON.stringify(badId)} is not a uuid` };
  const owner = values['default-owner']?.toLowerCase();
  if (owner !== undefined && !UUID.test(owner)) return { error: `--default-owner ${JSON.stringify(owner)} is not a uuid` };
  let concurrency = 4;
  if (values.concurrency !== undefined) {
    concurrency = /^\d+$/.test(values.concurrency) ? Number(values.concurrency) : NaN;
    if (!(concurrency >= 1 && concurrency <= 64)) return { error: `--concurrency must be a whole number from 1 to 64, got ${JSON.stringify(values.concurrency)}` };
  }
  if (values.mapping !== undefined && !/\.(csv|json)$/i.test(values.mapping)) return { error: `--mapping must be a .csv or .json file, got ${JSON.stringify(values.mapping)}` };
  if (values.report === '') return { error: '--report needs a path' };
  return {
    options: {
      dryRun: values['dry-run'] ?? false,
      projectIds: ids.length ? new Set(ids) : undefined,
      mapping: values.mapping,
      defaultOwner: owner,
      concurrency,
      verify: !values['no-verify'],
      report: values.report,
      help: values.help ?? false,
    },
  };
}
