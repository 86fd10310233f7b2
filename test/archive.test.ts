import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { constants as zlibConstants, crc32, deflateRawSync, gunzipSync } from 'node:zlib';
import { gzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packTree, unpackTree, type TreeFile, type UnpackLimits } from '../functions/_shared/archive/tar-gz.ts';
import { AppError } from '../functions/_shared/errors.ts';

// ---------------------------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------------------------

const utf8 = (s: string) => new TextEncoder().encode(s);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const ROOT = 'v3__0b9e6a8e-2a54-4c55-9c7e-1f0f1d5f8a11';
const MTIME = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
const ROOMY: UnpackLimits = { maxEntries: 1000, maxFileBytes: 10 * 2 ** 20, maxTotalBytes: 50 * 2 ** 20 };

/** A 120-character path (needs the ustar prefix field) and a 300-character one (needs a PAX record). */
const PATH_OVER_100 = `deep/${'d'.repeat(50)}/${'e'.repeat(50)}/file.txt`;
const PATH_OVER_256 = `deep/${Array.from({ length: 5 }, (_, i) => `${i}`.repeat(60)).join('/')}/long.txt`;
const BINARY = new Uint8Array([...Array.from({ length: 256 }, (_, i) => i), ...randomBytes(70_000)]);

/** One tree used across the round-trip and interop tests. Names chosen so a per-folder sort differs from a full-path sort. */
const TREE: TreeFile[] = [
  { path: 'README.md', data: utf8('# hello\n') },
  { path: 'B.txt', data: utf8('upper case sorts first\n') },
  { path: 'a/inner.txt', data: utf8('inside folder a\n') },
  { path: 'a-b', data: utf8('"-" sorts before "/" but after folder "a"\n') },
  { path: 'a.txt', data: utf8('a dot\n') },
  { path: 'a_b', data: utf8('underscore\n') },
  { path: 'source/app/__init__.py', data: new Uint8Array(0) },
  { path: 'source/app/main.py', data: utf8('print("hi")\n') },
  { path: 'source/données/résumé.txt', data: utf8('café ☕\n') },
  { path: 'source/日本語/ファイル.md', data: utf8('こんにちは\n') },
  { path: 'bin/blob.bin', data: BINARY },
  { path: PATH_OVER_100, data: utf8('long path\n') },
  { path: PATH_OVER_256, data: utf8('longer path\n') },
];
const EMPTY_DIRS = ['artifacts', 'source/app/empty'];

/** The folders an archive of TREE + EMPTY_DIRS must name (relative to the root, "" being the root). */
function foldersOf(files: readonly TreeFile[], emptyDirs: readonly string[]): string[] {
  const out = new Set<string>(['']);
  for (const p of [...files.map((f) => f.path), ...emptyDirs.map((d) => `${d}/x`)]) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) out.add(parts.slice(0, i).join('/'));
  }
  return [...out];
}

const under = (root: string, rel: string) => (rel === '' ? root : `${root}/${rel}`);

/** Files as sorted "path sha256" lines: readable diffs, byte-exact comparison. */
const digest = (files: readonly TreeFile[]) => files.map((f) => `${f.path} ${f.data.byteLength} ${sha256(f.data)}`).sort();

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'archive-test-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

let dirCount = 0;
/** A fresh folder under the suite's temp dir. */
function freshDir(): string {
  const d = join(tmp, `case-${++dirCount}`);
  mkdirSync(d);
  return d;
}

/** Writes a tree to disk under `<parent>/<root>` and returns that folder. */
function writeTree(parent: string, root: string, files: readonly TreeFile[], emptyDirs: readonly string[] = []): string {
  const base = join(parent, root);
  mkdirSync(base, { recursive: true });
  for (const d of emptyDirs) mkdirSync(join(base, d), { recursive: true });
  for (const f of files) {
    mkdirSync(dirname(join(base, f.path)), { recursive: true });
    writeFileSync(join(base, f.path), f.data);
  }
  return base;
}

