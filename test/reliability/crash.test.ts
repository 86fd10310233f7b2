import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, JWT_SECRET, sampleFiles, serviceToken, tempDir, userToken } from '../helpers/context.ts';
import { ServerProcess } from '../helpers/server-process.ts';
import { startStorageStandIn, type StandIn } from '../storage-standin/server.ts';
import { report, sha256, sleep, sourceFiles } from './support.ts';

// Reliability 4 — crash consistency. The real Node server (`npm start`, embedded PGlite on disk) is killed with
// SIGKILL while uploads hang in Storage (mid-upload) and while a burst of large saves is being written (the kill
// lands once a save's scratch folder holds files: mid-save). After a restart: every save that answered 201 is
// there and complete, nothing half-written is visible through the API, a retried save of each one that never
// answered works, and every pending upload finishes and is verified. Nothing is lost.

const BUCKET = 'codebegen-projects';
const BURST = 16;
const PROJECTS = 4;
const FILES_PER_SAVE = 80;

let dir: ReturnType<typeof tempDir>;
let storagePath: string;
let standIn: StandIn;
let server: ServerProcess;

beforeAll(async () => {
  dir = tempDir('codebegen-rel-crash-');
  storagePath = join(dir.path, 'projects');
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  server = new ServerProcess({
    PATH: process.env.PATH,
    PORT: String(await freePort()),
    STORAGE_PATH: storagePath,
    PGLITE_DATA_DIR: join(dir.path, 'db'),
    CACHE_PATH: join(dir.path, 'cache'),
    SUPABASE_JWT_SECRET: JWT_SECRET,
    USE_CLOUD_STORAGE: 'true',
    // uploads the kill interrupted hold their outbox lease this long, then the retry timer takes them over
    OUTBOX_LEASE_SECONDS: '3',
    UPLOAD_RETRY_SECONDS: '1',
    SUPABASE_URL: standIn.url,
    SUPABASE_SERVICE_KEY: standIn.serviceKey,
    LOG_LEVEL: 'info',
  });
  await server.start();
}, 90_000);

afterAll(async () => {
  await server?.kill();
  await standIn?.close();
  dir?.remove();
});

interface Sent {
  id: string;
  project: string;
  body: string;
  files: Record<string, string>;
  /** The 201's body, when one arrived before the kill. */
  answer?: { sha256: string; version: number };
}

/** Scratch folders left under STORAGE_PATH/.codebegen-tmp, and whether one holds a generation being written. */
function scratch(): { dirs: number; writing: boolean } {
  const base = join(storagePath, '.codebegen-tmp');
  let names: string[] = [];
  try {
    names = readdirSync(base);
  } catch {
    return { dirs: 0, writing: false };
  }
  const writing = names.some((n) => {
    try {
      return readdirSync(join(base, n, 'generation', 'source')).length > 0;
    } catch {
      return false;
    }
  });
  return { dirs: names.length, writing };
}

