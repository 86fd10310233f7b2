import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FoundLayout, IgnoredEntry } from './discover.ts';

/**
 * What happened to one generation folder:
 * - uploaded: registered, uploaded and (unless --no-verify) verified by size and sha256;
 * - would_upload: the dry run's "uploaded";
 * - already_uploaded: the same generation is already registered and uploaded (nothing done);
 * - needs_mapping: no project/version (flat) or owner for it: the mapping must say;
 * - needs_attention: it looks like a generation but its version or name is odd (version 0, leading zeros, an
 *   upper-case id, a symlink, one id in two places…), or another generation claims its project and version (in
 *   this run or in the database): a person must decide; never migrated as it is;
 * - invalid: the folder cannot be migrated as it is (symlink, special file, odd name, no files, too large);
 * - failed: registering, uploading or verifying failed, or its id is registered with other content;
 * - excluded: not among the --project-id projects;
 * - not_attempted: the run was interrupted before it got there.
 */
export type Outcome = 'uploaded' | 'would_upload' | 'already_uploaded' | 'needs_mapping' | 'needs_attention' | 'invalid' | 'failed' | 'excluded' | 'not_attempted';
export const OUTCOMES: readonly Outcome[] = ['uploaded', 'would_upload', 'already_uploaded', 'needs_mapping', 'needs_attention', 'invalid', 'failed', 'excluded', 'not_attempted'];
/** The outcomes that leave something for the operator to fix (listed in the summary; those but needs_mapping make the CLI exit 1). */
const PROBLEMS: readonly Outcome[] = ['failed', 'invalid', 'needs_attention', 'needs_mapping'];

export interface ReportEntry {
  /** Absent only for a folder needing attention whose name gives none. */
  generation_id?: string;
  layout: FoundLayout;
  /** The folder, relative to STORAGE_PATH. */
  path: string;
  outcome: Outcome;
  reason?: string;
  project_id?: string;
  version?: number;
  owner_id?: string;
  file_count?: number;
  archive_bytes?: number;
  archive_sha256?: string;
  storage_key?: string;
  manifest?: 'disk' | 'synthesised';
  verified?: boolean;
  notes?: string[];
}

export interface MigrationReport {
  started_at: string;
  finished_at: string;
  dry_run: boolean;
  verify: boolean;
  interrupted: boolean;
  storage_path: string;
  bucket?: string;
  project_ids?: string[];
  counts: { found: number } & Record<Outcome, number>;
  /** Archive bytes uploaded (or, in a dry run, that would be). */
  bytes: number;
  seconds: number;
  throughput: { generations_per_second: number; bytes_per_second: number };
  generations: ReportEntry[];
  /** Entries under STORAGE_PATH that are not generations, and why. */
  ignored: IgnoredEntry[];
}

/** Totals the entries into a report. */
export function buildReport(input: Omit<MigrationReport, 'counts' | 'bytes' | 'seconds' | 'throughput'>): MigrationReport {
  const counts = { found: input.generations.length, ...Object.fromEntries(OUTCOMES.map((o) => [o, 0])) } as MigrationReport['counts'];
  let bytes = 0;
  for (const g of input.generations) {
    counts[g.outcome]++;
    if (g.outcome === 'uploaded' || g.outcome === 'would_upload') bytes += g.archive_bytes ?? 0;
  }
  const seconds = Math.max(0, (Date.parse(input.finished_at) - Date.parse(input.started_at)) / 1000);
  const moved = counts.uploaded + counts.would_upload;
  const per = (n: number) => (seconds > 0 ? Math.round((n / seconds) * 100) / 100 : 0);
  return { ...input, counts, bytes, seconds, throughput: { generations_per_second: per(moved), bytes_per_second: per(bytes) } };
}

/** Whether the run left something failed, invalid or needing attention: the CLI exits 1. */
export const hasFailures = (r: MigrationReport) => r.counts.failed + r.counts.invalid + r.counts.needs_attention > 0;

const size = (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

/**
 * The human summary printed at the end of a run, naming the report file (`reportPath`) once it is written. A dry
 * run says plainly that the report is the one file it wrote.
 */
export function formatSummary(r: MigrationReport, reportPath?: string): string {
  const c = r.counts;
  const lines = [
    `${r.dry_run ? 'Dry run' : 'Migration'}${r.interrupted ? ' INTERRUPTED' : ''}: ${c.found} generation folder(s) found under ${r.storage_path}`,
    r.dry_run ? `  would upload      ${c.would_upload} (${size(r.bytes)})` : `  uploaded          ${c.uploaded} (${size(r.bytes)}${r.verify ? ', each verified by size and sha256' : ', NOT verified (--no-verify)'})`,
    `  skipped           ${c.already_uploaded} already uploaded${c.excluded ? `, ${c.excluded} excluded by --project-id` : ''}`,
    `  needing mapping   ${c.needs_mapping}`,
    `  needing attention ${c.needs_attention}${c.needs_attention ? ' (odd version or name, or a version claimed twice: see below)' : ''}`,
    `  invalid           ${c.invalid}`,
    `  failed            ${c.failed}`,
  ];
  if (c.not_attempted) lines.push(`  not attempted     ${c.not_attempted} (interrupted: run again to continue)`);
  lines.push(`  other entries     ${r.ignored.length} not generations (listed in the report)`);
  lines.push(`  time              ${r.seconds.toFixed(1)} s, ${r.throughput.generations_per_second} generations/s, ${size(r.throughput.bytes_per_second)}/s`);
  const problems = r.generations.filter((g) => PROBLEMS.includes(g.outcome));
  for (const g of problems.slice(0, 20)) lines.push(`  ${g.outcome.padEnd(15)} ${g.path}: ${g.reason}`);
  if (problems.length > 20) lines.push(`  … and ${problems.length - 20} more in the report`);
  if (r.dry_run) {
    lines.push('Nothing was uploaded, registered or cached, and nothing under STORAGE_PATH was touched.');
    lines.push(reportPath ? `The one file this dry run wrote is its report: ${reportPath}` : 'No report file was written.');
  } else if (reportPath) lines.push(`Report: ${reportPath}`);
  return lines.join('\n');
}

export async function writeReport(path: string, report: MigrationReport): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
}
