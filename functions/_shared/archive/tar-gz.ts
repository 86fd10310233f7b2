import { pipeline } from 'node:stream/promises';
import { createGzip, gzip } from 'node:zlib';
import { createTarDecoder, unpackTar } from 'modern-tar';
import { byCodePoint } from '../code-point-order.ts';
import { AppError, invalidArchive } from '../errors.ts';
import { normaliseRelativePath } from '../secure-path.ts';
import { boundedGunzip, gunzipWithin } from './bounded-gunzip.ts';
import { DeterministicGzip } from './deterministic-gzip.ts';
import { EntryCheck } from './entry-check.ts';
import { readAhead } from './read-ahead.ts';
import { padding, tarHeader, TAR_BLOCK, TAR_END } from './tar-header.ts';

/** One file of a tree, by its path relative to the tree's root ("source/app/main.py"). */
export interface TreeFile {
  path: string;
  data: Uint8Array;
}

/** A file packed without holding it whole (e.g. read from disk): its size up front, then its bytes in order. A plain object: it is copied by spreading. */
export interface StreamedFile {
  path: string;
  size: number;
  /** Exactly `size` bytes; each chunk is used before the next is asked for, so a reader may reuse its buffer. */
  chunks(): AsyncIterable<Uint8Array>;
}

export interface PackOptions {
  /** The single top-level folder of the archive, e.g. "v3__<generation_id>". */
  root: string;
  files: readonly (TreeFile | StreamedFile)[];
  /** Empty folders to include (e.g. "artifacts"). */
  emptyDirs?: readonly string[];
  /** Every entry's mtime; the same value always gives the same bytes. */
  mtime: Date;
}

/**
 * Packs a tree as a tar.gz laid out like Python's `tarfile.add(dir, arcname=root)`: the root folder, then each
 * folder's children sorted by name, folders before their contents. Fixed owner (0/0, no names), modes 0644/0755,
 * the given mtime and a gzip header without time or name. Deflate is the platform's zlib at level 6 (what `gzip`
 * and `tar czf` use), so the bytes depend only on the tree and on that zlib: every Node (20, 22, 24: one bundled
 * zlib) gives the same bytes, Deno (another zlib) other bytes of the same tree. That is enough, because an archive's
 * sha256 is recorded once, when it is packed, and the stored bytes are what is served; see `packTreeLegacy` for
 * archives recorded before.
 */
export async function packTree(opts: PackOptions): Promise<Uint8Array> {
  if (opts.files.some((f) => !('data' in f))) return concat(await collect(packTreeStream(opts)));
  // All in memory: one call, deflated on libuv's thread pool (on Node), leaving the event loop free meanwhile.
  const tar = tarBytes(opts as PackOptions & { files: readonly TreeFile[] });
  return new Promise((resolve, reject) => gzip(tar, GZIP, (err, out) => (err ? reject(err) : resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength)))));
}

/**
 * `packTree`, chunk by chunk: memory stays bounded by deflate's window and a few read chunks, whatever the tree's
 * size. The next few streamed files start reading while one is compressed, so their latency (a disk's, a
 * thread pool's) hides behind deflate's work. Without flushes zlib's output does not depend on how its input was
 * cut, so this gives `packTree`'s bytes.
 */
export async function* packTreeStream(opts: PackOptions): AsyncGenerator<Uint8Array> {
  const gz = createGzip(GZIP);
  const feeding = pipeline(tarStream(opts), gz).catch(() => {}); // its errors surface below, through gz
  try {
    for await (const chunk of gz as AsyncIterable<Buffer>) yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  } finally {
    gz.destroy();
    await feeding;
  }
}

/** gzip -6: zlib's defaults otherwise (32 KiB window, memLevel 8); larger output chunks than zlib's 16 KiB. */
const GZIP = { level: 6, chunkSize: 64 * 1024 };

/**
 * The packer before issue 15: the same tar, deflated by fflate (pure JavaScript, so the same bytes on Node and
 * Deno) in 256 KiB pieces. Kept only to check folders packed again against the sha256 recorded by it (a folder
 * whose stored archive is gone, e.g. migrated before); nothing new is packed with it. 5x slower than zlib.
 */
export async function packTreeLegacy(opts: PackOptions): Promise<Uint8Array> {
  const gzip = new DeterministicGzip();
  const out: Uint8Array[] = [];
  for await (const chunk of tarStream(opts)) {
    gzip.write(chunk);
    out.push(...gzip.take());
  }
  gzip.end();
  out.push(...gzip.take());
  return concat(out);
}