describe('kill -9 mid-save and mid-upload, then restart', () => {
  it('shows no half-written generation, keeps every answered save, accepts the retries, finishes every upload', async () => {
    const started = performance.now();
    const service = { authorization: `Bearer ${await serviceToken()}` };
    const user = randomUUID();
    const auth = { authorization: `Bearer ${await userToken(user, { expiresIn: '2h' })}` };
    const sent: Sent[] = [];

    // Mid-upload: from now on every Storage request hangs for 30 s, so the uploads of these saves are under way
    // (their POSTs received, never answered) when the server dies.
    standIn.faults.delayNext(100_000, 30_000);
    for (let i = 0; i < 3; i++) {
      const project = randomUUID();
      const files = sampleFiles(4, `${i}`);
      const body = JSON.stringify({ project_id: project, owner_id: user, files });
      const res = await fetch(server.base, { method: 'POST', headers: { ...service, 'content-type': 'application/json' }, body });
      expect(res.status).toBe(201);
      const answer = (await res.json()) as { generation_id: string; sha256: string; version: number; storage: { status: string } };
      expect(answer.storage.status).toBe('pending');
      sent.push({ id: answer.generation_id, project, body, files, answer });
    }
    for (let i = 0; i < 100 && standIn.requests.filter((r) => r.method === 'POST' && r.path.includes('/object/') && r.status === 0).length < 3; i++) await sleep(50);
    const uploadsUnderWay = standIn.requests.filter((r) => r.method === 'POST' && r.path.includes('/object/') && r.status === 0).length;
    expect(uploadsUnderWay, 'uploads under way when the kill lands').toBeGreaterThan(0);

    // Mid-save: a burst of large saves (80 files, ~1 MB each), each with its own id so the ones that never
    // answer can be found and retried; SIGKILL as soon as one is being written in its scratch folder.
    const projects = Array.from({ length: PROJECTS }, () => randomUUID());
    const burst: Sent[] = Array.from({ length: BURST }, (_, i) => {
      const id = randomUUID();
      const project = projects[i % PROJECTS]!;
      const files: Record<string, string> = {};
      for (let f = 0; f < FILES_PER_SAVE; f++) files[`pkg/m${f % 10}/file_${f}.py`] = `# ${id} ${f}\n${randomBytes(9000).toString('base64')}\n`;
      return { id, project, files, body: JSON.stringify({ project_id: project, generation_id: id, files }) };
    });
    sent.push(...burst);
    let answeredBeforeKill = 0;
    const pending = burst.map((s) =>
      fetch(server.base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: s.body }).then(
        async (res) => {
          const text = await res.text().catch(() => undefined);
          if (text === undefined) return; // the answer was cut by the kill: not an answer
          if (res.status !== 201) throw new Error(`save answered ${res.status}: ${text}`);
          s.answer = JSON.parse(text) as Sent['answer'];
          answeredBeforeKill++;
        },
        () => undefined, // no answer: the server died first
      ),
    );
    let sawWriting = false;
    for (const t0 = performance.now(); performance.now() - t0 < 20_000; await sleep(1)) {
      sawWriting = scratch().writing;
      if ((sawWriting && answeredBeforeKill >= 2) || answeredBeforeKill >= BURST - 2) break;
    }
    await server.kill('SIGKILL');
    await Promise.all(pending);
    const answered = burst.filter((s) => s.answer).length;
    expect(answered, 'saves answered before the kill').toBeGreaterThan(0);
    expect(answered, 'saves still in flight at the kill').toBeLessThan(BURST);
    const leftOnDisk = scratch().dirs;
    const foldersOnDisk = (s: Sent) => readdirSync(join(storagePath, s.project, 'generations')).filter((n) => n.includes(s.id));

    standIn.faults.clear();
    await server.start();
    const get = async (id: string) => fetch(`${server.base}/${id}`, { headers: service });
    const download = async (id: string) => new Uint8Array(await (await fetch(`${server.base}/${id}/download`, { headers: service })).arrayBuffer());

    // 1. Every save that answered 201 is there, complete: the archive it answered with, the files it was sent.
    for (const s of sent.filter((x) => x.answer)) {
      const res = await get(s.id);
      expect(res.status, `answered save ${s.id}`).toBe(200);
      const bytes = await download(s.id);
      expect(sha256(bytes)).toBe(s.answer!.sha256);
      expect(await sourceFiles(bytes)).toEqual(s.files);
    }

    // 2. Whatever the API lists is complete: its archive has the sha256 listed and the files that were sent.
    const byId = new Map(sent.map((s) => [s.id, s]));
    let listed = 0;
    for (const project of [...projects, ...sent.slice(0, 3).map((s) => s.project)]) {
      for (let cursor: string | null = ''; cursor !== null; ) {
        const res = await fetch(`${server.base}?project_id=${project}&limit=100${cursor ? `&cursor=${cursor}` : ''}`, { headers: service });
        if (res.status === 404) {
          // No save of this project committed before the kill: then none of them answered either.
          expect(sent.filter((s) => s.project === project && s.answer)).toEqual([]);
          break;
        }
        const page = (await res.json()) as {
          items: { generation_id: string; sha256: string }[];
          next_cursor: string | null;
        };
        for (const item of page.items) {
          const s = byId.get(item.generation_id);
          expect(s, `listed generation ${item.generation_id} is one that was sent`).toBeDefined();
          const bytes = await download(item.generation_id);
          expect(sha256(bytes)).toBe(item.sha256);
          expect(await sourceFiles(bytes)).toEqual(s!.files);
          listed++;
        }
        cursor = page.next_cursor;
      }
    }

    // 3. The saves that never answered: committed whole before the kill, or not there at all.
    const unanswered = burst.filter((s) => !s.answer);
    let committedUnanswered = 0;
    let orphanFolders = 0;
    for (const s of unanswered) {
      const status = (await get(s.id)).status;
      expect([200, 404], s.id).toContain(status);
      if (status === 200) committedUnanswered++;
      else if (existsSync(join(storagePath, s.project, 'generations')) && foldersOnDisk(s).length > 0) orphanFolders++;
    }

    // 4. Retrying each of them works: created now, or an idempotent replay of what was committed.
    let replayed = 0;
    for (const s of unanswered) {
      const res = await fetch(server.base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: s.body });
      expect(res.status, `retry of ${s.id}: ${res.status === 201 ? '' : await res.clone().text()}`).toBe(201);
      if (res.headers.get('idempotent-replayed') === 'true') replayed++;
      const answer = (await res.json()) as NonNullable<Sent['answer']>;
      s.answer = answer;
      const bytes = await download(s.id);
      expect(sha256(bytes)).toBe(answer.sha256);
      expect(await sourceFiles(bytes)).toEqual(s.files);
      // One folder and one archive for it on disk, whatever the crash left there.
      expect(foldersOnDisk(s).sort()).toEqual([`v${answer.version}__${s.id}`, `v${answer.version}__${s.id}.tar.gz`]);
    }
    expect(replayed).toBe(committedUnanswered);
    // Versions stay distinct per project after all that.
    for (const p of projects) {
      const versions = burst.filter((s) => s.project === p).map((s) => s.answer!.version);
      expect(new Set(versions).size).toBe(versions.length);
    }

    // 5. Every upload, interrupted or never started, finishes and is verified: nothing is lost.
    let uploaded = 0;
    for (const s of sent) {
      let status = '';
      for (let i = 0; i < 300 && status !== 'uploaded'; i++) {
        status = ((await (await get(s.id)).json()) as { storage: { status: string } }).storage.status;
        if (status !== 'uploaded') await sleep(100);
      }
      expect(status, s.id).toBe('uploaded');
      const key = `${s.project}/generations/v${s.answer!.version}__${s.id}.tar.gz`;
      expect(sha256(readFileSync(standIn.objectPath(BUCKET, key)))).toBe(s.answer!.sha256);
      uploaded++;
    }
    expect(server.output).toContain('"msg":"uploads resumed"');

    report('crash', {
      kills: 1,
      restarts: 1,
      uploads_under_way_at_kill: uploadsUnderWay,
      burst_saves: BURST,
      burst_mb: Math.round(burst.reduce((n, s) => n + s.body.length, 0) / 1e6),
      kill_when_scratch_being_written: sawWriting,
      answered_before_kill: answered,
      in_flight_at_kill: BURST - answered,
      committed_without_answer: committedUnanswered,
      rolled_back: BURST - answered - committedUnanswered,
      scratch_dirs_left_by_kill: leftOnDisk,
      orphan_folders_left_by_kill: orphanFolders,
      listed_and_verified_after_restart: listed,
      retried: unanswered.length,
      retries_replayed: replayed,
      uploaded_and_verified: uploaded,
      lost: sent.length - uploaded,
      total_ms: Math.round(performance.now() - started),
    });
  }, 180_000);
});