/** Reads a folder on disk back as files and folders relative to it. */
function readTree(base: string): { files: TreeFile[]; dirs: string[] } {
  const files: TreeFile[] = [];
  const dirs: string[] = [''];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(base, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(join(base, r)).isDirectory()) {
        dirs.push(r);
        walk(r);
      } else files.push({ path: r, data: new Uint8Array(readFileSync(join(base, r))) });
    }
  };
  walk('');
  return { files, dirs };
}

const PY_PACK = `
import sys, tarfile
with tarfile.open(sys.argv[1], 'w:gz') as t:
    t.add(sys.argv[2], arcname=sys.argv[3])
`;
const PY_LIST = `
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    print(json.dumps([dict(name=m.name, type='dir' if m.isdir() else 'file' if m.isreg() else 'other', size=m.size,
        mode=m.mode, uid=m.uid, gid=m.gid, uname=m.uname, gname=m.gname, mtime=m.mtime) for m in t.getmembers()]))
`;
interface PyMember {
  name: string;
  type: 'dir' | 'file' | 'other';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
}

/** Python's own `tarfile.open(out, 'w:gz').add(dir, arcname=root)`. */
function pythonPack(dir: string, root: string): Uint8Array {
  const out = join(freshDir(), 'py.tar.gz');
  execFileSync('python3', ['-c', PY_PACK, out, dir, root]);
  return new Uint8Array(readFileSync(out));
}

function pythonList(gz: Uint8Array): PyMember[] {
  const file = join(freshDir(), 'list.tar.gz');
  writeFileSync(file, gz);
  return JSON.parse(execFileSync('python3', ['-c', PY_LIST, file], { encoding: 'utf8' })) as PyMember[];
}

/** Awaits a promise that must reject with an AppError of the given code and status; returns it for more checks. */
async function rejection(p: Promise<unknown>, code: string, status: number): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the promise to reject').toBeInstanceOf(AppError);
  expect(err).toMatchObject({ code, status });
  return err as AppError;
}

// --- Hand-made tar: raw 512-byte ustar headers ------------------------------------------------------------------

interface RawEntry {
  name: string;
  /** The typeflag character: '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' folder, '6' FIFO, 'x' PAX, 'L' GNU long name. */
  type?: string;
  /** Header size; defaults to the body's length. Larger than the body simulates truncation. */
  size?: number;
  body?: Uint8Array;
  linkname?: string;
  prefix?: string;
  mode?: number;
}

