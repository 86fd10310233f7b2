import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TARGETS } from '../bench/lib/targets.ts';

// The benchmarks in quick mode, through the real runner (`npm run bench -- --quick`), so that none of them rots:
// each must finish and end with its named, finite figures. Targets are reported by the runner, never asserted
// here: quick runs are far too small (and this machine too busy with the other suites) to measure anything.

function runQuick(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('benchmarks', () => {
  it('every bench/*.ts runs in quick mode and ends with its named, finite figures', { timeout: 480_000 }, async () => {
    const benches = readdirSync('bench')
      .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
      .map((f) => f.slice(0, -'.ts'.length));
    const { code, stdout, stderr } = await runQuick();
    expect(code, `${stdout.slice(-6000)}\n${stderr.slice(-3000)}`).toBe(0);
    const summary = JSON.parse(stdout.trimEnd().split('\n').at(-1)!) as { quick: boolean; benches: Record<string, Record<string, unknown>>; failed: string[] };
    expect(summary.quick).toBe(true);
    expect(summary.failed).toEqual([]);

    expect(Object.keys(summary.benches).sort()).toEqual(benches.sort());
    for (const name of benches) {
      const figures = Object.entries(summary.benches[name]!).filter(([, v]) => typeof v === 'number') as [string, number][];
      expect(figures.length, `${name} reports figures`).toBeGreaterThan(0);
      for (const [figure, value] of figures) expect(Number.isFinite(value), `${name}.${figure} = ${value}`).toBe(true);
      // A target's figure must exist under that name, or the runner could never report on it.
      for (const t of TARGETS[name] ?? []) expect(typeof summary.benches[name]![t.figure], `${name}.${t.figure} (a target)`).toBe('number');
    }
  });
});
