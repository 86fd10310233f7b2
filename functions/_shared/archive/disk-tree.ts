import { constants, readSync } from 'node:fs';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { invalidArchive } from '../errors.ts';
import { unpackStream, type ByteChunks, type StreamedFile, type UnpackLimits } from './tar-gz.ts';

/** How much of a file is read at a time. */
const READ_CHUNK = 256 * 1024;

/**
 * Opens a regular file for reading without following a symlink (ELOOP) or blocking on a FIFO; the open handle
 * must be a regular file, since what was checked with lstat could have been swapped since.
 */
export async function openRegularFile(path: string): Promise<{ fh: FileHandle; size: number }> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'ENOTREG' });
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * An open file's bytes in chunks from one reused buffer (each valid until the next is asked for, so not for a
 * consumer that keeps them); it must hold exactly `size` bytes. Closes the file at the end, or when the reader
 * stops early.
 */
export async function* readChunks(fh: FileHandle, size: number): AsyncGenerator<Uint8Array> {
  try {
    const buffer = new Uint8Array(Math.min(size + 1, READ_CHUNK));
    for (let at = 0; at >= 0; ) {
      const want = wanted(buffer, size, at);
      const { bytesRead } = await fh.read(buffer, 0, want, at);
      const next = afterRead(size, at, bytesRead, want);
      if (bytesRead > 0) yield buffer.subarray(0, bytesRead);
      at = next;
    }
  } finally {
    // Not awaited: a read-only file has nothing to flush, and the next file need not wait for this round trip.
    fh.close().catch(() => {});
  }
}

/**
 * `readChunks` with synchronous reads of an open descriptor, which the caller closes. With `whole`, the file is
 * read into a buffer of its own, so its one chunk may be kept.
 */
export function* readChunksSync(fd: number, size: number, whole = false): Generator<Uint8Array> {
  const buffer = new Uint8Array(whole ? size + 1 : Math.min(size + 1, READ_CHUNK));
  for (let at = 0; at >= 0; ) {
    const want = wanted(buffer, size, at);
    const bytesRead = readSync(fd, buffer, 0, want, at);
    const next = afterRead(size, at, bytesRead, want);
    if (bytesRead > 0) yield buffer.subarray(0, bytesRead);
    at = next;
  }
}

/** How many bytes to ask for at `at`: one more than should be left, so the last read also tells whether the file grew. */
const wanted = (buffer: Uint8Array, size: number, at: number) => Math.min(buffer.length, size + 1 - at);

/** Where the next read starts (-1: done); throws when the file turned out larger or smaller than `size`. */
function afterRead(size: number, at: number, bytesRead: number, want: number): number {
  if (at + bytesRead > size) throw new Error(`file grew while being read (over ${size} bytes)`);
  if (bytesRead === 0) {
    if (at < size) throw new Error(`file shrank while being read (${at} of ${size} bytes)`);
    return -1;
  }
  return at + bytesRead === size && bytesRead < want ? -1 : at + bytesRead;
}

/** A file on disk to pack from `path` (absolute) as `name`, read in chunks when its turn comes. */
export function diskFile(name: string, path: string, size: number): StreamedFile {
  return {
    path: name,
    size,
    async *chunks() {
      const { fh } = await openRegularFile(path);
      yield* readChunks(fh, size);
    },
  };
}

/** What `unpackToDirectory` wrote, paths relative to the folder. */
export interface UnpackedListing {
  files: { path: string; size: number }[];
  dirs: string[];
}

/**
 * Unpacks a tar.gz stream into `dest`, which must not exist yet, with every check of `unpackStream`; memory
 * stays bounded by a chunk whatever the archive holds. With `root`, every entry must lie in that top folder,
 * which becomes `dest` itself. On any failure `dest` is removed, so nothing half-checked stays behind.
 * Only files and folders are ever created, under a folder made here, so nothing can lead outside it.
 */
export async function unpackToDirectory(gz: ByteChunks, dest: string, limits: UnpackLimits, root?: string): Promise<UnpackedListing> {
  await mkdir(dest);
  const listing: UnpackedListing = { files: [], dirs: [] };
  const target = (path: string) => {
    if (root === undefined) return path;
    if (path === root) return '';
    if (path.startsWith(`${root}/`)) return path.slice(root.length + 1);
    throw invalidEntry(path, root);
  };
  const made = new Set<string>([dest]);
  const ensureFolder = async (abs: string) => {
    if (!made.has(abs)) await mkdir(abs, { recursive: true });
    made.add(abs);
  };
  // Files are closed without waiting (one round trip less per file); every close is awaited before returning.
  const closing: Promise<void>[] = [];
  try {
    await unpackStream(gz, limits, {
      async folder(path) {
        const rel = target(path);
        await ensureFolder(join(dest, rel));
        if (rel !== '') listing.dirs.push(rel);
      },
      async file(path, size, chunks) {
        const rel = target(path);
        if (rel === '') throw invalidEntry(path, root!);
        await ensureFolder(dirname(join(dest, rel)));
        const fh = await open(join(dest, rel), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
        try {
          for await (const chunk of chunks) {
            for (let at = 0; at < chunk.length; ) at += (await fh.write(chunk, at)).bytesWritten;
          }
        } catch (err) {
          await fh.close();
          throw err;
        }
        const closed = fh.close();
        closed.catch(() => {}); // failing here is met by the Promise.all below
        closing.push(closed);
        listing.files.push({ path: rel, size });
      },
    });
    await Promise.all(closing);
    return listing;
  } catch (err) {
    await Promise.allSettled(closing);
    await rm(dest, { recursive: true, force: true });
    throw err;
  }
}

const invalidEntry = (path: string, root: string) => invalidArchive(`entry ${JSON.stringify(path)} is outside ${root}/`);
