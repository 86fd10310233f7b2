import { randomUUID } from 'node:crypto';
import { applyPatch, parsePatch } from 'diff';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appContext, userToken, type AppContext } from './helpers/context.ts';
import { errorOf, generationsClient, sha256, type Saved } from './helpers/generations-client.ts';

// GET /generations/{id}/diff?against=: checked against a computation of our own on the file sets that were saved,
// and every patch applied back with jsdiff reproduces the newer file.

const enc = new TextEncoder();
type Files = Record<string, string>;
type Entry = { path: string; size_bytes: number; sha256: string; patch?: string; patch_omitted?: string };
type Modified = { path: string; from: { size_bytes: number; sha256: string }; to: { size_bytes: number; sha256: string }; patch?: string; patch_omitted?: string };
type Diff = { generation_id: string; version: number; against: { generation_id: string; version: number }; added: Entry[]; removed: Entry[]; modified: Modified[]; unchanged_count: number; patch_bytes?: number };

/** A small seeded PRNG, so a failing case can be run again. */
function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A project's files, and a next version of them: some added, some removed, some edited (a few the same size). */
function twoVersions(seed: number): { v1: Files; v2: Files } {
  const rnd = random(seed);
  const v1: Files = {};
  for (let i = 0; i < 40; i++) {
    const lines = Array.from({ length: 5 + Math.floor(rnd() * 60) }, (_, l) => `line ${l} of file ${i}: ${Math.floor(rnd() * 1e6)}`);
    v1[`app/module_${i % 5}/file_${i}.py`] = lines.join('\n') + (rnd() < 0.8 ? '\n' : '');
  }
  v1['README.md'] = '# Project\n\nsome text\n';
  const v2: Files = {};
  for (const [path, content] of Object.entries(v1)) {
    const r = rnd();
    if (r < 0.15) continue; // removed
    if (r < 0.45) {
      const lines = content.split('\n');
      const at = Math.floor(rnd() * lines.length);
      if (rnd() < 0.3) lines[at] = lines[at]!.replace(/\d/, (d) => String((Number(d) + 1) % 10)); // same size
      else lines.splice(at, rnd() < 0.5 ? 1 : 0, `edited ${Math.floor(rnd() * 1e6)}`, 'another new line');
      v2[path] = lines.join('\n');
    } else v2[path] = content;
  }
  for (let i = 0; i < 5; i++) v2[`app/new/added_${i}.py`] = `print(${i})\n`;
  v2['README.md'] = '# Project\n\nsome text\nand more\n';
  return { v1, v2 };
}

/** The diff computed here, independently: by path and sha256 over the saved maps. */
function expectedDiff(from: Files, to: Files) {
  const digest = (c: string) => ({ size_bytes: enc.encode(c).byteLength, sha256: sha256(c) });
  const sort = <T extends { path: string }>(xs: T[]) => xs.sort((a, b) => (a.path < b.path ? -1 : 1));
  return {
    added: sort(Object.keys(to).filter((p) => !(p in from)).map((p) => ({ path: p, ...digest(to[p]!) }))),
    removed: sort(Object.keys(from).filter((p) => !(p in to)).map((p) => ({ path: p, ...digest(from[p]!) }))),
    modified: sort(Object.keys(to).filter((p) => p in from && from[p] !== to[p]).map((p) => ({ path: p, from: digest(from[p]!), to: digest(to[p]!) }))),
    unchanged_count: Object.keys(to).filter((p) => p in from && from[p] === to[p]).length,
  };
}

const withoutPatches = (d: Diff) => ({
  added: d.added.map(({ patch: _, patch_omitted: __, ...e }) => e),
  removed: d.removed.map(({ patch: _, patch_omitted: __, ...e }) => e),
  modified: d.modified.map(({ patch: _, patch_omitted: __, ...e }) => e),
  unchanged_count: d.unchanged_count,
});

let ctx: AppContext;
let api: ReturnType<typeof generationsClient>;
let A: string;
let B: string;

beforeAll(async () => {
  ctx = await appContext();
  api = generationsClient(ctx);
  [A, B] = await Promise.all([userToken(randomUUID()), userToken(randomUUID())]);
});
afterAll(() => ctx.close());

const diff = (id: string, query: string, token = A, status = 200) => api.get<Diff>(`/${id}/diff?${query}`, token, status);

