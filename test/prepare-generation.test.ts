import { createHash, randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverGenerations } from '../functions/_shared/migration/discover.ts';
import { prepareGeneration } from '../functions/_shared/migration/prepare-generation.ts';
import { writePythonGenerations } from './helpers/codebegen-python.ts';
import { tempDir } from './helpers/context.ts';

// prepareGeneration keeps files from its hashing read up to a budget and streams the rest from disk again: every
// split between the two must give the same archive, byte for byte.

const dir = tempDir('prepare-generation-');
afterAll(() => dir.remove());
const LIMITS = { maxFiles: 1000, maxFileBytes: 10 * 2 ** 20, maxGenerationBytes: 50 * 2 ** 20, maxPathDepth: 32, maxFolders: 1000 };

describe('prepareGeneration', () => {
  it('packs the same bytes whether files are kept from the hashing read, streamed from disk again, or some of each', async () => {
    const g = { project_id: randomUUID(), generation_id: randomUUID(), version: 1, metadata: { prompt: 'p' }, files: {} as Record<string, string> };
    for (let i = 0; i < 30; i++) g.files[`app/m${i}.py`] = `# ${i}\n${'print("x")\n'.repeat(50 + i * 400)}`; // 0.5 KB to ~140 KB
    g.files['app/empty.py'] = '';
    g.files['app/big.py'] = Array.from({ length: 40_000 }, (_, i) => `n_${i} = ${i * 7}\n`).join(''); // ~600 KB: read in several chunks
    writePythonGenerations(dir.path, [g]);
    const [found] = (await discoverGenerations(dir.path)).generations;
    const ref = { projectId: g.project_id, generationId: g.generation_id, version: 1 };
    const total = Object.values(g.files).reduce((n, t) => n + Buffer.byteLength(t), 0);
    const packs = await Promise.all([Infinity, 0, Math.floor(total / 2)].map((keep) => prepareGeneration(dir.path, found!, ref, LIMITS, keep)));
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    expect(packs.map((p) => p.archive.sha256)).toEqual(packs.map(() => packs[0]!.archive.sha256));
    expect(packs.map((p) => sha(p.archive.bytes))).toEqual(packs.map(() => packs[0]!.archive.sha256));
    expect(packs[0]!.files).toHaveLength(32);
    expect(packs.map((p) => p.contentSha256)).toEqual(packs.map(() => packs[0]!.contentSha256));
  });
});
