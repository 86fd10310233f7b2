// Every benchmark, one after another, each in a process of its own so they do not disturb each other.
//   npm run bench -- [--quick] [name ...]        e.g. npm run bench -- --quick reads migration
// Runs each bench/*.ts but this one (from the repository's root), shows its output, takes its final JSON line of
// named figures, and ends with a summary against the targets of bench/lib/targets.ts and one JSON line of it all.
// Exits 1 when a benchmark crashes or ends without a JSON line; a missed target is reported, not a failure.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { meets, TARGETS } from './lib/targets.ts';
import { formatTable } from './lib/table.ts';

const { values, positionals } = parseArgs({ options: { quick: { type: 'boolean' } }, allowPositionals: true });
const quick = Boolean(values.quick);
const benchDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(benchDir);
const all = readdirSync(benchDir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -'.ts'.length))
  .sort();
const unknown = positionals.filter((p) => !all.includes(p));
if (unknown.length) {
  console.error(`no such benchmark: ${unknown.join(', ')} (there are: ${all.join(', ')})`);
  process.exit(2);
}
const names = positionals.length ? all.filter((n) => positionals.includes(n)) : all;
// A benchmark that hangs is stopped, and counts as crashed.
const TIMEOUT_MS = (quick ? 3 : 30) * 60_000;

type Figures = Record<string, unknown>;
interface Outcome {
  name: string;
  seconds: number;
  figures?: Figures;
  error?: string;
}

let current: ReturnType<typeof spawn> | undefined;
/** The benchmark and everything it started (servers, the Storage stand-in): it leads a process group of its own. */
const killGroup = (signal: NodeJS.Signals) => {
  try {
    if (current?.pid) process.kill(-current.pid, signal);
  } catch {
    /* already gone */
  }
};
process.on('SIGINT', () => {
  killGroup('SIGKILL');
  process.exit(130);
});

/** Runs one benchmark, its output shown as it comes; its figures are its last line, which must be a JSON object. */
function runOne(name: string): Promise<Outcome> {
  const started = performance.now();
  const args = ['--import', 'tsx', join('bench', `${name}.ts`), ...(quick ? ['--quick'] : [])];
  console.log(`\n== bench/${name}.ts${quick ? ' --quick' : ''}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    current = child;
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGKILL');
    }, TIMEOUT_MS);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      killGroup('SIGKILL'); // whatever it started and left behind (a crash skips its clean-up)
      current = undefined;
      const seconds = (performance.now() - started) / 1000;
      if (timedOut) return resolve({ name, seconds, error: `stopped after ${TIMEOUT_MS / 60_000} min` });
      if (code !== 0) return resolve({ name, seconds, error: `exited with ${signal ?? code}` });
      const last = out.trimEnd().split('\n').at(-1) ?? '';
      try {
        const figures = JSON.parse(last) as unknown;
        if (typeof figures !== 'object' || figures === null || Array.isArray(figures)) throw new Error('not an object');
        resolve({ name, seconds, figures: figures as Figures });
      } catch {
        resolve({ name, seconds, error: 'printed no JSON line at the end' });
      }
    });
  });
}

const outcomes: Outcome[] = [];
for (const name of names) {
  const outcome = await runOne(name);
  console.log(`== ${name}: ${outcome.error ?? 'done'} (${outcome.seconds.toFixed(1)} s)`);
  outcomes.push(outcome);
}

const rows: string[][] = [['bench', 'figure', 'value', 'target', 'met?']];
const targets: { bench: string; figure: string; target: string; value: number | null; met: boolean }[] = [];
for (const o of outcomes) {
  if (!o.figures) {
    rows.push([o.name, '(failed)', o.error!, '', '']);
    continue;
  }
  const wanted = TARGETS[o.name] ?? [];
  for (const [figure, value] of Object.entries(o.figures)) {
    const t = wanted.find((w) => w.figure === figure);
    const met = t && typeof value === 'number' ? meets(t, value) : undefined;
    rows.push([o.name, figure, typeof value === 'number' ? String(value) : JSON.stringify(value), t ? `${t.op} ${t.value}` : '', met === undefined ? '' : met ? 'yes' : 'NO']);
    if (t) targets.push({ bench: o.name, figure, target: `${t.op} ${t.value}`, value: typeof value === 'number' ? value : null, met: Boolean(met) });
  }
  for (const t of wanted.filter((w) => !(w.figure in o.figures!))) {
    rows.push([o.name, t.figure, '(missing)', `${t.op} ${t.value}`, 'NO']);
    targets.push({ bench: o.name, figure: t.figure, target: `${t.op} ${t.value}`, value: null, met: false });
  }
}
const failed = outcomes.filter((o) => o.error).map((o) => o.name);
console.log(`\n== summary${quick ? ' (quick: figures from tiny runs, to keep the benchmarks working, not to quote)' : ''}`);
console.log(formatTable(rows));
const missed = targets.filter((t) => !t.met).length;
console.log(`${outcomes.length - failed.length} of ${outcomes.length} benchmarks ran; ${targets.length - missed} of ${targets.length} targets met${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`);
console.log(
  JSON.stringify({
    quick,
    benches: Object.fromEntries(outcomes.filter((o) => o.figures).map((o) => [o.name, o.figures])),
    seconds: Object.fromEntries(outcomes.map((o) => [o.name, +o.seconds.toFixed(1)])),
    targets,
    failed,
  }),
);
process.exitCode = failed.length ? 1 : 0; // not process.exit(): output still in a pipe would be cut