describe('GET /generations/{id}/diff', () => {
  it('lists added, removed, modified (both sha256s and sizes) and the unchanged count exactly, for several random projects', async () => {
    for (const seed of [1, 2, 3, 4]) {
      const { v1, v2 } = twoVersions(seed);
      const project = randomUUID();
      const g1 = await api.save(A, { project_id: project, files: v1 });
      const g2 = await api.save(A, { project_id: project, files: v2 });
      const d = await diff(g2.generation_id, `against=${g1.generation_id}`);
      expect(d).toMatchObject({ generation_id: g2.generation_id, version: 2, against: { generation_id: g1.generation_id, version: 1 } });
      expect(withoutPatches(d), `seed ${seed}`).toEqual(expectedDiff(v1, v2));
      expect(d.modified.some((m) => m.from.size_bytes === m.to.size_bytes), `seed ${seed} has a same-size edit`).toBe(true);
      expect(d.patch_bytes).toBeUndefined();
      expect([...d.added, ...d.removed, ...d.modified].every((c) => c.patch === undefined)).toBe(true);
      // the other way round, everything swaps sides
      const back = await diff(g1.generation_id, `against=${g2.generation_id}`);
      expect(withoutPatches(back)).toEqual(expectedDiff(v2, v1));
      // against itself: nothing changed
      expect(withoutPatches(await diff(g1.generation_id, `against=${g1.generation_id}`))).toEqual({ added: [], removed: [], modified: [], unchanged_count: Object.keys(v1).length });
    }
  });

  it('patch=true: unified diffs that jsdiff applies back to give exactly the newer files', async () => {
    const { v1, v2 } = twoVersions(7);
    v1['windows.txt'] = 'one\r\ntwo\r\nthree\r\n';
    v2['windows.txt'] = 'one\r\n2\r\nthree\r\n';
    v1['no-newline.txt'] = 'a\nb';
    v2['no-newline.txt'] = 'a\nb\nc';
    v2['docs/ünïcode ✓.md'] = 'naïve café\n';
    v2['empty.txt'] = '';
    const project = randomUUID();
    const g1 = await api.save(A, { project_id: project, files: v1 });
    const g2 = await api.save(A, { project_id: project, files: v2 });
    const d = await diff(g2.generation_id, `against=${g1.generation_id}&patch=true`);
    expect(withoutPatches(d)).toEqual(expectedDiff(v1, v2));
    let total = 0;
    for (const m of d.modified) {
      expect(m.patch, m.path).toBeDefined();
      expect(parsePatch(m.patch!)[0]).toMatchObject({ oldFileName: `a/${m.path}`, newFileName: `b/${m.path}` });
      expect(applyPatch(v1[m.path]!, m.patch!), m.path).toBe(v2[m.path]);
      total += enc.encode(m.patch!).byteLength;
    }
    for (const a of d.added) {
      expect(parsePatch(a.patch!)[0]).toMatchObject({ oldFileName: '/dev/null', newFileName: `b/${a.path}` });
      if (v2[a.path] !== '') expect(applyPatch('', a.patch!), a.path).toBe(v2[a.path]);
      total += enc.encode(a.patch!).byteLength;
    }
    for (const r of d.removed) {
      expect(applyPatch(v1[r.path]!, r.patch!), r.path).toBe('');
      total += enc.encode(r.patch!).byteLength;
    }
    expect(d.patch_bytes).toBe(total);
    expect(d.modified.find((m) => m.path === 'README.md')!.patch).toBe('--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,4 @@\n # Project\n \n some text\n+and more\n');
  });

  it('lists binary, oversized and too-complex files without a patch, saying why, and keeps the total within its limit', async () => {
    const line = (n: number, tag: string) => `${tag} ${String(n).padStart(6, '0')} ${'x'.repeat(1990)}`;
    const lines = (count: number, tag: string) => Array.from({ length: count }, (_, i) => line(i, tag)).join('\n') + '\n';
    const v1: Files = { 'logo.bin': 'PNG\u0000\u0001old', 'big.txt': 'a'.repeat(1_100_000) + '\n', 'long.txt': lines(200, 'old'), 'busy.txt': Array.from({ length: 1_500 }, (_, i) => `o${i}`).join('\n') };
    const v2: Files = { 'logo.bin': 'PNG\u0000\u0001new', 'big.txt': 'b'.repeat(1_100_000) + '\n', 'long.txt': lines(200, 'new'), 'busy.txt': Array.from({ length: 1_500 }, (_, i) => `n${i}`).join('\n') };
    for (let i = 0; i < 10; i++) {
      v1[`chunk_${i}.txt`] = lines(60, 'old');
      v2[`chunk_${i}.txt`] = lines(60, 'new');
    }
    const project = randomUUID();
    const g1 = await api.save(A, { project_id: project, files: v1 });
    const g2 = await api.save(A, { project_id: project, files: v2 });
    const d = await diff(g2.generation_id, `against=${g1.generation_id}&patch=true`);
    const why = Object.fromEntries(d.modified.map((m) => [m.path, m.patch_omitted ?? 'patched']));
    expect(why['logo.bin']).toBe('binary');
    expect(why['big.txt']).toBe('file_too_large');
    expect(why['long.txt']).toBe('patch_too_large');
    expect(why['busy.txt']).toBe('too_complex');
    const chunks = d.modified.filter((m) => m.path.startsWith('chunk_'));
    const patched = chunks.filter((m) => m.patch !== undefined);
    expect(patched.length).toBeGreaterThan(0);
    expect(chunks.slice(patched.length).every((m) => m.patch_omitted === 'total_patch_limit')).toBe(true);
    expect(patched.length).toBeLessThan(chunks.length);
    for (const m of patched) expect(applyPatch(v1[m.path]!, m.patch!)).toBe(v2[m.path]);
    expect(d.patch_bytes!).toBeLessThanOrEqual(2 * 1024 * 1024);
    // without patch=true none of that is read: just the lists
    expect(withoutPatches(await diff(g2.generation_id, `against=${g1.generation_id}`))).toEqual(withoutPatches(d));
  });

  it('bounds the work one answer may cost: after 12 000 line edits tried, files are listed as total_patch_limit', async () => {
    const busy = (tag: string) => Array.from({ length: 1_500 }, (_, i) => `${tag}${i}`).join('\n');
    const v1: Files = {};
    const v2: Files = {};
    for (let i = 0; i < 15; i++) {
      v1[`busy_${String(i).padStart(2, '0')}.txt`] = busy('o');
      v2[`busy_${String(i).padStart(2, '0')}.txt`] = busy('n');
    }
    v1['z_small.txt'] = 'a\n';
    v2['z_small.txt'] = 'b\n';
    const project = randomUUID();
    const g1 = await api.save(A, { project_id: project, files: v1 });
    const g2 = await api.save(A, { project_id: project, files: v2 });
    const started = performance.now();
    const d = await diff(g2.generation_id, `against=${g1.generation_id}&patch=true`);
    const ms = performance.now() - started;
    expect(d.modified.map((m) => m.patch_omitted ?? 'patched')).toEqual([...Array(12).fill('too_complex'), ...Array(4).fill('total_patch_limit')]);
    expect(ms).toBeLessThan(15_000); // ~1 s here; generous for a busy machine
  });

  it('refuses generations of different projects with 400, and never says anything of one the caller cannot see (404)', async () => {
    const mine1 = await api.save(A, { project_id: randomUUID(), files: { 'a.py': '1\n' } });
    const mine2 = await api.save(A, { project_id: randomUUID(), files: { 'a.py': '2\n' } });
    const theirs = await api.save(B, { project_id: randomUUID(), files: { 'a.py': '3\n' } });
    const sameProjectTheirs = await api.save(B, { project_id: theirs.project_id, files: { 'a.py': '4\n' } });
    const res = await api.req(`/${mine1.generation_id}/diff?against=${mine2.generation_id}`, { token: A });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).message).toMatch(/another project/);
    const notFound = { code: 'generation_not_found', message: 'generation not found' };
    for (const [id, against] of [
      [mine1.generation_id, theirs.generation_id],
      [theirs.generation_id, mine1.generation_id],
      [theirs.generation_id, sameProjectTheirs.generation_id],
      [mine1.generation_id, randomUUID()],
      [randomUUID(), mine1.generation_id],
    ] as const) {
      const r = await api.req(`/${id}/diff?against=${against}`, { token: A });
      expect(r.status).toBe(404);
      expect(await errorOf(r)).toEqual(notFound);
    }
    // bob sees his own
    expect((await diff(sameProjectTheirs.generation_id, `against=${theirs.generation_id}&patch=true`, B)).modified).toHaveLength(1);
  });

  it('answers bad queries with 400 naming the field, no token with 401, other methods with 405', async () => {
    const g = await api.save(A, { project_id: randomUUID(), files: { 'a.py': '1\n' } });
    for (const [query, field] of [['', 'against'], ['against=nope', 'against'], [`against=${g.generation_id}&patch=yes`, 'patch'], [`against=${g.generation_id}&extra=1`, 'extra']] as const) {
      const res = await api.req(`/${g.generation_id}/diff?${query}`, { token: A });
      expect(res.status, query).toBe(400);
      expect((await errorOf(res)).message, query).toContain(field);
    }
    expect((await api.req(`/nope/diff?against=${g.generation_id}`, { token: A })).status).toBe(400);
    expect((await api.req(`/${g.generation_id}/diff?against=${g.generation_id}`)).status).toBe(401);
    const post = await api.req(`/${g.generation_id}/diff?against=${g.generation_id}`, { method: 'POST', token: A });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  });
});

