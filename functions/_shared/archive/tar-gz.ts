import { createTarDecoder } from 'modern-tar';
import { byCodePoint } from '../code-point-order.ts';
import { AppError, invalidArchive } from '../errors.ts';
import { normaliseRelativePath } from '../secure-path.ts';
import { boundedGunzip } from './bounded-gunzip.ts';
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
 * Packs a tree as a deterministic tar.gz laid out like Python's `tarfile.add(dir, arcname=root)`:
 * the root folder, then each folder's children sorted by name, folders before their contents.
 * Fixed owner (0/0, no names), modes 0644/0755, the given mtime and a gzip header without time or name,
 * so the same tree always gives the same bytes on Node and on Deno — whether its files are in memory or streamed.
 */
export async function packTree(opts: PackOptions): Promise<Uint8Array> {
  return concat(await collect(packTreeStream(opts)));
}

/**
 * `packTree`, chunk by chunk: memory stays bounded by deflate's window and a few read chunks, whatever the tree's
 * size. The next few streamed files start reading while one is compressed, so their latency (a disk's, a
 * thread pool's) hides behind deflate's work.
 */
export async function* packTreeStream(opts: PackOptions): AsyncGenerator<Uint8Array> {
  const mtime = Math.max(0, Math.floor(opts.mtime.getTime() / 1000)); // ustar has no room for times before 1970
  const entries = archiveOrder(opts);
  const ahead = readAhead(entries.map((e) => (e.file && !('data' in e.file) ? e.file : undefined)));
  const gzip = new DeterministicGzip();
  const pause = cooperative();
  try {
    for (const [i, entry] of entries.entries()) {
      if (!entry.file) {
        gzip.write(tarHeader({ name: `${entry.name}/`, type: 'directory', size: 0, mode: 0o755, mtime }));
        continue;
      }
      const f = entry.file;
      const size = 'data' in f ? f.data.byteLength : f.size;
      gzip.write(tarHeader({ name: entry.name, type: 'file', size, mode: 0o644, mtime }));
      if ('data' in f) {
        for (let at = 0; at < f.data.byteLength; at += PAUSE_EVERY_BYTES) {
          gzip.write(f.data.subarray(at, at + PAUSE_EVERY_BYTES));
          yield* gzip.take();
          await pause();
        }
      } else {
        let read = 0;
        for await (const chunk of ahead.chunks(i)) {
          read += chunk.byteLength;
          if (read > size) break;
          gzip.write(chunk);
          yield* gzip.take();
          await pause();
        }
        if (read !== size) throw new Error(`[archive] ${JSON.stringify(f.path)} changed while being packed: ${size} bytes expected`);
      }
      gzip.write(TAR_END.subarray(0, padding(size)));
      yield* gzip.take();
    }
  } finally {
    await ahead.close();
  }
  gzip.write(TAR_END);
  gzip.end();
  yield* gzip.take();
}

type Packable = TreeFile | StreamedFile;

/** In-memory files are fed to deflate this much at a time, so a large one never holds the thread for long. */
const PAUSE_EVERY_BYTES = 256 * 1024;

/**
 * Deflate is synchronous JavaScript: a large pack would hold the event loop for seconds, and every other request
 * with it. This gives the loop a turn (a macrotask, so I/O and timers run) whenever the pack has had it for 10 ms.
 * The bytes do not depend on it.
 */
function cooperative(sliceMs = 10): () => Promise<void> {
  const immediate = (globalThis as { setImmediate?: (f: () => void) => void }).setImmediate ?? ((f: () => void) => setTimeout(f, 0));
  let since = performance.now();
  return async () => {
    if (performance.now() - since < sliceMs) return;
    await new Promise<void>((resolve) => immediate(resolve));
    since = performance.now();
  };
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

/** Safely reads a whole tar.gz held in memory; see `unpackStream` for what is rejected. */
export async function unpackTree(gz: Uint8Array, limits: UnpackLimits): Promise<UnpackedTree> {
  const out: UnpackedTree = { files: [], dirs: [] };
  await unpackStream([gz], limits, {
    folder: (path) => void out.dirs.push(path),
    file: async (path, _size, chunks) => void out.files.push({ path, data: concat(await collect(chunks)) }),
  });
  return out;
}

/**
 * Safely reads a tar.gz (ours, GNU tar's or Python tarfile's) as it arrives, handing each entry to `sink` once it
 * is checked. Rejects, with a 422 `invalid_archive`: absolute paths, `..`, links, devices, FIFOs, duplicate entries,
 * a path both a file and a folder, bad checksums, bad gzip, truncated or empty archives; and with a 413
 * `archive_too_large` anything over the limits — checked while inflating, so a gzip bomb stops early. Entries
 * before the one found bad have reached the sink by then: a sink on disk removes what it wrote.
 */
export async function unpackStream(gz: ByteChunks, limits: UnpackLimits, sink: UnpackSink): Promise<void> {
  // Headers: one block per entry plus PAX/long-name records (Python writes one per entry), and end padding.
  const tar = boundedGunzip(gz, limits.maxTotalBytes + limits.maxEntries * 8 * TAR_BLOCK + 20 * TAR_BLOCK);
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

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
