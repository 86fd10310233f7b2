// Memory: peak RSS while packing a 200 MB generation from disk and while unpacking it back to disk, with the
// streaming packer and unpacker (functions/_shared/archive); target ≤ 150 MB each, so it fits an edge worker.
//   node --import tsx bench/memory.ts [--quick]          (--quick: a 20 MB generation)
// The tree: many Python files plus a few large data files, all generated text (compressible, not trivially).
// Each operation runs in a child process of its own (same imports), so its peak RSS
// (`process.resourceUsage().maxRSS`) is that operation's alone; a child that only starts up gives the baseline.
// For contrast, the buffered way (every file read into memory, `packTree` / `unpackTree`) runs the same way.
// The unpacked tree is compared with the original, file by file. The final line is the JSON of named figures.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, createReadStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { unpackToDirectory } from '../functions/_shared/archive/disk-tree.ts';
import { packTree, packTreeStream, unpackTree } from '../functions/_shared/archive/tar-gz.ts';
import { diskFiles } from './lib/disk-files.ts';
import { sourceFiles } from './lib/sample-source.ts';
import { round } from './lib/stats.ts';
import { formatTable } from './lib/table.ts';

const { values, positionals } = parseArgs({ options: { quick: { type: 'boolean' }, child: { type: 'string' } }, allowPositionals: true });
const MTIME = new Date('2026-01-02T03:04:05Z');
const ROOT = 'v1__00000000-0000-4000-8000-000000000200';
const MB = 2 ** 20;
const LIMITS = { maxEntries: 100_000, maxFileBytes: 64 * MB, maxTotalBytes: 512 * MB };

interface ChildResult {
  maxRssMb: number;
  ms: number;
  bytes?: number;
}

/** One operation, in this (child) process; its figures as the last line. */
async function child(op: string, args: string[]): Promise<void> {
  const started = performance.now();
  let bytes: number | undefined;
  if (op === 'pack' || op === 'buffered-pack') {
    const [dir, out] = args as [string, string];
    const listed = await diskFiles(dir);
    if (op === 'pack') {
      const fh = await open(out, 'w');
      bytes = 0;
      try {
        for await (const chunk of packTreeStream({ root: ROOT, files: listed, mtime: MTIME })) {
          bytes += chunk.byteLength;
          await fh.write(chunk);
        }
      } finally {
        await fh.close();
      }
    } else {
      const files = await Promise.all(listed.map(async (f) => ({ path: f.path, data: new Uint8Array(await readFile(join(dir, f.path))) })));
      const gz = await packTree({ root: ROOT, files, mtime: MTIME });
      await writeFile(out, gz);
      bytes = gz.byteLength;
    }
  } else if (op === 'unpack') {
    const [archive, dest] = args as [string, string];
    const listing = await unpackToDirectory(createReadStream(archive, { highWaterMark: 256 * 1024 }), dest, LIMITS, ROOT);
    bytes = listing.files.reduce((n, f) => n + f.size, 0);
  } else if (op === 'buffered-unpack') {
    const tree = await unpackTree(new Uint8Array(await readFile(args[0]!)), LIMITS);
    bytes = tree.files.reduce((n, f) => n + f.data.byteLength, 0);
  } else if (op !== 'baseline') throw new Error(`unknown child operation ${op}`);
  const result: ChildResult = { maxRssMb: process.resourceUsage().maxRSS / 1024, ms: performance.now() - started, bytes };
  console.log(JSON.stringify(result));
}

