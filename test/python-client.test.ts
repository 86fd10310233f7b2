import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

// The Python client's own suite (clients/python/tests: stdlib unittest, codebegen_storage against scripts/serve.ts
// on loopback), run as part of `npm test`. Without python3 (3.10+) it fails in CI (CI=true) and is skipped, loudly,
// elsewhere.

const PYTHON = process.env.PYTHON ?? 'python3';
const SUITE = ['-m', 'unittest', 'discover', '-s', 'clients/python/tests', '-v'];
const TIMEOUT_MS = 240_000;

const inCI = /^(1|true|yes|on)$/i.test(process.env.CI ?? '');
const probe = spawnSync(PYTHON, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], { encoding: 'utf8' });
const version = probe.status === 0 ? probe.stdout.trim() : undefined;
const [major = 0, minor = 0] = (version ?? '').split('.').map(Number);
const usable = version !== undefined && (major > 3 || (major === 3 && minor >= 10));
const why = version === undefined ? `${PYTHON} was not found (${probe.error?.message ?? probe.stderr?.trim() ?? `exit ${probe.status}`})` : `${PYTHON} is ${version}; the client needs 3.10+`;

if (!usable && !inCI) {
  console.warn(
    [
      '',
      '!!! ==================================================================================== !!!',
      `!!!  SKIPPED: the Python client's tests (clients/python/tests): ${why}.`,
      '!!!  Install python3 (3.10+) to run them; in CI (CI=true) this is a failure, not a skip.',
      '!!! ==================================================================================== !!!',
      '',
    ].join('\n'),
  );
}

/** Runs the suite in a process group of its own, so that a timeout also ends the server it started. */
function runSuite(): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, SUITE, {
      cwd: process.cwd(),
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', CODEBEGEN_NODE: process.execPath },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, timedOut });
    });
  });
}

describe('the Python client (clients/python)', () => {
  it.runIf(usable || inCI)(
    `passes its unittest suite against a real server (${version ? `Python ${version}` : 'no python3'})`,
    async () => {
      if (!usable) throw new Error(`the Python client's tests cannot run in CI: ${why}. Install python3 (3.10+).`);
      const { code, signal, output, timedOut } = await runSuite();
      const failed = code !== 0 || timedOut;
      if (failed) console.error(`--- ${PYTHON} ${SUITE.join(' ')} ---\n${output}\n--- end of the Python suite's output ---`);
      expect(timedOut, `the Python suite did not finish within ${TIMEOUT_MS / 1000} s`).toBe(false);
      expect(code, `the Python suite failed (exit ${code}${signal ? `, ${signal}` : ''}); its output is above`).toBe(0);
      const ran = /^Ran (\d+) tests? in [\d.]+s$/m.exec(output);
      expect(ran, 'unittest reported how many tests ran').not.toBeNull();
      expect(Number(ran![1])).toBeGreaterThan(0);
      expect(output).toMatch(/^OK\b/m);
      console.log(`Python client: ${ran![0]} — OK (Python ${version})`);
    },
    TIMEOUT_MS + 30_000,
  );

  // A loud, visible skip: a test of its own, skipped at run time (only without python3, and never in CI).
  if (!usable && !inCI) it(`SKIPPED: ${why}`, (ctx) => ctx.skip());
});