describe('diffs of generations read from the cloud', () => {
  it('patches a cold generation from the bucket', async () => {
    const { cloudAppContext } = await import('./helpers/cloud-context.ts');
    const { dropCopies } = await import('./helpers/generations-client.ts');
    const cloud = await cloudAppContext();
    try {
      const c = generationsClient(cloud.ctx);
      const { v1, v2 } = twoVersions(11);
      const project = randomUUID();
      const g1: Saved = await c.save(A, { project_id: project, files: v1 });
      const g2: Saved = await c.save(A, { project_id: project, files: v2 });
      await cloud.ctx.uploads!.idle();
      dropCopies(cloud.ctx, g1, { local: true, cache: true });
      dropCopies(cloud.ctx, g2, { local: true, cache: true });
      cloud.standIn.requests.length = 0;
      const d = await c.get<Diff>(`/${g2.generation_id}/diff?against=${g1.generation_id}&patch=true`, A);
      expect(withoutPatches(d)).toEqual(expectedDiff(v1, v2));
      for (const m of d.modified) expect(applyPatch(v1[m.path]!, m.patch!)).toBe(v2[m.path]);
      // one download per generation, however many files were patched
      expect(cloud.standIn.requests.filter((r) => r.method === 'GET' && r.path.endsWith('.tar.gz'))).toHaveLength(2);
    } finally {
      await cloud.close();
    }
  });
});