/** Runs one operation in a child process (this file, same imports); its figures. */
function runChild(op: string, ...args: string[]): ChildResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', op, ...args], { encoding: 'utf8', maxBuffer: 16 * MB });
  if (r.status !== 0) throw new Error(`child ${op} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!) as ChildResult;
}

/** Writes the generation: Python files of ~64 KB, and a few large data files built from 1 MB pieces. */
function writeTree(dir: string, textMb: number, largeFiles: number, largeMb: number): void {
  const put = (path: string, text: string, append = false) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    (append ? appendFileSync : writeFileSync)(join(dir, path), text);
  };
  const perBatch = 16;
  for (let batch = 0; batch * perBatch * 64 * 1024 < textMb * MB; batch++) {
    for (const [path, text] of Object.entries(sourceFiles(`memory-${batch}`, perBatch, 64 * 1024))) put(`source/b${batch}/${path}`, text);
  }
  for (let i = 0; i < largeFiles; i++) {
    for (let piece = 0; piece < largeMb; piece++) put(`source/data/dataset_${i}.py`, Object.values(sourceFiles(`large-${i}-${piece}`, 1, MB))[0]!, piece > 0);
  }
  put('manifest.json', '{}\n');
  mkdirSync(join(dir, 'artifacts'), { recursive: true });
}

/** Files under `dir` as one digest (paths and contents), with their count and total size. */
function treeDigest(dir: string): { digest: string; files: number; bytes: number } {
  const hash = createHash('sha256');
  let files = 0;
  let bytes = 0;
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      if (statSync(join(dir, path)).isDirectory()) walk(path);
      else {
        const data = readFileSync(join(dir, path));
        hash.update(`${path}\0${data.byteLength}\0`).update(data);
        files++;
        bytes += data.byteLength;
      }
    }
  };
  walk('');
  return { digest: hash.digest('hex'), files, bytes };
}

async function main(): Promise<void> {
  const quick = Boolean(values.quick);
  const scratch = mkdtempSync(join(tmpdir(), 'bench-memory-'));
  try {
    const tree = join(scratch, 'tree');
    writeTree(tree, quick ? 10 : 100, quick ? 2 : 4, quick ? 5 : 25);
    const original = treeDigest(tree);
    const archive = join(scratch, 'generation.tar.gz');
    const unpacked = join(scratch, 'unpacked');

    const baseline = runChild('baseline');
    const pack = runChild('pack', tree, archive);
    const unpack = runChild('unpack', archive, unpacked);
    const back = treeDigest(unpacked);
    if (back.digest !== original.digest) throw new Error(`the unpacked tree differs: ${JSON.stringify({ original, back })}`);
    const archiveBytes = statSync(archive).size;
    const bufferedPack = runChild('buffered-pack', tree, join(scratch, 'buffered.tar.gz'));
    if (!readFileSync(join(scratch, 'buffered.tar.gz')).equals(readFileSync(archive))) throw new Error('the buffered and streaming packers disagree');
    const bufferedUnpack = runChild('buffered-unpack', archive);

    const mb = (n: number) => (n / MB).toFixed(1);
    const row = (what: string, r: ChildResult) => [what, mb(r.maxRssMb * MB), (r.maxRssMb - baseline.maxRssMb).toFixed(1), (r.ms / 1000).toFixed(2)];
    console.log(`Peak RSS, each in a child process: a generation of ${original.files} files, ${mb(original.bytes)} MB (archive ${mb(archiveBytes)} MB)${quick ? ' (quick)' : ''}`);
    console.log(
      formatTable([
        ['child', 'peak RSS MB', 'over baseline', 'seconds'],
        row('baseline (start-up, same imports)', baseline),
        row('pack, streaming (disk -> tar.gz file)', pack),
        row('unpack, streaming (tar.gz file -> folder)', unpack),
        row('pack, buffered (files in memory, packTree)', bufferedPack),
        row('unpack, buffered (unpackTree)', bufferedUnpack),
      ]),
    );
    console.log(`unpacked tree identical to the original (${original.files} files, sha256 of paths and contents); streaming and buffered archives identical`);
    console.log(
      JSON.stringify({
        pack_peak_rss_mb: round(pack.maxRssMb, 1),
        unpack_peak_rss_mb: round(unpack.maxRssMb, 1),
        baseline_rss_mb: round(baseline.maxRssMb, 1),
        pack_over_baseline_mb: round(pack.maxRssMb - baseline.maxRssMb, 1),
        unpack_over_baseline_mb: round(unpack.maxRssMb - baseline.maxRssMb, 1),
        buffered_pack_peak_rss_mb: round(bufferedPack.maxRssMb, 1),
        buffered_unpack_peak_rss_mb: round(bufferedUnpack.maxRssMb, 1),
        tree_mb: round(original.bytes / MB, 1),
        archive_mb: round(archiveBytes / MB, 1),
        pack_seconds: round(pack.ms / 1000),
        unpack_seconds: round(unpack.ms / 1000),
      }),
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (values.child) await child(values.child, positionals);
else await main();