/** The uncompressed tar, entry by entry; streamed files are read as they come (a few ahead). */
async function* tarStream(opts: PackOptions): AsyncGenerator<Uint8Array> {
  const mtime = tarTime(opts.mtime);
  const entries = archiveOrder(opts);
  const ahead = readAhead(entries.map((e) => (e.file && !('data' in e.file) ? e.file : undefined)));
  try {
    for (const [i, entry] of entries.entries()) {
      yield entryHeader(entry, mtime);
      const f = entry.file;
      if (!f) continue;
      const size = sizeOf(f);
      if ('data' in f) {
        if (size > 0) yield f.data;
      } else {
        let read = 0;
        for await (const chunk of ahead.chunks(i)) {
          read += chunk.byteLength;
          if (read > size) break;
          // A reader may reuse its buffer once the next chunk is asked for; zlib's stream may not have read it yet.
          yield chunk.slice();
        }
        if (read !== size) throw new Error(`[archive] ${JSON.stringify(f.path)} changed while being packed: ${size} bytes expected`);
      }
      if (padding(size) > 0) yield TAR_END.subarray(0, padding(size));
    }
  } finally {
    await ahead.close();
  }
  yield TAR_END;
}

/**
 * `tarStream`'s bytes for a tree held in memory, in one buffer and without its async steps: a save's files are
 * copied once, straight to where they go.
 */
function tarBytes(opts: PackOptions & { files: readonly TreeFile[] }): Uint8Array {
  const mtime = tarTime(opts.mtime);
  const parts = archiveOrder(opts).map((e) => ({ header: entryHeader(e, mtime), data: (e.file as TreeFile | undefined)?.data }));
  const size = parts.reduce((n, p) => n + p.header.byteLength + (p.data ? p.data.byteLength + padding(p.data.byteLength) : 0), TAR_END.byteLength);
  const out = new Uint8Array(size); // zeros: the padding and the end marker are already there
  let at = 0;
  for (const { header, data } of parts) {
    out.set(header, at);
    at += header.byteLength;
    if (data) {
      out.set(data, at);
      at += data.byteLength + padding(data.byteLength);
    }
  }
  return out;
}

type Packable = TreeFile | StreamedFile;

const sizeOf = (f: Packable) => ('data' in f ? f.data.byteLength : f.size);

/** Seconds since the epoch; ustar has no room for times before 1970. */
const tarTime = (mtime: Date) => Math.max(0, Math.floor(mtime.getTime() / 1000));

/** An entry's header block(s): a folder's name ends with "/". */
function entryHeader(entry: { name: string; file?: Packable }, mtime: number): Uint8Array {
  return entry.file
    ? tarHeader({ name: entry.name, type: 'file', size: sizeOf(entry.file), mode: 0o644, mtime })
    : tarHeader({ name: `${entry.name}/`, type: 'directory', size: 0, mode: 0o755, mtime });
}

/** The entries in Python's order (see `packTree`), after checking every path; a folder has no `file`. */
function archiveOrder(opts: PackOptions): { name: string; file?: Packable }[] {
  const root = normaliseRelativePath(opts.root);
  type Dir = { dirs: Map<string, Dir>; files: Map<string, Packable> };
  const newDir = (): Dir => ({ dirs: new Map(), files: new Map() });
  const tree = newDir();
  const dirAt = (segments: string[]) => {
    let node = tree;
    for (const s of segments) {
      if (node.files.has(s)) throw invalidArchive(`"${s}" is both a file and a folder`);
      let next = node.dirs.get(s);
      if (!next) node.dirs.set(s, (next = newDir()));
      node = next;
    }
    return node;
  };
  for (const d of opts.emptyDirs ?? []) dirAt(normaliseRelativePath(d).split('/'));
  for (const f of opts.files) {
    const parts = normaliseRelativePath(f.path).split('/');
    const name = parts.pop()!;
    const dir = dirAt(parts);
    if (dir.files.has(name) || dir.dirs.has(name)) throw invalidArchive(`duplicate entry "${f.path}"`);
    dir.files.set(name, f);
  }
  const entries: { name: string; file?: Packable }[] = [];
  const walk = (node: Dir, prefix: string) => {
    entries.push({ name: prefix });
    for (const name of [...node.dirs.keys(), ...node.files.keys()].sort(byCodePoint)) {
      const sub = node.dirs.get(name);
      if (sub) walk(sub, `${prefix}/${name}`);
      else entries.push({ name: `${prefix}/${name}`, file: node.files.get(name)! });
    }
  };
  walk(tree, root);
  return entries;
}

/** Bytes arriving in chunks: a download, a file read piece by piece, or `[bytes]`; a chunk handed over must not change after. */
export type ByteChunks = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface UnpackLimits {
  maxEntries: number;
  maxFileBytes: number;
  maxTotalBytes: number;
}

export interface UnpackedTree {
  /** Files by normalised path ("v1__id/source/app/main.py"). */
  files: TreeFile[];
  /** Folders named in the archive, normalised, without trailing "/". */
  dirs: string[];
}

