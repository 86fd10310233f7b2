import { createHash, randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MAX_SAVED_PATH_LENGTH, maxManifestBytes, unpackLimitsFor } from '../functions/_shared/limits.ts';
import { cloudAppContext } from './helpers/cloud-context.ts';
import { userToken, type AppContext } from './helpers/context.ts';

// One set of limits: whatever a save accepts, every reader accepts — here the cold read that pulls the archive
// from the bucket and unpacks it into the cache (which is all an edge worker ever does). Each limit case is saved
// at the limit and read back cold, byte for byte; one step past it is refused at save with a 4xx, writing nothing.

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const LIMITS = { MAX_FILES: '40', MAX_FOLDERS: '40', MAX_PATH_DEPTH: '12', MAX_FILE_BYTES: '8192', MAX_GENERATION_BYTES: String(40 * 8192), MAX_METADATA_BYTES: '4096', MAX_REQUEST_BYTES: String(4 * 1024 * 1024) };
const alice = randomUUID();
let A: string;
let ctx: AppContext;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ ctx, close } = await cloudAppContext(LIMITS));
  A = await userToken(alice);
});
afterAll(() => close());

const save = (files: Record<string, string>, metadata: Record<string, unknown> = {}) =>
  ctx.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: randomUUID(), files, metadata }),
  });

/** Saved, its local copy and cache dropped, then downloaded: the bytes come from the bucket through the unpacker. */
async function roundTripCold(files: Record<string, string>, metadata?: Record<string, unknown>): Promise<void> {
  const res = await save(files, metadata);
  expect(res.status, await res.clone().text()).toBe(201);
  const g = (await res.json()) as { generation_id: string; project_id: string; version: number; sha256: string };
  await ctx.uploads!.idle();
  for (const root of [ctx.config.storagePath, ctx.config.cachePath]) rmSync(join(root, g.project_id), { recursive: true, force: true });
  const cold = await ctx.app.request(`http://storage.test/generations/${g.generation_id}/download`, { headers: { authorization: `Bearer ${A}` } });
  expect(cold.status, await cold.clone().text()).toBe(200);
  expect(sha256(new Uint8Array(await cold.arrayBuffer()))).toBe(g.sha256);
  // and it came from the bucket, and was unpacked into the cache (beside the answer), not just passed through
  expect(ctx.log.lines.some((l) => l.msg === 'generation pulled from the cloud' && l.generation_id === g.generation_id)).toBe(true);
  await vi.waitFor(() => expect(existsSync(join(ctx.config.cachePath, g.project_id, 'generations', `v${g.version}__${g.generation_id}`, 'manifest.json'))).toBe(true));
}

/** `n` files with paths of ~966 characters of 3 bytes each, sharing 11 folders (so MAX_FOLDERS is not what binds). */
const longNamed = (n: number) => {
  const folders = Array.from({ length: 11 }, (_, i) => `${i}`.padEnd(85, '€')).join('/');
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`${folders}/${`${i}`.padEnd(20, '€')}`, `x = ${i}\n`]));
};

/** A path of `length` characters in `depth + 1` segments, each character 3 bytes in UTF-8 (the most bytes per unit). */
function longPath(length: number, depth: number, tag: string): string {
  const per = Math.floor((length - depth) / (depth + 1));
  const segments = Array.from({ length: depth + 1 }, (_, i) => `${tag}${i}`.padEnd(Math.min(per, 85), '€'));
  let p = segments.join('/');
  // fill the last segment up to the exact length (a segment holds at most 255 bytes: 85 such characters)
  while (p.length < length && segments.at(-1)!.length < 85) {
    segments[segments.length - 1] += '€';
    p = segments.join('/');
  }
  return p;
}

describe('the unpack limits are derived from the save limits', () => {
  it('so that each holds for the largest generation a save accepts', () => {
    const l = { maxFiles: 5000, maxFileBytes: 10 << 20, maxGenerationBytes: 50 << 20, maxMetadataBytes: 65536, maxPathDepth: 32, maxFolders: 5000 };
    const u = unpackLimitsFor(l);
    expect(u.maxEntries).toBe(l.maxFiles + l.maxFolders + 4);
    expect(u.maxFileBytes).toBe(Math.max(l.maxFileBytes, maxManifestBytes(l)));
    expect(u.maxTotalBytes).toBe(l.maxGenerationBytes + maxManifestBytes(l));
  });
});

describe('every limit case a save accepts reads back cold, byte for byte', () => {
  it('a path at the longest a save takes, in 3-byte characters', async () => {
    const p = longPath(MAX_SAVED_PATH_LENGTH, 11, 'p');
    expect(p.length).toBeLessThanOrEqual(MAX_SAVED_PATH_LENGTH);
    expect(p.length).toBeGreaterThan(MAX_SAVED_PATH_LENGTH - 12);
    await roundTripCold({ [p]: 'x = 1\n' });
  });

  it('a file at the deepest a save takes', async () => {
    await roundTripCold({ [`${'d/'.repeat(12)}deep.py`]: 'x = 1\n' });
  });

  it('the most files, each in folders of its own (files + folders = the entry limit)', async () => {
    await roundTripCold(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}/m.py`, `x = ${i}\n`])));
  });

  it('many files with the longest multi-byte paths: a manifest near its bound', async () => {
    await roundTripCold(longNamed(20), { note: '€'.repeat(1300) });
  });

  it('files at the per-file limit, the generation at its total', async () => {
    await roundTripCold(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`big/${i}.txt`, `${i}`.padEnd(8192, 'z')])));
  });
});

describe('one step past each limit is refused at save, nothing written', () => {
  const cases: [string, () => Record<string, string>, number, RegExp][] = [
    ['a path one character too long', () => ({ [`${'a'.repeat(200)}/`.repeat(4) + 'b'.repeat(MAX_SAVED_PATH_LENGTH + 1 - 804)]: 'x' }), 400, /must be at most 967 characters/],
    ['one folder too deep', () => ({ [`${'d/'.repeat(13)}deep.py`]: 'x' }), 400, /more than 12 folders deep \(MAX_PATH_DEPTH\)/],
    ['one folder too many', () => Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`a${i}/b/m.py`, 'x'])), 400, /more than 40 folders \(MAX_FOLDERS\)/],
    ['one file too many', () => Object.fromEntries(Array.from({ length: 41 }, (_, i) => [`${i}.py`, 'x'])), 413, /41 files, the limit is 40/],
    ['a manifest over its bound (long multi-byte paths)', () => longNamed(40), 413, /manifest\.json would be \d+ bytes, over 163840/],
  ];
  for (const [name, files, status, message] of cases) {
    it(name, async () => {
      const rows = () => ctx.db.asService((tx) => tx.query<{ n: number }>('select (select count(*) from generations)::int + (select count(*) from projects)::int as n'));
      const before = await rows();
      const res = await save(files());
      expect(res.status).toBe(status);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
      expect(await rows(), 'no row, not even the project').toEqual(before);
    });
  }
});
