// `npm run tour`: the README's quick tour, performed against a server that is already running (`npm start`), at
// the URL `npm start` announces (PUBLIC_URL, else http://localhost:$PORT). Prints each step, request and status;
// exits 1 at the first answer that is not what the tour promises. Starts nothing and leaves nothing behind.
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ConfigError, loadConfig } from '../functions/_shared/config.ts';
import { loadDotEnv } from './local-env.ts';

/** An answer the tour did not promise: one line for the person running it, no stack trace. */
class Surprise extends Error {
  override name = 'Surprise';
}

const tokenScript = fileURLToPath(new URL('./token.ts', import.meta.url));
const steps = ['health', 'token', 'save', 'list', 'download', 'delete', 'gone'] as const;
let stepNo = 0;
const step = (name: (typeof steps)[number], what: string) => console.log(`\n== ${++stepNo}/${steps.length} ${name}: ${what}`);
/** Download tokens travel in the query: not printed. */
const shown = (url: string) => url.replace(/([?&]token=)[^&]+/, '$1…');

/** One request, printed with its status; a network failure or another status than `expected` is a Surprise. */
async function call(method: string, url: string, expected: number, init: RequestInit = {}): Promise<Response> {
  const started = performance.now();
  let res: Response;
  try {
    res = await fetch(url, { ...init, method });
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new Surprise(`no answer from ${shown(url)} (${code}): is the server running? Start it with \`npm start\` (same PORT / PUBLIC_URL)`);
  }
  console.log(`   ${method} ${shown(url)} -> ${res.status} (${Math.round(performance.now() - started)} ms)`);
  if (res.status !== expected) throw new Surprise(`expected ${expected}, got ${res.status}: ${(await res.text()).trim().slice(0, 500)}`);
  return res;
}

function expectThat(ok: boolean, what: string): void {
  if (!ok) throw new Surprise(what);
  console.log(`   ✓ ${what}`);
}

loadDotEnv();
try {
  const base = `${loadConfig(process.env).publicUrl}/functions/v1/generations`;
  const user = randomUUID();
  const project = randomUUID();
  console.log(`tour of ${base} on Node ${process.version}`);

  step('health', 'the server answers');
  const health = (await (await call('GET', `${base}/health`, 200)).json()) as { status?: string };
  expectThat(health.status === 'ok', `status is "ok"`);

  step('token', `a local user token (npm run -s token -- --user ${user})`);
  const run = promisify(execFile);
  // In the current folder, as `npm run token` would: it reads the same ./.env and local secret as `npm start`.
  const { stdout } = await run(process.execPath, ['--import', 'tsx', tokenScript, '--user', user]).catch((err: { stderr?: string }) => {
    throw new Surprise(`npm run token failed: ${err.stderr?.trim() ?? err}`);
  });
  const token = stdout.trim();
  expectThat(/^eyJ[\w-]+\.[\w-]+\.[\w-]+$/.test(token), 'a JWT');
  const auth = { authorization: `Bearer ${token}` };

  step('save', `a generation of project ${project}`);
  const files = { 'app/main.py': 'print(1)\n' };
  const saveRes = await call('POST', base, 201, { headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files, metadata: { prompt: 'hello' } }) });
  const saved = (await saveRes.json()) as { generation_id?: string; version?: number; sha256?: string; download_url?: string };
  const id = saved.generation_id ?? '';
  expectThat(/^[0-9a-f-]{36}$/.test(id), `generation_id ${id}`);
  expectThat(saved.version === 1, 'version 1 (a new project)');
  expectThat(/^[0-9a-f]{64}$/.test(saved.sha256 ?? ''), `sha256 ${saved.sha256}`);
  expectThat(typeof saved.download_url === 'string', `download_url ${shown(saved.download_url ?? '')}`);

  step('list', 'the project, newest first');
  const list = (await (await call('GET', `${base}?project_id=${project}`, 200, { headers: auth })).json()) as { items?: { generation_id: string }[] };
  expectThat(list.items?.length === 1 && list.items[0]!.generation_id === id, 'one item: the generation just saved');

  step('download', 'the tar.gz from download_url, no header needed');
  const dl = await call('GET', saved.download_url!, 200);
  const bytes = new Uint8Array(await dl.arrayBuffer());
  expectThat(dl.headers.get('content-type') === 'application/gzip', 'content-type application/gzip');
  expectThat(dl.headers.get('content-disposition')?.includes(`filename="v1__${id}.tar.gz"`) === true, `named v1__${id}.tar.gz`);
  expectThat(createHash('sha256').update(bytes).digest('hex') === saved.sha256, `${bytes.byteLength} bytes whose sha256 is the one the save answered`);

  step('delete', 'the generation');
  await call('DELETE', `${base}/${id}`, 204, { headers: auth });

  step('gone', 'it is no longer there');
  const gone = (await (await call('GET', `${base}/${id}`, 404, { headers: auth })).json()) as { error?: { code?: string } };
  expectThat(gone.error?.code === 'generation_not_found', `error code ${gone.error?.code}`);

  console.log(`\ntour finished: ${steps.length} steps, every answer as promised`);
} catch (err) {
  const known = err instanceof Surprise || err instanceof ConfigError;
  console.error(`\n!!! tour stopped at step ${stepNo} (${steps[stepNo - 1] ?? 'start'}): ${known ? err.message : ''}`);
  if (!known) console.error(err);
  process.exit(1);
}