/** Where `unpackStream` puts what it has checked: memory (`unpackTree`), a folder on disk (`unpackToDirectory`). */
export interface UnpackSink {
  folder(path: string): Promise<void> | void;
  /** Must read `chunks` to the end (reading fails, and the unpack with it, if the archive is bad). */
  file(path: string, size: number, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

/**
 * Safely reads a whole tar.gz held in memory, with `unpackStream`'s checks and bound: inflated in one piece (zlib's
 * thread pool), then its entries read in one pass, each checked as its header is read. 2–3x faster than the
 * stream for a typical generation (docs/BENCHMARKS.md §3); it holds the inflated tar, at most the bound, in memory.
 * With `root`, as `unpackToDirectory` takes it: every entry must lie in that top folder, and paths are given
 * relative to it (the folder itself is not listed).
 */
export async function unpackTree(gz: Uint8Array, limits: UnpackLimits, root?: string): Promise<UnpackedTree> {
  const tar = await gunzipWithin(gz, inflatedBound(limits));
  const check = new EntryCheck(limits);
  const paths: string[] = [];
  const within = (path: string, isFile: boolean) => {
    if (root === undefined) return path;
    if (path.startsWith(`${root}/`)) return path.slice(root.length + 1);
    if (path === root && !isFile) return '';
    throw invalidArchive(`entry ${JSON.stringify(path)} is outside ${root}/`);
  };
  let entries: Awaited<ReturnType<typeof unpackTar>>;
  try {
    entries = await unpackTar(tar, { strict: true, filter: (h) => (paths.push(within(check.entry(h), h.type !== 'directory')), true) });
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw invalidArchive(`unreadable tar (${err instanceof Error ? err.message : String(err)})`);
  }
  // modern-tar drops an entry whose name is blank after its filter: the stream would have handed it on, so refuse it
  if (entries.length !== paths.length) throw invalidArchive('an entry with a blank name');
  if (check.count === 0) throw invalidArchive('no entries');
  if (tar.byteLength % TAR_BLOCK !== 0) throw invalidArchive('truncated tar (no end-of-archive marker)');
  const out: UnpackedTree = { files: [], dirs: [] };
  entries.forEach(({ header, data }, i) => {
    if (header.type !== 'directory') out.files.push({ path: paths[i]!, data: data ?? new Uint8Array(0) });
    else if (paths[i] !== '') out.dirs.push(paths[i]!);
  });
  return out;
}

/** What a tar within `limits` inflates to at most: their bytes, a header and PAX/long-name records per entry (Python writes one per entry), end padding. */
const inflatedBound = (limits: UnpackLimits) => limits.maxTotalBytes + limits.maxEntries * 8 * TAR_BLOCK + 20 * TAR_BLOCK;

/**
 * Safely reads a tar.gz (ours, GNU tar's or Python tarfile's) as it arrives, handing each entry to `sink` once it
 * is checked. Rejects, with a 422 `invalid_archive`: absolute paths, `..`, links, devices, FIFOs, duplicate entries,
 * a path both a file and a folder, bad checksums, bad gzip, truncated or empty archives; and with a 413
 * `archive_too_large` anything over the limits — checked while inflating, so a gzip bomb stops early. Entries
 * before the one found bad have reached the sink by then: a sink on disk removes what it wrote.
 */
export async function unpackStream(gz: ByteChunks, limits: UnpackLimits, sink: UnpackSink): Promise<void> {
  const tar = boundedGunzip(gz, inflatedBound(limits));
  const entries = tar.stream.pipeThrough(createTarDecoder({ strict: true })).getReader();
  const read = async <T>(reader: ReadableStreamDefaultReader<T>) => {
    try {
      return await reader.read();
    } catch (err) {
      if (err instanceof AppError || err === tar.failure()) throw err;
      throw invalidArchive(`unreadable tar (${err instanceof Error ? err.message : String(err)})`);
    }
  };
  const check = new EntryCheck(limits);
  try {
    for (let next = await read(entries); !next.done; next = await read(entries)) {
      const { header, body } = next.value;
      const path = check.entry(header);
      if (header.type === 'directory') {
        await body.cancel();
        await sink.folder(path);
        continue;
      }
      const reader = body.getReader();
      async function* chunks() {
        let got = 0;
        for (let c = await read(reader); !c.done; c = await read(reader)) {
          got += c.value.byteLength;
          yield c.value;
        }
        if (got !== header.size) throw invalidArchive(`entry ${JSON.stringify(path)} is truncated`);
      }
      try {
        await sink.file(path, header.size, chunks());
      } finally {
        await reader.cancel().catch(() => {});
      }
    }
  } catch (err) {
    await entries.cancel(err).catch(() => {});
    throw err;
  }
  if (check.count === 0) throw invalidArchive('no entries');
  if (tar.bytes() % TAR_BLOCK !== 0) throw invalidArchive('truncated tar (no end-of-archive marker)');
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return out;
}

/** The chunks copied into one array. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