function field(block: Uint8Array, offset: number, length: number, value: string | Uint8Array) {
  const bytes = typeof value === 'string' ? utf8(value) : value;
  if (bytes.length > length) throw new Error(`test bug: ${JSON.stringify(value)} does not fit ${length} bytes`);
  block.set(bytes, offset);
}
const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, '0')}\0`;

/** One ustar header block with a correct checksum. */
function ustarHeader(e: RawEntry): Uint8Array {
  const b = new Uint8Array(512);
  const type = e.type ?? '0';
  field(b, 0, 100, e.name);
  field(b, 100, 8, octal(e.mode ?? (type === '5' ? 0o755 : 0o644), 8));
  field(b, 108, 8, octal(0, 8));
  field(b, 116, 8, octal(0, 8));
  field(b, 124, 12, octal(e.size ?? e.body?.byteLength ?? 0, 12));
  field(b, 136, 12, octal(Math.floor(MTIME.getTime() / 1000), 12));
  field(b, 156, 1, type);
  field(b, 157, 100, e.linkname ?? '');
  field(b, 257, 8, 'ustar\u000000');
  field(b, 345, 155, e.prefix ?? '');
  b.fill(0x20, 148, 156);
  const sum = b.reduce((a, x) => a + x, 0);
  field(b, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return b;
}

/** Header, body, zero padding to the next block. */
function rawEntry(e: RawEntry): Uint8Array[] {
  const body = e.body ?? new Uint8Array(0);
  return [ustarHeader(e), body, new Uint8Array(-body.byteLength & 511)];
}

/** A PAX extended header ('x') carrying `records`, applying to `e`. */
function paxEntry(records: Record<string, string>, e: RawEntry): Uint8Array[] {
  const text = Object.entries(records)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let len = utf8(rest).length + 1;
      while (`${len}`.length + utf8(rest).length !== len) len = `${len}`.length + utf8(rest).length;
      return `${len}${rest}`;
    })
    .join('');
  return [...rawEntry({ name: 'PaxHeader', type: 'x', body: utf8(text) }), ...rawEntry(e)];
}

const concat = (parts: readonly Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** A whole tar: the entries' blocks, then (unless `eof: false`) the two zero blocks. */
function rawTar(parts: readonly Uint8Array[], { eof = true } = {}): Uint8Array {
  return concat(eof ? [...parts, new Uint8Array(1024)] : parts);
}
const rawTarGz = (parts: readonly Uint8Array[], opts?: { eof?: boolean }) => gzipSync(rawTar(parts, opts));

/** The root folder of hand-made archives, so each hostile case differs from a good one by one entry. */
const rootDir = () => rawEntry({ name: 'r/', type: '5' });
const okFile = (name = 'r/ok.txt') => rawEntry({ name, body: utf8('fine\n') });

/**
 * gzip(one tar header for a `mib` MiB file + that many MiB of zeros) built from one deflated MiB repeated,
 * so the bomb is made in milliseconds and never exists inflated. Each segment ends on a full flush, so copies chain.
 */
function zeroBomb(mib: number): Uint8Array {
  const zeros = new Uint8Array(2 ** 20);
  const flush = { finishFlush: zlibConstants.Z_FULL_FLUSH };
  const header = ustarHeader({ name: 'r/zeros.bin', size: mib * 2 ** 20 });
  const segment = deflateRawSync(zeros, flush);
  let crc = crc32(header);
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE((512 + mib * 2 ** 20) % 2 ** 32, 4);
  const gzipHeader = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  const finalEmptyBlock = Buffer.from([0x03, 0x00]);
  return concat([gzipHeader, deflateRawSync(header, flush), ...Array<Buffer>(mib).fill(segment), finalEmptyBlock, trailer]);
}

// ---------------------------------------------------------------------------------------------------------------

describe('packTree + unpackTree round trip', () => {
  it('gives back every file byte for byte, every folder, empty folders and empty files', async () => {
    const gz = await packTree({ root: ROOT, files: TREE, emptyDirs: EMPTY_DIRS, mtime: MTIME });
    const out = await unpackTree(gz, ROOMY);

    expect(digest(out.files)).toEqual(digest(TREE.map((f) => ({ path: `${ROOT}/${f.path}`, data: f.data }))));
    expect([...out.dirs].sort()).toEqual(foldersOf(TREE, EMPTY_DIRS).map((d) => under(ROOT, d)).sort());
    expect(out.dirs).toContain(`${ROOT}/artifacts`);
    expect(out.dirs).toContain(`${ROOT}/source/app/empty`);
    expect(out.files.find((f) => f.path === `${ROOT}/source/app/__init__.py`)?.data.byteLength).toBe(0);
  });

  it('keeps non-ASCII names, paths over 100 and over 256 characters, and binary data exact', async () => {
    expect(`${ROOT}/${PATH_OVER_100}`.length).toBeGreaterThan(100);
    expect(`${ROOT}/${PATH_OVER_256}`.length).toBeGreaterThan(256);
    const gz = await packTree({ root: ROOT, files: TREE, mtime: MTIME });
    const byPath = new Map((await unpackTree(gz, ROOMY)).files.map((f) => [f.path, f.data]));

    expect(byPath.get(`${ROOT}/source/données/résumé.txt`)).toEqual(utf8('café ☕\n'));
    expect(byPath.get(`${ROOT}/source/日本語/ファイル.md`)).toEqual(utf8('こんにちは\n'));
    expect(byPath.get(`${ROOT}/${PATH_OVER_100}`)).toEqual(utf8('long path\n'));
    expect(byPath.get(`${ROOT}/${PATH_OVER_256}`)).toEqual(utf8('longer path\n'));
    expect(Buffer.from(byPath.get(`${ROOT}/bin/blob.bin`)!).equals(BINARY)).toBe(true);
  });

  it('packs a tree with only empty folders, and a file whose name is 255 bytes', async () => {
    const name255 = `${'é'.repeat(127)}x`; // 255 UTF-8 bytes
    const gz = await packTree({ root: 'r', files: [{ path: `d/${name255}`, data: utf8('z') }], emptyDirs: ['e1', 'e2/e3'], mtime: MTIME });
    const out = await unpackTree(gz, ROOMY);
    expect(out.files.map((f) => f.path)).toEqual([`r/d/${name255}`]);
    expect([...out.dirs].sort()).toEqual(['r', 'r/d', 'r/e1', 'r/e2', 'r/e2/e3']);
  });

  it('refuses to pack a path that is both a file and a folder, or the same file twice', async () => {
    await rejection(packTree({ root: 'r', files: [{ path: 'a', data: utf8('1') }, { path: 'a/b', data: utf8('2') }], mtime: MTIME }), 'invalid_archive', 422);
    await rejection(packTree({ root: 'r', files: [{ path: 'a/b', data: utf8('2') }, { path: 'a', data: utf8('1') }], mtime: MTIME }), 'invalid_archive', 422);
    await rejection(packTree({ root: 'r', files: [{ path: 'a', data: utf8('1') }], emptyDirs: ['a'], mtime: MTIME }), 'invalid_archive', 422);
    await rejection(packTree({ root: 'r', files: [{ path: 'x/y', data: utf8('1') }, { path: 'x//y', data: utf8('2') }], mtime: MTIME }), 'invalid_archive', 422);
  });

  it('refuses to pack an unsafe path (400 invalid_path)', async () => {
    await rejection(packTree({ root: 'r', files: [{ path: '../evil', data: utf8('x') }], mtime: MTIME }), 'invalid_path', 400);
    await rejection(packTree({ root: '/abs', files: [], mtime: MTIME }), 'invalid_path', 400);
  });
});

describe('packTree is deterministic', () => {
  const pack = (files = TREE, emptyDirs = EMPTY_DIRS, mtime = MTIME) => packTree({ root: ROOT, files, emptyDirs, mtime });

  it('gives identical bytes for the same input, packed twice', async () => {
    const [a, b] = [await pack(), await pack()];
    expect(sha256(a)).toBe(sha256(b));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it('does not depend on the order the files and empty folders are given in', async () => {
    const shuffled = [...TREE].reverse();
    shuffled.push(shuffled.splice(3, 1)[0]!);
    expect(sha256(await pack(shuffled, [...EMPTY_DIRS].reverse()))).toBe(sha256(await pack()));
  });

  it('changes when the mtime changes by a second, but stores whole seconds only', async () => {
    const base = sha256(await pack());
    expect(sha256(await pack(TREE, EMPTY_DIRS, new Date(MTIME.getTime() + 1000)))).not.toBe(base);
    expect(sha256(await pack(TREE, EMPTY_DIRS, new Date(MTIME.getTime() + 999)))).toBe(base);
  });

  it('changes when one byte of one file changes', async () => {
    const base = sha256(await pack());
    const flipped = BINARY.slice();
    flipped[40_000] = flipped[40_000]! ^ 1;
    const changed = TREE.map((f) => (f.path === 'bin/blob.bin' ? { path: f.path, data: flipped } : f));
    expect(sha256(await pack(changed))).not.toBe(base);
  });

  it('writes a gzip header without a timestamp or file name, and fixed owners, modes and mtime', async () => {
    const gz = await pack();
    expect([...gz.subarray(0, 3)]).toEqual([0x1f, 0x8b, 8]);
    expect(gz[3]).toBe(0); // FLG: no FNAME, FCOMMENT, FEXTRA
    expect([...gz.subarray(4, 8)]).toEqual([0, 0, 0, 0]); // MTIME
    const members = pythonList(gz);
    expect(members.length).toBe(TREE.length + foldersOf(TREE, EMPTY_DIRS).length);
    for (const m of members) {
      expect(m).toMatchObject({ uid: 0, gid: 0, uname: '', gname: '', mtime: MTIME.getTime() / 1000 });
      expect(m.mode).toBe(m.type === 'dir' ? 0o755 : 0o644);
      expect(m.type).not.toBe('other');
    }
  });
});

describe('interoperability with Python tarfile and GNU tar', () => {
  let disk: string;
  beforeAll(() => {
    disk = writeTree(freshDir(), ROOT, TREE, EMPTY_DIRS);
  });

  const expectTheTree = (out: { files: TreeFile[]; dirs: string[] }) => {
    expect(digest(out.files)).toEqual(digest(TREE.map((f) => ({ path: `${ROOT}/${f.path}`, data: f.data }))));
    expect([...out.dirs].sort()).toEqual(foldersOf(TREE, EMPTY_DIRS).map((d) => under(ROOT, d)).sort());
  };

  it('unpacks an archive written by Python tarfile.add(dir, arcname=root)', async () => {
    expectTheTree(await unpackTree(pythonPack(disk, ROOT), ROOMY));
  });

  it('unpacks an archive written by GNU tar czf', async () => {
    const out = join(freshDir(), 'gnu.tar.gz');
    execFileSync('tar', ['czf', out, '-C', dirname(disk), ROOT]);
    expectTheTree(await unpackTree(new Uint8Array(readFileSync(out)), ROOMY));
  });

  it('lists its entries in exactly the order Python tarfile writes them', async () => {
    const ours = pythonList(await packTree({ root: ROOT, files: TREE, emptyDirs: EMPTY_DIRS, mtime: MTIME }));
    const python = pythonList(pythonPack(disk, ROOT));
    expect(ours.map((m) => [m.name, m.type, m.size])).toEqual(python.map((m) => [m.name, m.type, m.size]));
    // Spelled out for the top level: root, then children by code point, folder "a" followed by its contents.
    expect(ours.slice(0, 6).map((m) => m.name)).toEqual([ROOT, `${ROOT}/B.txt`, `${ROOT}/README.md`, `${ROOT}/a`, `${ROOT}/a/inner.txt`, `${ROOT}/a-b`]);
  });

  it('is listed by GNU tar tzf in the same order, and extracted by GNU tar to the same tree', async () => {
    const gz = await packTree({ root: ROOT, files: TREE, emptyDirs: EMPTY_DIRS, mtime: MTIME });
    const dir = freshDir();
    writeFileSync(join(dir, 'ours.tar.gz'), gz);
    const listed = execFileSync('tar', ['tzf', join(dir, 'ours.tar.gz')], { encoding: 'utf8' }).trimEnd().split('\n');
    const python = pythonList(pythonPack(disk, ROOT));
    expect(listed).toEqual(python.map((m) => (m.type === 'dir' ? `${m.name}/` : m.name)));

    execFileSync('tar', ['xzf', join(dir, 'ours.tar.gz'), '-C', dir]);
    const back = readTree(join(dir, ROOT));
    expect(digest(back.files)).toEqual(digest(TREE));
    expect(back.dirs.sort()).toEqual(foldersOf(TREE, EMPTY_DIRS).sort());
  });
});

describe('unpackTree rejects hostile archives', () => {
  it('accepts the hand-made archives when nothing is wrong (so each rejection below is about its one bad entry)', async () => {
    const parts = [...rootDir(), ...okFile(), ...paxEntry({ path: 'r/from-pax.txt' }, { name: 'r/placeholder', body: utf8('pax') })];
    const out = await unpackTree(rawTarGz(parts), ROOMY);
    expect(out.dirs).toEqual(['r']);
    expect(digest(out.files)).toEqual(digest([{ path: 'r/ok.txt', data: utf8('fine\n') }, { path: 'r/from-pax.txt', data: utf8('pax') }]));
    // GNU tar agrees the headers (and checksums) are valid.
    const file = join(freshDir(), 'hand.tar');
    writeFileSync(file, rawTar(parts));
    expect(execFileSync('tar', ['tf', file], { encoding: 'utf8' }).trimEnd().split('\n')).toEqual(['r/', 'r/ok.txt', 'r/from-pax.txt']);
  });

  describe.each([
    ['an absolute path', () => rawEntry({ name: '/etc/passwd', body: utf8('root::0:0\n') })],
    ['a "../" path', () => rawEntry({ name: '../evil', body: utf8('x') })],
    ['a path climbing out through "a/../../"', () => rawEntry({ name: 'a/../../evil', body: utf8('x') })],
    ['a ".." hidden in the ustar prefix field', () => rawEntry({ prefix: 'r/..', name: '../evil', body: utf8('x') })],
    ['an absolute ustar prefix', () => rawEntry({ prefix: '/etc', name: 'passwd', body: utf8('x') })],
    ['a PAX path record with ".."', () => paxEntry({ path: 'r/../../evil' }, { name: 'r/innocent', body: utf8('x') })],
    ['a GNU long name that is absolute', () => [...rawEntry({ name: '././@LongLink', type: 'L', body: utf8('/etc/passwd\0') }), ...rawEntry({ name: 'r/short', body: utf8('x') })]],
    ['a backslash in a name', () => rawEntry({ name: 'r\\..\\..\\evil', body: utf8('x') })],
    ['a NUL in a name (via PAX)', () => paxEntry({ path: 'r/a\0b' }, { name: 'r/ab', body: utf8('x') })],
    ['a newline in a name', () => rawEntry({ name: 'r/a\nb', body: utf8('x') })],
    ['a drive letter', () => rawEntry({ name: 'C:/Windows/evil', body: utf8('x') })],
  ])('with %s', (_label, bad) => {
    it('fails with 422 invalid_archive', async () => {
      const err = await rejection(unpackTree(rawTarGz([...rootDir(), ...okFile(), ...bad()]), ROOMY), 'invalid_archive', 422);
      expect(err.message).toMatch(/^invalid archive: /);
    });
  });

  it.each([
    ['a symlink', { name: 'r/link', type: '2', linkname: '/etc/passwd' }, /symlink/],
    ['a hard link', { name: 'r/hard', type: '1', linkname: 'r/ok.txt' }, /link/],
    ['a character device', { name: 'r/tty', type: '3' }, /character-device/],
    ['a block device', { name: 'r/sda', type: '4' }, /block-device/],
    ['a FIFO', { name: 'r/pipe', type: '6' }, /fifo/],
  ] as const)('rejects %s with 422 and names the entry', async (_label, entry, kind) => {
    const err = await rejection(unpackTree(rawTarGz([...rootDir(), ...okFile(), ...rawEntry(entry)]), ROOMY), 'invalid_archive', 422);
    expect(err.message).toMatch(kind);
    expect(err.message).toContain(entry.name);
  });

  it('rejects a symlink archived by Python tarfile from a real folder', async () => {
    const dir = writeTree(freshDir(), 'proj', [{ path: 'ok.txt', data: utf8('fine') }]);
    symlinkSync('/etc/passwd', join(dir, 'passwd'));
    const err = await rejection(unpackTree(pythonPack(dir, 'proj'), ROOMY), 'invalid_archive', 422);
    expect(err.message).toMatch(/symlink/);
  });

  it('rejects the same file twice, also when the names differ only before normalisation', async () => {
    const twice = [...rootDir(), ...okFile('r/a.txt'), ...okFile('r/a.txt')];
    expect((await rejection(unpackTree(rawTarGz(twice), ROOMY), 'invalid_archive', 422)).message).toMatch(/duplicate.*r\/a\.txt/);
    const aliased = [...rootDir(), ...okFile('r/a.txt'), ...okFile('./r//a.txt')];
    expect((await rejection(unpackTree(rawTarGz(aliased), ROOMY), 'invalid_archive', 422)).message).toMatch(/duplicate/);
    const fileThenDir = [...rootDir(), ...okFile('r/a'), ...rawEntry({ name: 'r/a/', type: '5' })];
    await rejection(unpackTree(rawTarGz(fileThenDir), ROOMY), 'invalid_archive', 422);
  });

  it('rejects a path that is both a file and a folder, in either order', async () => {
    for (const order of [
      ['r/a', 'r/a/b'],
      ['r/a/b', 'r/a'],
    ]) {
      const parts = [...rootDir(), ...order.flatMap((n) => okFile(n))];
      const err = await rejection(unpackTree(rawTarGz(parts), ROOMY), 'invalid_archive', 422);
      expect(err.message).toContain('"r/a" is both a file and a folder');
    }
  });

  it('rejects a file whose header promises more bytes than the archive holds', async () => {
    const truncated = [...rootDir(), ...rawEntry({ name: 'r/big.bin', size: 100_000, body: utf8('only a little') })];
    const err = await rejection(unpackTree(rawTarGz(truncated, { eof: false }), ROOMY), 'invalid_archive', 422);
    expect(err.message).toMatch(/truncated/i);
  });

  it('rejects a gzip stream cut in half', async () => {
    const gz = await packTree({ root: ROOT, files: TREE, mtime: MTIME });
    const err = await rejection(unpackTree(gz.subarray(0, gz.byteLength >> 1), ROOMY), 'invalid_archive', 422);
    expect(err.message).toMatch(/gzip/);
  });

  it.each([
    ['an uncompressed tar', () => rawTar([...rootDir(), ...okFile()])],
    ['a zip header', () => utf8('PK\u0003\u0004 definitely not gzip, padded to be long enough')],
    ['random bytes', () => new Uint8Array(randomBytes(4096))],
    ['nothing at all', () => new Uint8Array(0)],
    ['a gzip magic with garbage after it', () => concat([new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), new Uint8Array(randomBytes(64)).map((b) => b | 0x07)])],
  ])('rejects %s with 422', async (_label, bytes) => {
    await rejection(unpackTree(bytes(), ROOMY), 'invalid_archive', 422);
  });
});

describe('unpackTree enforces its limits (413 archive_too_large)', () => {
  it('builds valid zero bombs (checked by node:zlib, which verifies the CRC)', () => {
    const inflated = gunzipSync(zeroBomb(3));
    expect(inflated.byteLength).toBe(512 + 3 * 2 ** 20);
    expect(new TextDecoder().decode(inflated.subarray(0, 11))).toBe('r/zeros.bin');
    expect(inflated.subarray(512).every((b) => b === 0)).toBe(true);
  });

  // Inflating 1 GiB with fflate alone takes ~10 s, so finishing in 5 s proves the bomb was stopped early.
  it.each([200, 1024])('stops a gzip bomb of %i MiB of zeros quickly, without inflating it', async (mib) => {
    const bomb = zeroBomb(mib);
    expect(bomb.byteLength).toBeLessThan(mib * 1100 + 2048);
    const started = performance.now();
    const err = await rejection(unpackTree(bomb, { maxEntries: 100, maxFileBytes: 10 * 2 ** 20, maxTotalBytes: 10 * 2 ** 20 }), 'archive_too_large', 413);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(err.message).toMatch(/^archive too large: /);
  });

  const manyFiles = (n: number, size = 1) => Array.from({ length: n }, (_, i) => ({ path: `f${String(i).padStart(3, '0')}`, data: new Uint8Array(size).fill(65) }));

  it('allows exactly maxEntries entries and rejects one more', async () => {
    const gz = await packTree({ root: 'r', files: manyFiles(49), mtime: MTIME }); // 49 files + the root folder
    expect((await unpackTree(gz, { ...ROOMY, maxEntries: 50 })).files).toHaveLength(49);
    const err = await rejection(unpackTree(gz, { ...ROOMY, maxEntries: 49 }), 'archive_too_large', 413);
    expect(err.message).toMatch(/more than 49 entries/);
  });

  it('rejects thousands of empty entries with a small maxEntries', async () => {
    const gz = await packTree({ root: 'r', files: manyFiles(2000, 0), mtime: MTIME });
    await rejection(unpackTree(gz, { ...ROOMY, maxEntries: 100 }), 'archive_too_large', 413);
  });

  it('allows a file of exactly maxFileBytes and rejects one byte more, naming the file', async () => {
    const exact = await packTree({ root: 'r', files: [{ path: 'big.bin', data: new Uint8Array(1000) }], mtime: MTIME });
    expect((await unpackTree(exact, { ...ROOMY, maxFileBytes: 1000 })).files[0]!.data.byteLength).toBe(1000);
    const over = await packTree({ root: 'r', files: [{ path: 'big.bin', data: new Uint8Array(1001) }], mtime: MTIME });
    const err = await rejection(unpackTree(over, { ...ROOMY, maxFileBytes: 1000 }), 'archive_too_large', 413);
    expect(err.message).toContain('r/big.bin');
  });

  it('allows a total of exactly maxTotalBytes and rejects more, even when each file is small enough', async () => {
    const limits = { ...ROOMY, maxFileBytes: 600, maxTotalBytes: 1000 };
    const exact = await packTree({ root: 'r', files: manyFiles(2, 500), mtime: MTIME });
    expect((await unpackTree(exact, limits)).files).toHaveLength(2);
    const over = await packTree({ root: 'r', files: manyFiles(3, 400), mtime: MTIME });
    const err = await rejection(unpackTree(over, limits), 'archive_too_large', 413);
    expect(err.message).toMatch(/over 1000 bytes/);
  });
});

describe('fixes found in review', () => {
  it('orders names by code point, as Python does, even beyond the BMP', async () => {
    const files = [{ path: '\u{1F600}.txt', data: utf8('a') }, { path: '\uFF01.txt', data: utf8('b') }];
    const dir = writeTree(freshDir(), 'r', files);
    const ours = pythonList(await packTree({ root: 'r', files, mtime: MTIME })).map((m) => m.name);
    const theirs = pythonList(pythonPack(dir, 'r')).map((m) => m.name);
    expect(ours).toEqual(theirs);
  });

  it.each([
    ['gzip of text that is not a tar', () => gzipSync(utf8('hello world, not a tar'))],
    ['gzip of nothing', () => gzipSync(new Uint8Array(0))],
    ['gzip of random bytes', () => gzipSync(new Uint8Array(randomBytes(600)))],
    ['a tar cut inside a header', () => gzipSync(rawTar([...rootDir(), ...okFile(), ...okFile('r/b.txt')]).subarray(0, 512 * 3 + 300))],
    ['a tar cut at an entry boundary', () => gzipSync(rawTar([...rootDir(), ...okFile(), ...okFile('r/b.txt')], { eof: false }).subarray(0, 512 * 3))],
  ])('rejects %s with 422', async (_name, make) => {
    await rejection(unpackTree(make(), ROOMY), 'invalid_archive', 422);
  });

  it('rejects a gzip whose CRC or length trailer is wrong', async () => {
    const gz = await packTree({ root: ROOT, files: TREE, mtime: MTIME });
    const badCrc = gz.slice();
    badCrc[gz.byteLength - 8]! ^= 0xff;
    await rejection(unpackTree(badCrc, ROOMY), 'invalid_archive', 422);
    await rejection(unpackTree(gz.subarray(0, gz.byteLength - 4), ROOMY), 'invalid_archive', 422);
  });

  it('rejects a header whose checksum is wrong', async () => {
    const tar = rawTar([...rootDir(), ...okFile()]);
    tar[512 + 10] = 'X'.charCodeAt(0); // a name byte of the second header; its checksum no longer matches
    await rejection(unpackTree(gzipSync(tar), ROOMY), 'invalid_archive', 422);
  });

  it("accepts Python's PAX-per-entry archives right at the limits", async () => {
    const files = Array.from({ length: 3 }, (_, i) => ({ path: `f${i}`, data: utf8('x') }));
    const dir = writeTree(freshDir(), 'r', files, ['a', 'b', 'c']);
    const out = await unpackTree(pythonPack(dir, 'r'), { maxEntries: 7, maxFileBytes: 1, maxTotalBytes: 3 });
    expect(out.files).toHaveLength(3);
  });
});
